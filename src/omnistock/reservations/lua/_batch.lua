-- Runs a batch of operations in one function call, so the call, the clock and the expiry sweep
-- of a partition are paid once per batch instead of once per operation. This is the body of the
-- library's one function (see omnistock.reservations.scripts), called with KEYS and ARGV. Each
-- operation is atomic on its own and isolated from the others: one that fails returns an error
-- in its own place and the others go on.
-- ARGV: on a single server the tag of the one event stream and deadline set ('' on a cluster),
-- the count of operations, then per operation: name, number of keys, number of args, request
-- fingerprint ('' for none), keys..., args...
-- An operation given a fingerprint (single server only) first claims its operation id (ARGV[2] of
-- every mutation) for it, and its result becomes { claim, result }: a claim of 2 means another
-- request already used the id, and the operation does not run.
if ARGV[1] ~= '' then ONE_SERVER = ARGV[1] end
local out, partition_of_tag = {}, {}

-- Valkey keeps what a script wrote before one of its calls failed, and a batch appends its events
-- after all its operations ran. So each operation first checks the streams it may append to
-- (any operation may, by expiring what is due): a stream of the wrong type fails the operation
-- before it writes anything, instead of failing the whole call after every operation wrote.
local stream_ok = {}
local function check_stream(tag)
  local ok = stream_ok[tag]
  if ok == nil then
    local kind = redis.call('TYPE', tag .. ':ev')['ok']
    ok = kind == 'stream' or kind == 'none'
    stream_ok[tag] = ok
  end
  if not ok then error({ err = 'WRONGTYPE ' .. tag .. ':ev is not a stream' }) end
end
local function check_streams(keys)
  if ONE_SERVER then return check_stream(ONE_SERVER) end
  for _, tag in ipairs(keys) do check_stream(tag) end
end

-- An operation that fails leaves nothing behind, its claim included: the same request again is
-- then its first application, and another request may use the id.
local function run(name, keys, args, fp)
  check_streams(keys)
  if fp == '' then return OPS[name](keys, args) end
  local fkey = (ONE_SERVER or HOME) .. ':fp:' .. args[2]
  local seen = claim(fkey, fp)
  if seen == 2 then return { seen, false } end
  local ok, result = pcall(OPS[name], keys, args)
  if not ok then
    if seen == 0 then redis.call('DEL', fkey) end
    error(result, 0)
  end
  return { seen, result or false }
end
local i = 3
for n = 1, tonumber(ARGV[2]) do
  local name, nk, na, fp = ARGV[i], tonumber(ARGV[i + 1]), tonumber(ARGV[i + 2]), ARGV[i + 3]
  local keys = { unpack(ARGV, i + 4, i + 3 + nk) }
  local args = na > 0 and { unpack(ARGV, i + 4 + nk, i + 3 + nk + na) } or {}
  i = i + 4 + nk + na
  OPKEYS, HOME = keys, keys[1]
  HOME_P = partition_of_tag[HOME]
  if not HOME_P then
    HOME_P = string.match(HOME, '%.(%d+)}$')
    partition_of_tag[HOME] = HOME_P
  end
  local ok, result = pcall(run, name, keys, args, fp)
  if ok then
    out[n] = result
  elseif type(result) == 'table' and result.err then
    out[n] = { err = result.err }
  else
    out[n] = { err = 'ERR ' .. name .. ': ' .. tostring(result) }
  end
end
flush_events()
return out
