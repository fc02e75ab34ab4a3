-- Puts back, in this partition (KEYS[1]), what ``omnistock rebuild`` restores from the database
-- after Redis lost data, written as the other scripts write it. Emits no event (the journal
-- already holds every change restored) and expires nothing (the next script to touch the
-- partition does, at the ledger's time, exactly as if nothing had been lost).
-- ARGV: now ('' for the server's clock), then three sections, each a count and its items:
--   positions: sku, node, on_hand, reserved, held, safety_stock, inbound, version;
--   parts: 'r' (a reservation record) or 'd' (a transfer or hold document), id, raw JSON, when
--     its time to live runs out in server ms ('' for none; past ones are skipped), its deadline
--     ('' for none: registered as deadline_add does, in every partition of its lines on a
--     cluster), its pin time ('' for none: a part pinned by a commit in progress);
--   operation results: op id, result, the time of the operation (its memory lasts OP_TTL_MS
--     from then; an op id the partition remembers already is left alone).
-- Returns { OP_TTL_MS, RECORD_TTL_MS, the ledger's now, the server's now (ms), and how many
-- positions, parts and results it wrote }.
local now = clock(ARGV[1])
local t = redis.call('TIME')
local server_ms = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local i = 2
local written = { 0, 0, 0 }

local n = tonumber(ARGV[i])
i = i + 1
for _ = 1, n do
  local sku, node = ARGV[i], ARGV[i + 1]
  redis.call('HSET', stock_key(HOME, sku), node .. '|oh', ARGV[i + 2], node .. '|rs', ARGV[i + 3],
    node .. '|hd', ARGV[i + 4], node .. '|ss', ARGV[i + 5], node .. '|ib', ARGV[i + 6],
    node .. '|v', ARGV[i + 7])
  written[1] = written[1] + 1
  i = i + 8
end

n = tonumber(ARGV[i])
i = i + 1
for _ = 1, n do
  local kind, id, raw, until_ms, exp, pin = ARGV[i], ARGV[i + 1], ARGV[i + 2], ARGV[i + 3],
    ARGV[i + 4], ARGV[i + 5]
  i = i + 6
  local key = kind == 'r' and record_key(id, HOME_P) or doc_key(id, HOME_P)
  local left = until_ms ~= '' and tonumber(until_ms) - server_ms or nil
  if left == nil then
    redis.call('SET', key, raw)
  elseif left > 0 then
    redis.call('SET', key, raw, 'PX', left)
  end
  if left == nil or left > 0 then
    if exp ~= '' then deadline_add(id, HOME_P, cjson.decode(raw).ln, exp) end
    if pin ~= '' then redis.call('ZADD', HOME .. ':pin', pin, id) end
    written[2] = written[2] + 1
  end
end

n = tonumber(ARGV[i])
i = i + 1
for _ = 1, n do
  local left = tonumber(ARGV[i + 2]) + OP_TTL_MS - now
  if left > 0 and redis.call('SET', op_key(ARGV[i]), ARGV[i + 1], 'PX', left, 'NX') then
    written[3] = written[3] + 1
  end
  i = i + 3
end
return { OP_TTL_MS, RECORD_TTL_MS, now, server_ms, written[1], written[2], written[3] }
