-- Cancel a placed or ready hold: its goods go back to the shelf (see release_hold). The op
-- remembers its first outcome and replays it.
-- ARGV: now, op, hold id.
local now = clock(ARGV[1])
expire_due(now)
local op, id = ARGV[2], ARGV[3]
local first = replay(op)
if first then return { first, 1 } end
local d = read_doc(id)
if not d or d.k ~= 'h' or d.st == 'f' then return { cjson.encode({ err = 'missing' }), 0 } end
if d.st == 'c' and d.fop == op then return { cjson.encode(d), 1 } end
if d.st ~= 'p' and d.st ~= 'y' then
  return remember(op, cjson.encode({ err = 'state', st = d.st }))
end
release_hold(id, HOME_P, d, 'c', 'hold_cancel', op, now)
return remember(op, cjson.encode(d))
