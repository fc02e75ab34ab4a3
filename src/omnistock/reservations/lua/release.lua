-- Release a reservation (or one part of it) back to available.
-- ARGV: now, op, reservation id.
local now = clock(ARGV[1])
expire_due(now)
local op, id = ARGV[2], ARGV[3]
local prev = replay(op)
if prev then return { prev, 1 } end
local r = record_view(id)
if not r then return { cjson.encode({ err = 'missing' }), 0 } end
if r.st ~= 'a' then
  return remember(op, cjson.encode({ err = 'state', st = r.st }))
end
release_record(id, HOME_P, 'r', 'release', op, now)
r.st = 'r'
return remember(op, cjson.encode(r))
