-- Compensation of a multi-partition reserve that did not complete: release this partition's part.
-- With a final result, the operation id remembers it, so a retry of the reserve replays the same
-- failure; without one (the saga could not reach every partition), the part and the memory of
-- the operation are removed so that a retry starts afresh. Idempotent.
-- ARGV: now, op, reservation id, final result or ''.
local now = clock(ARGV[1])
expire_due(now)
local op, id, final = ARGV[2], ARGV[3], ARGV[4]
if redis.call('HGET', record_key(id), 'st') == 'a' then
  release_record(id, HOME_P, 'r', 'release', op .. ':abort', now)
end
if final == '' then
  redis.call('DEL', record_key(id), op_key(op))
else
  redis.call('SET', op_key(op), final, 'PX', OP_TTL_MS)
end
return 1
