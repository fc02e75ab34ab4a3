-- Undo a pin: the part is active again under its original deadline, and expires at once if that
-- has passed. ARGV: now, reservation id. Idempotent by state.
local now = clock(ARGV[1])
local id = ARGV[2]
local r = record_view(id)
if not r then return cjson.encode({ err = 'missing' }) end
if r.st == 'p' then
  redis.call('HSET', record_key(id), 'st', 'a')
  redis.call('ZREM', HOME .. ':pin', id)
  deadline_add(id, HOME_P, r.ln, r.exp)
  expire_due(now)
  r = record_view(id)
end
return cjson.encode(r)
