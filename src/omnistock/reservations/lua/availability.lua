-- Every node's position of each SKU, after releasing what has expired.
-- ARGV: now, then per SKU: partition, sku. Returns one flat HGETALL list per SKU.
local now = clock(ARGV[1])
expire_due(now)
local out = {}
for i = 2, #ARGV, 2 do
  out[#out + 1] = redis.call('HGETALL', stock_key(tag_of(ARGV[i]), ARGV[i + 1]))
end
return out
