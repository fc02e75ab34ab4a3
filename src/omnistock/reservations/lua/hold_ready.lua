-- A placed hold is picked and staged at the pickup desk. A hold waiting for its transfer, or
-- short of what it ordered, cannot be ready.
-- ARGV: now, op, hold id.
local now = clock(ARGV[1])
expire_due(now)
local op, id = ARGV[2], ARGV[3]
local d = read_doc(id)
if not d or d.k ~= 'h' or d.st == 'f' then return { cjson.encode({ err = 'missing' }), 0 } end
if d.st == 'y' and d.yop == op then return { cjson.encode(d), 1 } end
if d.st ~= 'p' then return { cjson.encode({ err = 'state', st = d.st }), 0 } end
if not d.arrived then return { cjson.encode({ err = 'state', st = 'awaiting' }), 0 } end
if d.short then return { cjson.encode({ err = 'state', st = 'short' }), 0 } end
d.st = 'y'
d.yop = op
write_doc(id, HOME_P, d)
return { cjson.encode(d), 0 }
