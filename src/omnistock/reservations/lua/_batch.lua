-- Runs a batch of operations in one script call, so the prelude, the clock and the expiry sweep
-- of a partition are paid once per batch instead of once per operation. Each operation is
-- atomic on its own and isolated from the others: one that fails returns an error in its own
-- place and the others go on.
-- ARGV: on a single server the tag of the one event stream and deadline set ('' on a cluster),
-- the count of operations, then per operation: name, number of keys, number of args, request
-- fingerprint ('' for none), keys..., args...
-- An operation given a fingerprint (single server only) first claims its operation id (ARGV[2] of
-- every mutation) for it, and its result becomes { claim, result }: a claim of 2 means another
-- request already used the id, and the operation does not run.
if ARGV[1] ~= '' then ONE_SERVER = ARGV[1] end
local out, partition_of_tag = {}, {}
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
  local seen = 0
  if fp ~= '' then seen = claim((ONE_SERVER or HOME) .. ':fp:' .. args[2], fp) end
  local ok, result = true, nil
  if seen ~= 2 then ok, result = pcall(OPS[name], keys, args) end
  if ok then
    if fp ~= '' then result = { seen, result or false } end
    out[n] = result
  elseif type(result) == 'table' and result.err then
    out[n] = { err = result.err }
  else
    out[n] = { err = 'ERR ' .. name .. ': ' .. tostring(result) }
  end
end
flush_events()
return out
