-- Cancel a requested transfer (or one part): its reservation at the source is given back. A
-- shipped transfer cannot be cancelled, nor one made for a hold (cancel the hold instead). The op
-- remembers its first outcome and replays it.
-- ARGV: now, op, transfer id.
local reply, now, op, id, d = begin_step(ARGV, 't', 'q')
if reply then return reply end
if d.hid then return remember(op, cjson.encode({ err = 'state', st = 'held' })) end
cancel_transfer_doc(id, HOME_P, d, op, now)
return remember(op, cjson.encode(d))
