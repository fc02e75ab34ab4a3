-- A placed hold is picked and staged at the pickup desk. A hold waiting for its transfer, or
-- short of what it ordered, cannot be ready (the header part of a multi-part hold knows whether
-- any part is short: see transfer_receive). The op remembers its first outcome and replays it.
-- ARGV: now, op, hold id.
local reply, now, op, id, d = begin_step(ARGV, 'h', 'p')
if reply then return reply end
if not d.arrived then return remember(op, cjson.encode({ err = 'state', st = 'awaiting' })) end
if d.short then return remember(op, cjson.encode({ err = 'state', st = 'short' })) end
d.st = 'y'
d.yop = op
write_doc(id, HOME_P, d)
return remember(op, cjson.encode(d))
