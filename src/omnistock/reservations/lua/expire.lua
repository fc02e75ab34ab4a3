-- The sweeper's step: release everything due, and list pins older than their grace period so the
-- coordinator can resolve them. ARGV: now.
local now = clock(ARGV[1])
local expired = expire_due(now, true)
local stuck = redis.call('ZRANGEBYSCORE', HOME .. ':pin', '-inf', now)
return { expired, stuck }
