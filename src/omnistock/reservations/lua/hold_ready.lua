-- A placed hold is picked and staged at the pickup desk. A hold waiting for its transfer, or
-- short of what it ordered, cannot be ready (the header part of a multi-part hold knows whether
-- any part is short: see transfer_receive). The op remembers its first outcome and replays it.
-- ARGV: now, op, hold id.
local now = clock(ARGV[1])
expire_due(now)
local op, id = ARGV[2], ARGV[3]
local first = replay(op)
if first then return { first, 1 } end
local d = read_doc(id)
if not d or d.k ~= 'h' or d.st == 'f' then return { cjson.encode({ err = 'missing' }), 0 } end
if d.st == 'y' and d.yop == op then return { cjson.encode(d), 1 } end
if d.st ~= 'p' then return remember(op, cjson.encode({ err = 'state', st = d.st })) end
if not d.arrived then return remember(op, cjson.encode({ err = 'state', st = 'awaiting' })) end
if d.short then return remember(op, cjson.encode({ err = 'state', st = 'short' })) end
d.st = 'y'
d.yop = op
write_doc(id, HOME_P, d)
return remember(op, cjson.encode(d))
