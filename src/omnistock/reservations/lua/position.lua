-- Read positions after releasing what has expired. ARGV: now, then per position: partition, node, sku.
local now = clock(ARGV[1])
expire_due(now)
local out = {}
for i = 2, #ARGV, 3 do
  out[#out + 1] = pos_list(read_pos(tag_of(ARGV[i]), ARGV[i + 1], ARGV[i + 2]))
end
return out
