-- Receive a shipped transfer (or one part), once: the destination's on_hand rises by what
-- arrived and its inbound drops by what was shipped; a shortfall leaves inbound as a 'loss' event
-- with the transfer id. Goods of a transfer made for a hold go straight into held at the store,
-- in the same step, so they are never sellable to anyone else; the hold's ready_by and expiry
-- then count from now. The op remembers its first outcome and replays it; a receipt refused as
-- invalid (a SKU not on the transfer, more than shipped) is not an outcome, and is not kept.
-- ARGV: now, op, transfer id, what arrived: '' when everything shipped arrived, else the whole
--       receipt as JSON [[sku, qty], ...] in the caller's order (a SKU left out arrived not at
--       all), the same for every part. The header of a multi-part transfer checks every line
--       against its map of the parts (SKUs and quantities), so it refuses a bad receipt before
--       any part takes it, and marks its hold short if any part is; another part takes its own.
local reply, now, op, id, d = begin_step(ARGV, 't', 's')
if reply then return reply end
local multi = string.match(id, '^%a%d+m%-') ~= nil
local whole = {}  -- every line of the transfer this part can check: sku -> shipped
for _, l in ipairs(d.ln) do whole[l[2]] = l[4] end
if d.parts and d.parts.q then
  for i, sku in ipairs(d.parts.o) do
    if whole[sku] == nil then whole[sku] = d.parts.q[i] end
  end
end
local arrived, whole_short = nil, false
if ARGV[4] ~= '' then
  arrived = {}
  for _, entry in ipairs(cjson.decode(ARGV[4])) do
    local sku, qty = entry[1], entry[2]
    local shipped = whole[sku]
    if shipped == nil then
      -- Another part's line: its header has checked it.
      if not multi or d.parts then
        return { cjson.encode({ err = 'unknown_line', sku = sku }), 0 }
      end
    elseif qty > shipped then
      return { cjson.encode({ err = 'over', sku = sku, shipped = shipped }), 0 }
    end
    arrived[sku] = qty
  end
  for sku, shipped in pairs(whole) do
    if (arrived[sku] or 0) < shipped then whole_short = true end
  end
end
local hold = nil
if d.hid then
  hold = read_doc(d.hid)
  if hold and hold.st ~= 'p' then hold = nil end
end
local held_for = {}
check_positions(d.ln, 2)
for _, l in ipairs(d.ln) do
  local got = l[4]
  if arrived then got = arrived[l[2]] or 0 end
  move(l[1], d.to, l[2], got, 0, 0, -got, 'receive', op, id, now)
  if got < l[4] then
    move(l[1], d.to, l[2], 0, 0, 0, -(l[4] - got), 'loss', op, id, now)
  end
  l[5] = got
  held_for[l[2]] = got
end
d.st = 'd'
d.rop = op
d['end'] = now
write_doc(id, HOME_P, d, RECORD_TTL_MS)
if hold then
  for _, hl in ipairs(hold.ln) do
    local got = held_for[hl[2]] or 0
    if got > 0 then
      move(hl[1], hold.store, hl[2], 0, 0, got, 0, 'hold_arrive', op, d.hid, now)
    end
    hl[4] = got
    if got < hl[3] then hold.short = true end
  end
  if whole_short then hold.short = true end
  hold.arrived = true
  hold.rb = now + hold.rdm
  hold.exp = now + hold.win
  write_doc(d.hid, HOME_P, hold)
  deadline_add(d.hid, HOME_P, hold.ln, hold.exp)
end
return remember(op, cjson.encode(d))
