-- Ship a requested transfer (or one part): the source's on_hand and reserved drop, the
-- destination's inbound rises, line by line in one step. The op remembers its first outcome
-- (the transfer as shipped, or the refusal) and replays it.
-- ARGV: now, op, transfer id.
local now = clock(ARGV[1])
expire_due(now)
local op, id = ARGV[2], ARGV[3]
local first = replay(op)
if first then return { first, 1 } end
local d = read_doc(id)
if not d or d.k ~= 't' or d.st == 'f' then return { cjson.encode({ err = 'missing' }), 0 } end
if d.st == 's' and d.sop == op then return { cjson.encode(d), 1 } end
if d.st ~= 'q' then return remember(op, cjson.encode({ err = 'state', st = d.st })) end
for _, l in ipairs(d.ln) do
  move(l[1], d.from, l[2], -l[3], -l[3], 0, 0, 'ship_out', op, id, now)
  move(l[1], d.to, l[2], 0, 0, 0, l[3], 'ship_in', op, id, now)
  l[4] = l[3]
end
d.st = 's'
d.sop = op
d.shipped = text_of_now(now)
write_doc(id, HOME_P, d)
return remember(op, cjson.encode(d))
