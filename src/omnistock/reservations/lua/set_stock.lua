-- Set the counted on_hand (and optionally safety stock) of one position.
-- ARGV: now, op, partition, node, sku, on_hand, safety_stock or '', expected version or ''.
local now = clock(ARGV[1])
expire_due(now)
local op = ARGV[2]
local prev = replay(op)
if prev then return { prev, 1 } end
local tag, node, sku = tag_of(ARGV[3]), ARGV[4], ARGV[5]
local on_hand = tonumber(ARGV[6])
local p = read_pos(tag, node, sku)
if ARGV[8] ~= '' and tonumber(ARGV[8]) ~= p.v then
  return remember(op, cjson.encode({ err = 'version', want = tonumber(ARGV[8]), v = p.v }))
end
if on_hand < p.rs + p.hd then
  return remember(op, cjson.encode({ err = 'below', short = { { node, sku, p.rs + p.hd, on_hand } } }))
end
local ss = nil
if ARGV[7] ~= '' then ss = tonumber(ARGV[7]) end
local n = apply(tag, node, sku, p, on_hand - p.oh, 0, 0, 0, ss, 'set', op, 'count', now)
return remember(op, cjson.encode({ pos = pos_list(n) }))
