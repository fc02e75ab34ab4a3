-- Commit a reservation (or one part of it): the goods left, so on_hand and reserved both drop.
-- A part pinned by a multi-partition commit is committed too; anything else is a conflict.
-- ARGV: now, op, reservation id.
local now = clock(ARGV[1])
expire_due(now)
local op, id = ARGV[2], ARGV[3]
local prev = replay(op)
if prev then return { prev, 1 } end
local r = record_view(id)
if not r then return { cjson.encode({ err = 'missing' }), 0 } end
if r.st ~= 'a' and r.st ~= 'p' then
  return remember(op, cjson.encode({ err = 'state', st = r.st }))
end
for _, l in ipairs(r.ln) do
  local tag = tag_of(l[1])
  local p = read_pos(tag, l[2], l[3])
  apply(tag, l[2], l[3], p, { oh = -l[4], rs = -l[4] }, 'commit', op, id, now)
end
redis.call('HSET', record_key(id), 'st', 'c', 'end', now)
redis.call('PEXPIRE', record_key(id), RECORD_TTL_MS)
deadline_remove(id, HOME_P, r.ln)
redis.call('ZREM', HOME .. ':pin', id)
r.st = 'c'
return remember(op, cjson.encode(r))
