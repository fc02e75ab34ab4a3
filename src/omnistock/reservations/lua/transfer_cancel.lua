-- Cancel a requested transfer (or one part): its reservation at the source is given back. A
-- shipped transfer cannot be cancelled, nor one made for a hold (cancel the hold instead).
-- ARGV: now, op, transfer id.
local now = clock(ARGV[1])
expire_due(now)
local op, id = ARGV[2], ARGV[3]
local d = read_doc(id)
if not d or d.k ~= 't' or d.st == 'f' then return { cjson.encode({ err = 'missing' }), 0 } end
if d.st == 'c' and d.cop == op then return { cjson.encode(d), 1 } end
if d.st ~= 'q' then return { cjson.encode({ err = 'state', st = d.st }), 0 } end
if d.hid then return { cjson.encode({ err = 'state', st = 'held' }), 0 } end
cancel_transfer_doc(id, HOME_P, d, op, now)
return { cjson.encode(d), 0 }
