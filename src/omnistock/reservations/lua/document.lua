-- Read a transfer or hold part, after releasing whatever is due (a hold past its expiry reads
-- as expired at once). ARGV: now, id.
expire_due(clock(ARGV[1]))
local raw = redis.call('GET', doc_key(ARGV[2]))
if not raw then return cjson.encode({ err = 'missing' }) end
return raw
