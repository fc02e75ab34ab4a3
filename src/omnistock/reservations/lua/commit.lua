-- Commit a reservation (or one part of it): the goods left, so on_hand and reserved both drop.
-- A part pinned by a multi-partition commit is committed too; anything else is a conflict, which
-- is stable because terminal states never change. Repeating the committing op replays.
-- ARGV: now, op, reservation id.
local now = clock(ARGV[1])
expire_due(now)
local op, id = ARGV[2], ARGV[3]
local r, raw = read_record(id)
if not r or r.st == 'f' then return { cjson.encode({ err = 'missing' }), 0 } end
if r.fop == op and r.st == 'c' then return { raw, 1 } end
if r.st ~= 'a' and r.st ~= 'p' then
  return { cjson.encode({ err = 'state', st = r.st }), 0 }
end
-- The pin set is not read before: it is written first, so that a key of the wrong type there
-- fails the commit before the positions change.
check_positions(r.ln, 3)
if r.st == 'p' then
  redis.call('ZREM', HOME .. ':pin', id)
else
  deadline_remove(id, HOME_P, r.ln)
end
for _, l in ipairs(r.ln) do
  local tag = tag_of(l[1])
  local p = read_pos(tag, l[2], l[3])
  apply(tag, l[2], l[3], p, -l[4], -l[4], 0, 0, nil, 'commit', op, id, now)
end
r.st = 'c'
r['end'] = now
r.fop = op
return { write_record(id, HOME_P, r, RECORD_TTL_MS), 0 }
