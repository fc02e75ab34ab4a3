-- Read one reservation record after releasing what has expired. ARGV: now, reservation id.
local now = clock(ARGV[1])
expire_due(now)
local r, raw = read_record(ARGV[2])
if not r or r.st == 'f' then return cjson.encode({ err = 'missing' }) end
return raw
