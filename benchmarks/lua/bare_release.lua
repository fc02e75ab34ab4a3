-- The benchmark's bare release (see bare_reserve.lua): the clock, a sweep of what is due, the
-- record's state checked and changed, the position given back, the deadline dropped, an event.
-- KEYS and ARGV as bare_reserve.lua.
local t = redis.call('TIME')
local now = t[1] * 1000 + math.floor(t[2] / 1000)
redis.call('ZRANGEBYSCORE', KEYS[3], '-inf', now, 'LIMIT', 0, 16)
if redis.call('GET', KEYS[2]) ~= 'a' then return 'state' end
local qty = tonumber(ARGV[2])
redis.call('HINCRBY', KEYS[1], ARGV[1] .. '|rs', -qty)
redis.call('SET', KEYS[2], 'r', 'PX', 172800000)
redis.call('ZREM', KEYS[3], ARGV[3])
redis.call('XADD', KEYS[4], 'MAXLEN', '~', 100000, '*', 'e',
  ARGV[3] .. '\trelease\t' .. ARGV[1] .. '\t' .. qty)
return 'ok'
