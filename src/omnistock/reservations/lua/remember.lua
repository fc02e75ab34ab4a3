-- Remember an operation's outcome decided outside a script (a cluster adjust refused before any
-- partition applied it), unless the operation already has one; returns what is remembered.
-- ARGV: op, outcome.
local prev = replay(ARGV[1])
if prev then return prev end
redis.call('SET', op_key(ARGV[1]), ARGV[2], 'PX', OP_TTL_MS)
return ARGV[2]
