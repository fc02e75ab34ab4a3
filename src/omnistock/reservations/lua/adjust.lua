-- Adjust on_hand by deltas with a reason, all lines or none. A delta that would take on_hand below
-- reserved + held is refused, and every such line is reported.
-- ARGV: now, op, then per line: partition, node, sku, delta, reason, ref.
local now = clock(ARGV[1])
expire_due(now)
local op = ARGV[2]
local prev = replay(op)
if prev then return { prev, 1 } end

local current, short, lines = {}, {}, {}
for i = 3, #ARGV, 6 do
  local part, node, sku, delta = ARGV[i], ARGV[i + 1], ARGV[i + 2], tonumber(ARGV[i + 3])
  local key = part .. '|' .. node .. '|' .. sku
  local p = current[key]
  if not p then
    p = read_pos(tag_of(part), node, sku)
    current[key] = p
  end
  local after = p.oh + delta
  if after < p.rs + p.hd then
    short[#short + 1] = { node, sku, -delta, math.max(0, p.oh - p.rs - p.hd) }
  end
  -- Later lines on the same position see the running total.
  current[key] = { oh = after, rs = p.rs, hd = p.hd, ss = p.ss, ib = p.ib, v = p.v }
  lines[#lines + 1] = { part, node, sku, delta, ARGV[i + 4], ARGV[i + 5], key }
end
if #short > 0 then
  return remember(op, cjson.encode({ err = 'below', short = short }))
end

local final, order = {}, {}
for _, l in ipairs(lines) do
  local tag = tag_of(l[1])
  local p = final[l[7]] or read_pos(tag, l[2], l[3])
  if not final[l[7]] then order[#order + 1] = l[7] end
  final[l[7]] = apply(tag, l[2], l[3], p, l[4], 0, 0, 0, nil, l[5], op, l[6], now)
end
local out = {}
for _, key in ipairs(order) do
  out[#out + 1] = pos_list(final[key])
end
return remember(op, cjson.encode({ pos = out }))
