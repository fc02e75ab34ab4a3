-- A trivial write through the whole ledger path (batching, durability): readiness checks use it,
-- and benchmarks use it as the ceiling of what the client path can carry. ARGV: none.
return redis.call('INCR', HOME .. ':ping')
