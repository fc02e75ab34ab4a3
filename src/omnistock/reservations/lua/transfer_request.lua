-- Request a transfer (or one part of it): reserve every line at the source, or none. Repeating
-- the op replays its first result (or its refusal), whatever happened to the transfer since.
-- ARGV: now, op, transfer id, from, to, reason, parts (JSON, header of a multi-part transfer
--       only, else ''), hold id ('' for none), then per line: partition, sku, qty.
local now = clock(ARGV[1])
expire_due(now)
local op, id, from, to = ARGV[2], ARGV[3], ARGV[4], ARGV[5]
local prev = read_doc(id)
if prev then
  if prev.op ~= op then return { cjson.encode({ err = 'exists' }), 0 } end
  if prev.res then return { prev.res, 1 } end
  return { replay(op) or cjson.encode(prev), 1 }
end
local lines, positions, short = {}, {}, {}
for i = 9, #ARGV, 3 do
  local part, sku, qty = ARGV[i], ARGV[i + 1], tonumber(ARGV[i + 2])
  local p = read_pos(tag_of(part), from, sku)
  local avail = available(p)
  if qty > avail then short[#short + 1] = { from, sku, qty, avail } end
  lines[#lines + 1] = { part, sku, qty, 0, 0 }
  positions[#positions + 1] = p
end
if #short > 0 then
  local res = cjson.encode({ err = 'short', short = short })
  write_doc(id, HOME_P, { k = 't', st = 'f', op = op, res = res }, OP_TTL_MS)
  return { res, 0 }
end
for i, l in ipairs(lines) do
  apply(tag_of(l[1]), from, l[2], positions[i], 0, l[3], 0, 0, nil, 'transfer_reserve', op, id,
    now)
end
local d = { k = 't', st = 'q', from = from, to = to, ln = lines, op = op, ct = text_of_now(now) }
if ARGV[6] ~= '' then d.ref = ARGV[6] end
if ARGV[7] ~= '' then d.parts = cjson.decode(ARGV[7]) end
if ARGV[8] ~= '' then d.hid = ARGV[8] end
write_doc(id, HOME_P, d)
return remember(op, cjson.encode(d))
