-- The customer collects a ready hold: the store's on_hand and held both drop, and the hold holds
-- nothing any more. The op remembers its first outcome and replays it.
-- ARGV: now, op, hold id.
local reply, now, op, id, d = begin_step(ARGV, 'h', 'y')
if reply then return reply end
check_positions(d.ln, 2)
for _, l in ipairs(d.ln) do
  move(l[1], d.store, l[2], -l[4], 0, -l[4], 0, 'collect', op, id, now)
  l[4] = 0
end
d.st = 'k'
d.kop = op
d['end'] = now
write_doc(id, HOME_P, d, RECORD_TTL_MS)
deadline_remove(id, HOME_P, d.ln)
return remember(op, cjson.encode(d))
