-- Every node's position of each SKU, after releasing what has expired.
-- ARGV: now, then per SKU: partition, sku. Returns per SKU one flat list holding, per node, its
-- id then on_hand, reserved, held, safety_stock, inbound and version as integers. The fields are
-- grouped here rather than in the client: the storefront reads this on every page, and the
-- client's event loop, not the server, is what a read costs.
local slot_of = { oh = 2, rs = 3, hd = 4, ss = 5, ib = 6 }
local now = clock(ARGV[1])
expire_due(now)
local out = {}
for i = 2, #ARGV, 2 do
  local h = redis.call('HGETALL', stock_key(tag_of(ARGV[i]), ARGV[i + 1]))
  local flat, base_of = {}, {}
  for j = 1, #h, 2 do
    local field = h[j]
    local node, slot
    if string.byte(field, -2) == 124 then  -- "<node>|v"
      node, slot = string.sub(field, 1, -3), 7
    else
      node, slot = string.sub(field, 1, -4), slot_of[string.sub(field, -2)]
    end
    local base = base_of[node]
    if not base then
      base = #flat
      base_of[node] = base
      flat[base + 1] = node
      for k = 2, 7 do flat[base + k] = 0 end
    end
    if slot then flat[base + slot] = tonumber(h[j + 1]) end
  end
  out[#out + 1] = flat
end
return out
