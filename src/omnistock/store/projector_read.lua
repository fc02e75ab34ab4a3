-- The projector's read of one event stream (KEYS[1]). One script, so everything it returns is
-- one moment of the ledger: a batch of the stream's entries for the consumer group, and the
-- current record or document of every reservation, transfer and hold that the batch's events
-- name (with a hold its transfer, with a transfer its hold), each with its time to live.
-- ARGV: mode ('new': entries never delivered; 'own': this consumer's pending entries; 'claim':
--       entries another consumer left pending for long; 'parts': no entries, the parts named
--       below only, whether or not the journal is exact), group, consumer, count, min idle ms and
--       start id (claim only), the partition of every part named ('' on a single server, where
--       each id names its home; a cluster keeps a stream per partition, and an event there names
--       the part in that partition), then kind and id of parts to read again (refresh), read only
--       when the journal will then be exact (see below).
-- Returns: the entries, the next start id (claim), the stream's last entry id, the server time
-- in ms, 1 when the journal will be exact at this moment (this read took every entry and no
-- other is pending, so once this batch commits the journal holds every event up to now), and
-- per part read: kind, id, partition, raw JSON ('' when the key is gone), its PTTL.
local stream, mode, group, consumer, count = KEYS[1], ARGV[1], ARGV[2], ARGV[3], tonumber(ARGV[4])
local entries, nxt = {}, ''
if mode == 'parts' then
  -- nothing to read from the stream
elseif mode == 'claim' then
  local r = redis.call('XAUTOCLAIM', stream, group, consumer, ARGV[5], ARGV[6], 'COUNT', count)
  nxt, entries = r[1], r[2]
else
  local r = redis.call('XREADGROUP', 'GROUP', group, consumer, 'COUNT', count, 'STREAMS', stream,
    mode == 'new' and '>' or '0')
  if r and r[1] then entries = r[1][2] end
end

local exact = 0
if mode == 'new' and #entries < count then
  local pending = redis.call('XPENDING', stream, group)
  if tonumber(pending[1]) == #entries then exact = 1 end
end

-- Events naming a reservation (r), transfer (t) or hold (h) by their ref.
local KIND = {
  reserve = 'r', commit = 'r', release = 'r', expire = 'r',
  transfer_reserve = 't', ship_out = 't', ship_in = 't', receive = 't', loss = 't',
  transfer_cancel = 't',
  hold = 'h', hold_arrive = 'h', collect = 'h', hold_cancel = 'h', hold_expire = 'h',
}
local SHAPE = { r = '^[rm](%d+)%-', t = '^t(%d+)m?%-', h = '^h(%d+)m?%-' }
local fixed = ARGV[7]
local seen, docs = {}, {}

local function read(kind, id)
  if seen[id] then return end
  seen[id] = true
  local p = string.match(id, SHAPE[kind])
  if not p then return end
  if fixed ~= '' then p = fixed end
  local key = '{__NS__.' .. p .. '}' .. (kind == 'r' and ':r:' or ':d:') .. id
  local raw = redis.call('GET', key)
  local ttl = -2
  if raw then ttl = redis.call('PTTL', key) else raw = '' end
  docs[#docs + 1] = { kind, id, p, raw, ttl }
  -- A hold and its transfer change together, and their parts share partitions.
  if kind == 'h' then
    local tid = string.match(raw, '"tid":"([^"]+)"')
    if tid then read('t', tid) end
  elseif kind == 't' then
    local hid = string.match(raw, '"hid":"([^"]+)"')
    if hid then read('h', hid) end
  end
end

-- An entry's events are lines of sixteen tab-separated fields (see emit in the ledger's _lib.lua):
-- the second is the event's kind, the fifteenth its ref. One pass of this pattern takes a whole
-- line, each field matched once; searching each line for its last fields again cost more than
-- everything else this script does.
local FIELD = '[^\t\n]*'
local EVENT = FIELD .. '\t(' .. FIELD .. ')' .. string.rep('\t' .. FIELD, 12) .. '\t(' .. FIELD
  .. ')\t' .. FIELD
for _, entry in ipairs(entries) do
  local fields = entry[2]
  if fields then
    for i = 1, #fields, 2 do
      if fields[i] == 'e' then
        for name, ref in string.gmatch(fields[i + 1], EVENT) do
          local kind = KIND[name]
          if kind and ref ~= '' then read(kind, ref) end
        end
      end
    end
  end
end
if exact == 1 or mode == 'parts' then
  for i = 8, #ARGV, 2 do read(ARGV[i], ARGV[i + 1]) end
end

local last = redis.call('XREVRANGE', stream, '+', '-', 'COUNT', 1)
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
return { entries, nxt, last[1] and last[1][1] or '0-0', now, exact, docs }
