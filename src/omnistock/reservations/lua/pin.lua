-- First phase of a multi-partition commit: take an active part off the expiry clock so it cannot
-- expire while the other parts commit. A pin left behind by a crashed coordinator is found by the
-- sweeper after the grace period and resolved from the header's status.
-- ARGV: now, reservation id, grace_ms. Idempotent by state: pinning a pinned part succeeds.
local now = clock(ARGV[1])
expire_due(now)
local id = ARGV[2]
local r, raw = read_record(id)
if not r or r.st == 'f' then return cjson.encode({ err = 'missing' }) end
if r.st == 'a' then
  -- The pin set, not read before, is written first (see check_positions).
  redis.call('ZADD', HOME .. ':pin', now + tonumber(ARGV[3]), id)
  r.st = 'p'
  raw = write_record(id, HOME_P, r)
  deadline_remove(id, HOME_P, r.ln)
end
return raw
