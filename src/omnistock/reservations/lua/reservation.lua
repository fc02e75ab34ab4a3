-- Read one reservation record after releasing what has expired. ARGV: now, reservation id.
local now = clock(ARGV[1])
expire_due(now)
local r = record_view(ARGV[2])
if not r then return cjson.encode({ err = 'missing' }) end
return cjson.encode(r)
