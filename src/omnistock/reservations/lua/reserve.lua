-- Reserve every line or none.
-- ARGV: now, op, reservation id (derived from op), ttl_ms, parts (JSON list of partitions, on the
--       header of a multi-part reservation only, else ''), the request's line order (JSON [[node, sku], ...], on the
--       header of a multi-part reservation only, else ''), order_ref,
--       then per line: partition, node, sku, qty.
-- The record doubles as the operation's memory: a repeated op finds it and replays the result.
local now = clock(ARGV[1])
expire_due(now)
local op, id = ARGV[2], ARGV[3]
local prev = read_record(id)
if prev then
  if prev.op ~= op then return { cjson.encode({ err = 'exists' }), 0 } end
  if prev.res then return { prev.res, 1 } end
  return { cjson.encode({ st = 'a', exp = prev.exp, ct = prev.ct }), 1 }
end

local lines, positions, short = {}, {}, {}
for i = 8, #ARGV, 4 do
  local part, node, sku, qty = ARGV[i], ARGV[i + 1], ARGV[i + 2], tonumber(ARGV[i + 3])
  local p = read_pos(tag_of(part), node, sku)
  local avail = available(p)
  if qty > avail then
    short[#short + 1] = { node, sku, qty, avail }
  end
  lines[#lines + 1] = { part, node, sku, qty }
  positions[#positions + 1] = p
end
if #short > 0 then
  local res = cjson.encode({ err = 'short', short = short })
  write_record(id, HOME_P, { st = 'f', op = op, res = res }, OP_TTL_MS)
  return { res, 0 }
end

for i, l in ipairs(lines) do
  apply(tag_of(l[1]), l[2], l[3], positions[i], 0, l[4], 0, 0, nil, 'reserve', op, id, now)
end
local exp = now + tonumber(ARGV[4])
-- Times are kept as text: formatting a number is one of the costliest things a script does.
local exp_text, now_text = tostring(exp), text_of_now(now)
local r = { st = 'a', exp = exp_text, ct = now_text, ln = lines, op = op }
if ARGV[5] ~= '' then r.parts = cjson.decode(ARGV[5]) end
if ARGV[6] ~= '' then r.order = cjson.decode(ARGV[6]) end
if ARGV[7] ~= '' then r.ref = ARGV[7] end
-- An active record outlives its deadline so that it can still be read as expired.
write_record(id, HOME_P, r)
deadline_add(id, HOME_P, lines, exp_text)
return { '{"st":"a","exp":' .. exp_text .. ',"ct":' .. now_text .. '}', 0 }
