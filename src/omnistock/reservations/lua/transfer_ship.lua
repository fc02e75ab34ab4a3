-- Ship a requested transfer (or one part): the source's on_hand and reserved drop, the
-- destination's inbound rises, line by line in one step. The op remembers its first outcome
-- (the transfer as shipped, or the refusal) and replays it.
-- ARGV: now, op, transfer id.
local reply, now, op, id, d = begin_step(ARGV, 't', 'q')
if reply then return reply end
check_positions(d.ln, 2)
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
