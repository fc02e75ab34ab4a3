-- Reserve every line or none.
-- ARGV: now, op, reservation id, ttl_ms, parts (JSON list of partitions, header only, else ''),
--       order_ref, then per line: partition, node, sku, qty.
local now = clock(ARGV[1])
expire_due(now)
local op, id = ARGV[2], ARGV[3]
local prev = replay(op)
if prev then return { prev, 1 } end
if redis.call('EXISTS', record_key(id)) == 1 then
  return remember(op, cjson.encode({ err = 'exists' }))
end

local lines, positions, short = {}, {}, {}
for i = 7, #ARGV, 4 do
  local part, node, sku, qty = tonumber(ARGV[i]), ARGV[i + 1], ARGV[i + 2], tonumber(ARGV[i + 3])
  local p = read_pos(tag_of(part), node, sku)
  local avail = available(p)
  if qty > avail then
    short[#short + 1] = { node, sku, qty, avail }
  end
  lines[#lines + 1] = { part, node, sku, qty }
  positions[#positions + 1] = p
end
if #short > 0 then
  return remember(op, cjson.encode({ err = 'short', short = short }))
end

for i, l in ipairs(lines) do
  apply(tag_of(l[1]), l[2], l[3], positions[i], { rs = l[4] }, 'reserve', op, id, now)
end
local exp = now + tonumber(ARGV[4])
local ln = cjson.encode(lines)
redis.call('HSET', record_key(id), 'st', 'a', 'exp', exp, 'ct', now, 'ln', ln, 'op', op)
if ARGV[5] ~= '' then
  redis.call('HSET', record_key(id), 'parts', ARGV[5], 'ref', ARGV[6])
end
deadline_add(id, HOME_P, lines, exp)
return remember(op, cjson.encode({ st = 'a', exp = exp, ct = now }))
