-- Place a hold (or one part of it) at a store, every line or none. Without a source the store's
-- own stock moves into held. With a source, a transfer to the store is requested in the same
-- step (the goods reserved at the source) and the hold waits for it; its ready_by is unknown
-- until the goods arrive. Repeating the op replays its first result (or its refusal).
-- ARGV: now, op, hold id, store, customer ref, pickup window ms, ready ms, source ('' for none),
--       transfer id ('' for none), parts (JSON, header of a multi-part hold only, else ''),
--       then per line: partition, sku, qty.
local now = clock(ARGV[1])
expire_due(now)
local op, id, store = ARGV[2], ARGV[3], ARGV[4]
local win, ready, src, tid = tonumber(ARGV[6]), tonumber(ARGV[7]), ARGV[8], ARGV[9]
local prev = read_doc(id)
if prev then
  if prev.op ~= op then return { cjson.encode({ err = 'exists' }), 0 } end
  if prev.res then return { prev.res, 1 } end
  return { replay(op) or cjson.encode(prev), 1 }
end
-- The transfer id is derived from the op id like a requested transfer's: an op id already used
-- for a transfer must not overwrite it (its reservation would never be given back).
if tid ~= '' and read_doc(tid) then return { cjson.encode({ err = 'exists' }), 0 } end
local from = store
if src ~= '' then from = src end
local lines, positions, short = {}, {}, {}
for i = 11, #ARGV, 3 do
  local part, sku, qty = ARGV[i], ARGV[i + 1], tonumber(ARGV[i + 2])
  local p = read_pos(tag_of(part), from, sku)
  local avail = available(p)
  if qty > avail then short[#short + 1] = { from, sku, qty, avail } end
  lines[#lines + 1] = { part, sku, qty, 0 }
  positions[#positions + 1] = p
end
if #short > 0 then
  local res = cjson.encode({ err = 'short', short = short })
  write_doc(id, HOME_P, { k = 'h', st = 'f', op = op, res = res }, OP_TTL_MS)
  return { res, 0 }
end
local d = { k = 'h', st = 'p', store = store, ln = lines, op = op, ct = text_of_now(now),
            cref = ARGV[5], win = win, rdm = ready, exp = now + win }
if ARGV[10] ~= '' then d.parts = cjson.decode(ARGV[10]) end
if src == '' then
  for i, l in ipairs(lines) do
    apply(tag_of(l[1]), store, l[2], positions[i], 0, 0, l[3], 0, nil, 'hold', op, id, now)
    l[4] = l[3]
  end
  d.arrived = true
  d.rb = now + ready
else
  local tlines = {}
  for i, l in ipairs(lines) do
    apply(tag_of(l[1]), src, l[2], positions[i], 0, l[3], 0, 0, nil, 'transfer_reserve', op, tid,
      now)
    tlines[i] = { l[1], l[2], l[3], 0, 0 }
  end
  local t = { k = 't', st = 'q', from = src, to = store, ln = tlines, op = op, ct = d.ct,
              hid = id, ref = 'hold' }
  if d.parts then t.parts = d.parts end
  write_doc(tid, HOME_P, t)
  d.arrived = false
  d.tid = tid
  d.src = src
end
write_doc(id, HOME_P, d)
deadline_add(id, HOME_P, lines, d.exp)
return remember(op, cjson.encode(d))
