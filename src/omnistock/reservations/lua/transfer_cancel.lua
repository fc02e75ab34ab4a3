-- Cancel a requested transfer (or one part): its reservation at the source is given back. A
-- shipped transfer cannot be cancelled, nor one made for a hold (cancel the hold instead). The op
-- remembers its first outcome and replays it.
-- ARGV: now, op, transfer id.
local now = clock(ARGV[1])
expire_due(now)
local op, id = ARGV[2], ARGV[3]
local first = replay(op)
if first then return { first, 1 } end
local d = read_doc(id)
if not d or d.k ~= 't' or d.st == 'f' then return { cjson.encode({ err = 'missing' }), 0 } end
if d.st == 'c' and d.cop == op then return { cjson.encode(d), 1 } end
if d.st ~= 'q' then return remember(op, cjson.encode({ err = 'state', st = d.st })) end
if d.hid then return remember(op, cjson.encode({ err = 'state', st = 'held' })) end
cancel_transfer_doc(id, HOME_P, d, op, now)
return remember(op, cjson.encode(d))
