-- The customer collects a ready hold: the store's on_hand and held both drop, and the hold holds
-- nothing any more. The op remembers its first outcome and replays it.
-- ARGV: now, op, hold id.
local now = clock(ARGV[1])
expire_due(now)
local op, id = ARGV[2], ARGV[3]
local first = replay(op)
if first then return { first, 1 } end
local d = read_doc(id)
if not d or d.k ~= 'h' or d.st == 'f' then return { cjson.encode({ err = 'missing' }), 0 } end
if d.st == 'k' and d.kop == op then return { cjson.encode(d), 1 } end
if d.st ~= 'y' then return remember(op, cjson.encode({ err = 'state', st = d.st })) end
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
