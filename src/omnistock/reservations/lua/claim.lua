-- Claim an idempotency key for a request fingerprint (see claim in _lib.lua). On a cluster the
-- claim lives in the partition of the operation id, whatever partitions the request touches.
-- ARGV: op, fingerprint.
return claim(HOME .. ':fp:' .. ARGV[1], ARGV[2])
