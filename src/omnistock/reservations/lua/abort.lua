-- Compensation of a multi-partition reserve that did not complete: release this partition's part.
-- With a final result, the record keeps it, so a retry of the reserve replays the same failure;
-- without one (the saga could not reach every partition), the record is removed so that a retry
-- starts afresh. Idempotent. ARGV: now, op, reservation id, final result or ''.
local now = clock(ARGV[1])
expire_due(now)
local op, id, final = ARGV[2], ARGV[3], ARGV[4]
local r = read_record(id)
if r and r.st == 'a' then
  release_record(id, HOME_P, r, 'r', 'release', op .. ':abort', now)
end
if final == '' then
  redis.call('DEL', record_key(id))
elseif r then
  r.res = final
  write_record(id, HOME_P, r, math.max(RECORD_TTL_MS, OP_TTL_MS))
else
  write_record(id, HOME_P, { st = 'f', op = op, res = final }, OP_TTL_MS)
end
return 1
