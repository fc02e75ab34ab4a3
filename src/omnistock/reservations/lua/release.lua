-- Release a reservation (or one part of it) back to available. Repeating the releasing op
-- replays; releasing a reservation that is not active is a conflict.
-- ARGV: now, op, reservation id.
local now = clock(ARGV[1])
expire_due(now)
local op, id = ARGV[2], ARGV[3]
local r, raw = read_record(id)
if not r or r.st == 'f' then return { cjson.encode({ err = 'missing' }), 0 } end
if r.fop == op and r.st == 'r' then return { raw, 1 } end
if r.st ~= 'a' then
  return { cjson.encode({ err = 'state', st = r.st }), 0 }
end
return { release_record(id, HOME_P, r, 'r', 'release', op, now), 0 }
