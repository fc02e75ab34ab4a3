-- Undo a pin: the part is active again under its original deadline, and expires at once if that
-- has passed. ARGV: now, reservation id. Idempotent by state.
local now = clock(ARGV[1])
local id = ARGV[2]
local r, raw = read_record(id)
if not r or r.st == 'f' then return cjson.encode({ err = 'missing' }) end
if r.st == 'p' then
  -- The pin set, not read before, is written first (see check_positions).
  redis.call('ZREM', HOME .. ':pin', id)
  r.st = 'a'
  write_record(id, HOME_P, r)
  deadline_add(id, HOME_P, r.ln, r.exp)
  expire_due(now, true)
  r, raw = read_record(id)
end
return raw
