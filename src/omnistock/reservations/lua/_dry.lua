-- Dry reads: the read-only twin of the ledger script (see omnistock.reservations.scripts) runs
-- the same prelude, read operations and batch runner with every redis.call replaced by dry_call.
-- What the shared code writes (releasing what is due before a read) lands in this call's memory
-- instead of the server, and its later reads in the same call see it. So a dry read answers
-- exactly what the ledger script would after expiring what is due, and writes nothing: the twin
-- declares no-writes, which Valkey runs even at maxmemory, where it refuses the ledger script.
-- Only the commands the read path uses are modelled; any other write fails the call.
local dry_strings, dry_hashes, dry_removed = {}, {}, {}

-- The start of every call of the twin: it forgets what earlier calls kept.
local function dry_begin()
  dry_strings, dry_hashes, dry_removed = {}, {}, {}
end

-- A number as the server stores it (integers in full, not as Lua's tostring would).
local function dry_text(v)
  if type(v) == 'number' then return string.format('%.17g', v) end
  return v
end

-- The table kept under `key` in `tables`, made on first use.
local function dry_entry(tables, key)
  local t = tables[key]
  if not t then
    t = {}
    tables[key] = t
  end
  return t
end

local DRY = {}

function DRY.GET(key)
  local v = dry_strings[key]
  if v ~= nil then return v end
  return redis.call('GET', key)
end

function DRY.SET(key, value)  -- options (PX) do not matter to reads within one call
  dry_strings[key] = dry_text(value)
  return { ok = 'OK' }
end

function DRY.DEL(...)
  for _, key in ipairs({ ... }) do dry_strings[key] = false end
  return 1
end

function DRY.HSET(key, ...)
  local h = dry_entry(dry_hashes, key)
  local a = { ... }
  for i = 1, #a, 2 do h[a[i]] = dry_text(a[i + 1]) end
  return 0
end

function DRY.HMGET(key, ...)
  local out = redis.call('HMGET', key, ...)
  local h = dry_hashes[key]
  if h then
    for i, field in ipairs({ ... }) do
      local v = h[field]
      if v ~= nil then out[i] = v end
    end
  end
  return out
end

function DRY.HGETALL(key)
  local flat = redis.call('HGETALL', key)
  local h = dry_hashes[key]
  if not h then return flat end
  local seen = {}
  for i = 1, #flat, 2 do
    local v = h[flat[i]]
    if v ~= nil then flat[i + 1] = v end
    seen[flat[i]] = true
  end
  for field, v in pairs(h) do
    if not seen[field] then
      flat[#flat + 1] = field
      flat[#flat + 1] = v
    end
  end
  return flat
end

function DRY.ZREM(key, ...)
  local gone = dry_entry(dry_removed, key)
  for _, member in ipairs({ ... }) do gone[member] = true end
  return 1
end

function DRY.ZRANGEBYSCORE(key, ...)
  local found = redis.call('ZRANGEBYSCORE', key, ...)
  local gone = dry_removed[key]
  if not gone then return found end
  local kept = {}
  for _, member in ipairs(found) do
    if not gone[member] then kept[#kept + 1] = member end
  end
  return kept
end

function DRY.XADD()  -- the events of what expired are the ledger script's to append
  return '0-0'
end

local function dry_call(command, ...)
  local f = DRY[command]
  if f then return f(...) end
  return redis.call(command, ...)
end
