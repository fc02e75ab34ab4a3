-- The benchmark's bare reserve: only the effects every reserve must have (the clock, a sweep of
-- what is due, the operation id's memory, the position read and written, a record, a deadline
-- and an event), with none of the ledger's content (no lines or times in the record, one short
-- event, no version). A reference for what the required work costs, not a ledger.
-- KEYS: position hash, record, deadline set, event stream (one hash tag). ARGV: node, qty, id,
-- ttl_ms.
local t = redis.call('TIME')
local now = t[1] * 1000 + math.floor(t[2] / 1000)
redis.call('ZRANGEBYSCORE', KEYS[3], '-inf', now, 'LIMIT', 0, 16)
if redis.call('EXISTS', KEYS[2]) == 1 then return 'replay' end
local v = redis.call('HMGET', KEYS[1], ARGV[1] .. '|oh', ARGV[1] .. '|rs')
local on_hand, reserved, qty = tonumber(v[1]) or 0, tonumber(v[2]) or 0, tonumber(ARGV[2])
if on_hand - reserved < qty then return 'short' end
redis.call('HSET', KEYS[1], ARGV[1] .. '|rs', reserved + qty)
redis.call('SET', KEYS[2], 'a', 'PX', 172800000)
redis.call('ZADD', KEYS[3], now + tonumber(ARGV[4]), ARGV[3])
redis.call('XADD', KEYS[4], 'MAXLEN', '~', 100000, '*', 'e',
  ARGV[3] .. '\treserve\t' .. ARGV[1] .. '\t' .. qty)
return 'ok'
