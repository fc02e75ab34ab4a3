-- Shared prelude of the ledger library. Each operation (one file each) becomes a function that
-- runs with its own KEYS and ARGV; _batch.lua runs a batch of operations in one function call.
-- The library is loaded once (FUNCTION LOAD), so this prelude runs once per load, not per call:
-- what a call keeps here (the clock, pending events, sweeps done) is reset by begin_call.
-- An operation's KEYS hold partition tags such as "{os.17}"; KEYS[1] is its home partition,
-- where operation ids, reservation records and deadlines live. Every key an operation touches
-- starts with one of its tags, so a batch given a single tag stays inside one cluster slot.
-- Placeholders __NAME__ are filled in by omnistock.reservations.scripts before loading.

-- Set by the batch runner before each operation.
local HOME, HOME_P, OPKEYS
-- On a single server, the tag under which the one event stream and the one deadline set live;
-- nil on a cluster, where each partition keeps its own so that every script stays in its slot.
local ONE_SERVER
local OP_TTL_MS = __OP_TTL_MS__
local RECORD_TTL_MS = __RECORD_TTL_MS__
local STREAM_MAXLEN = __STREAM_MAXLEN__

local function tag_of(partition)
  return '{__NS__.' .. partition .. '}'
end

-- The server's time, read once per batch, unless a caller (tests) passes its own.
local server_now
local function clock(override)
  if override ~= nil and override ~= '' then
    return tonumber(override)
  end
  if not server_now then
    local t = redis.call('TIME')
    server_now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
  end
  return server_now
end

local function stock_key(tag, sku)
  return tag .. ':s:' .. sku
end

-- A position is six integer fields of the SKU's hash, prefixed by the node id. A node's field
-- names are made once per call (each concatenation allocates a string), in the order of
-- pos_list: on_hand, reserved, held, safety_stock, inbound, version.
local fields_of = {}
local function fields(node)
  local f = fields_of[node]
  if not f then
    f = { node .. '|oh', node .. '|rs', node .. '|hd', node .. '|ss', node .. '|ib', node .. '|v' }
    fields_of[node] = f
  end
  return f
end

local function read_pos(tag, node, sku)
  local f = fields(node)
  local v = redis.call('HMGET', stock_key(tag, sku), f[1], f[2], f[3], f[4], f[5], f[6])
  return {
    oh = tonumber(v[1]) or 0, rs = tonumber(v[2]) or 0, hd = tonumber(v[3]) or 0,
    ss = tonumber(v[4]) or 0, ib = tonumber(v[5]) or 0, v = tonumber(v[6]) or 0,
    text = v,
  }
end

-- Valkey keeps what a script wrote before one of its calls failed. A step that writes several
-- positions checks first that each is a hash (or absent), so that one of the wrong type fails the
-- step before its first write, not half-way (where a retry would apply the first lines twice).
-- One position needs no check: it is read before it is written. ``sku_at``: where a line keeps
-- its SKU (3 in reservation lines, 2 in transfer and hold lines).
local function check_positions(lines, sku_at)
  if #lines < 2 then return end
  for _, l in ipairs(lines) do
    local key = stock_key(tag_of(l[1]), l[sku_at])
    local kind = redis.call('TYPE', key)['ok']
    if kind ~= 'hash' and kind ~= 'none' then
      error({ err = 'WRONGTYPE ' .. key .. ' holds a ' .. kind .. ', not a position hash' })
    end
  end
end

local function available(p)
  local a = p.oh - p.rs - p.hd - p.ss
  if a < 0 then return 0 end
  return a
end

local function pos_list(p)
  return { p.oh, p.rs, p.hd, p.ss, p.ib, p.v }
end

-- Events are collected per partition and appended by flush_events at the end of the batch,
-- one stream entry per partition and batch: the server pays per entry, and this is on every
-- write. An entry's field "e" holds one event per line, its values separated by tabs: op, kind,
-- node, sku, the deltas of on_hand, reserved, held and inbound, the resulting on_hand, reserved,
-- held, safety_stock, inbound and version, the reference and the time in milliseconds.
-- omnistock.reservations.events reads them.
-- On a single server every event goes to one stream (see ONE_SERVER), so a batch appends a
-- single entry whatever partitions it touched; on a cluster each partition has its own.
local pending_events, pending_tags = {}, {}

local function emit(tag, event)
  if ONE_SERVER then tag = ONE_SERVER end
  local list = pending_events[tag]
  if not list then
    list = {}
    pending_events[tag] = list
    pending_tags[#pending_tags + 1] = tag
  end
  list[#list + 1] = event
end

local function flush_events()
  for _, tag in ipairs(pending_tags) do
    redis.call('XADD', tag .. ':ev', 'MAXLEN', '~', STREAM_MAXLEN, '*',
      'e', table.concat(pending_events[tag], '\n'))
  end
  pending_events, pending_tags = {}, {}
end

-- Number to text is costly in Lua (a printf per number); the time is formatted once per value.
local now_text_of, now_text = nil, nil
local function text_of_now(now)
  if now ~= now_text_of then
    now_text_of, now_text = now, tostring(now)
  end
  return now_text
end

local function delta_text(d)
  if d == 0 then return '0' end
  return d
end

-- Applies deltas to a position read earlier in the same operation, bumps its version, records
-- the event and returns the new position. Only changed fields are written.
local function apply(tag, node, sku, p, doh, drs, dhd, dib, ss_new, kind, op, ref, now)
  local n = {
    oh = p.oh + doh, rs = p.rs + drs, hd = p.hd + dhd, ss = ss_new or p.ss, ib = p.ib + dib,
    v = p.v + 1,
  }
  local key, f = stock_key(tag, sku), fields(node)
  if doh == 0 and dhd == 0 and dib == 0 and n.ss == p.ss then
    redis.call('HSET', key, f[2], n.rs, f[6], n.v)
  elseif drs == 0 and dhd == 0 and dib == 0 and n.ss == p.ss then
    redis.call('HSET', key, f[1], n.oh, f[6], n.v)
  else
    redis.call('HSET', key, f[1], n.oh, f[2], n.rs, f[3], n.hd, f[4], n.ss, f[5], n.ib, f[6], n.v)
  end
  -- Unchanged quantities reuse the text they were read as.
  local t = p.text or {}
  emit(tag, op .. '\t' .. kind .. '\t' .. node .. '\t' .. sku .. '\t' .. delta_text(doh)
    .. '\t' .. delta_text(drs) .. '\t' .. delta_text(dhd) .. '\t' .. delta_text(dib)
    .. '\t' .. (doh == 0 and t[1] or n.oh) .. '\t' .. (drs == 0 and t[2] or n.rs)
    .. '\t' .. (dhd == 0 and t[3] or n.hd) .. '\t' .. (n.ss == p.ss and t[4] or n.ss)
    .. '\t' .. (dib == 0 and t[5] or n.ib) .. '\t' .. n.v .. '\t' .. (ref or '') .. '\t'
    .. text_of_now(now))
  return n
end

-- A reservation record is one JSON string {st, exp, ct, ln, op, ref, parts, fop, res} in the
-- partition of the script that created it (KEYS[1]); its key is derived from the reserve's
-- operation id, so the record is also that operation's memory. Statuses: a(ctive), p(inned for a
-- commit in progress), c(ommitted), r(eleased), x (expired), f(ailed: res holds the refusal).
-- Its deadline is registered in every partition holding one of its lines, as
-- "<record partition>/<id>", so a script on any of those partitions expires it in time.

local function record_key(id, rp)
  return tag_of(rp or HOME_P) .. ':r:' .. id
end

-- The record and its JSON as stored. A caller is answered with the JSON as stored, which holds
-- everything a caller reads of a record (st, exp, ct, ln, ref, parts, order) and a few fields it
-- ignores: encoding a view of the record again cost a script a whole JSON encoding per answer.
local function read_record(id, rp)
  local raw = redis.call('GET', record_key(id, rp))
  if not raw then return nil end
  return cjson.decode(raw), raw
end

-- Without ttl_ms the record keeps no time to live: an active record always has a deadline, so
-- it is certain to be given one when it ends (committed, released or expired). Returns the JSON
-- written.
local function write_record(id, rp, r, ttl_ms)
  local raw = cjson.encode(r)
  if ttl_ms then
    redis.call('SET', record_key(id, rp), raw, 'PX', ttl_ms)
  else
    redis.call('SET', record_key(id, rp), raw)
  end
  return raw
end

local function line_partitions(lines)
  local seen, out = {}, {}
  for _, l in ipairs(lines) do
    if not seen[l[1]] then
      seen[l[1]] = true
      out[#out + 1] = l[1]
    end
  end
  return out
end

-- On a single server every deadline is kept in one sorted set (see ONE_SERVER), so a batch
-- sweeps once whatever partitions it touches; on a cluster each partition has its own.

local function deadlines_of(tag)
  return (ONE_SERVER or tag) .. ':exp'
end

local function deadline_add(id, rp, lines, exp)
  if ONE_SERVER or #lines == 1 then
    redis.call('ZADD', deadlines_of(tag_of(lines[1][1])), exp, rp .. '/' .. id)
    return
  end
  for _, p in ipairs(line_partitions(lines)) do
    redis.call('ZADD', tag_of(p) .. ':exp', exp, rp .. '/' .. id)
  end
end

local function deadline_remove(id, rp, lines)
  if ONE_SERVER or #lines == 1 then
    redis.call('ZREM', deadlines_of(tag_of(lines[1][1])), rp .. '/' .. id)
    return
  end
  for _, p in ipairs(line_partitions(lines)) do
    redis.call('ZREM', tag_of(p) .. ':exp', rp .. '/' .. id)
  end
end

-- Returns every reserved line of a record to available and gives it a terminal status; returns
-- the record's JSON as written.
local function release_record(id, rp, r, status, kind, op, now)
  check_positions(r.ln, 3)
  for _, l in ipairs(r.ln) do
    local tag = tag_of(l[1])
    local p = read_pos(tag, l[2], l[3])
    apply(tag, l[2], l[3], p, 0, -l[4], 0, 0, nil, kind, op, id, now)
  end
  r.st = status
  r['end'] = now
  r.fop = op
  local raw = write_record(id, rp, r, RECORD_TTL_MS)
  deadline_remove(id, rp, r.ln)
  return raw
end


-- Transfers and holds are documents: one JSON string per partition part, {k = 't' or 'h', st,
-- ln, ...}, at <tag>:d:<id>, in the partition of the part's lines (a hold and its transfer have
-- the same lines, so their parts share partitions). Transfer statuses: q(requested), s(hipped,
-- in transit), d(elivered: received), c(ancelled), f(ailed: res holds the refusal). Hold
-- statuses: p(laced), y (ready), k (collected), c(ancelled), x (expired), f(ailed).
-- Transfer lines: {partition, sku, qty, shipped, received}; hold lines: {partition, sku, qty,
-- held}. Each transition remembers its operation id (sop, rop, cop, yop, kop), so repeating it
-- replays.

local function doc_key(id, rp)
  return tag_of(rp or HOME_P) .. ':d:' .. id
end

local function read_doc(id, rp)
  local raw = redis.call('GET', doc_key(id, rp))
  if not raw then return nil end
  return cjson.decode(raw)
end

local function write_doc(id, rp, d, ttl_ms)
  if ttl_ms then
    redis.call('SET', doc_key(id, rp), cjson.encode(d), 'PX', ttl_ms)
  else
    redis.call('SET', doc_key(id, rp), cjson.encode(d))
  end
end

-- Changes one position by deltas and records the event.
local function move(part, node, sku, doh, drs, dhd, dib, kind, op, ref, now)
  local tag = tag_of(part)
  return apply(tag, node, sku, read_pos(tag, node, sku), doh, drs, dhd, dib, nil, kind, op, ref,
    now)
end

-- Gives a requested transfer's reservation back at its source.
local function cancel_transfer_doc(id, rp, t, op, now)
  check_positions(t.ln, 2)
  for _, l in ipairs(t.ln) do
    move(l[1], t.from, l[2], 0, -l[3], 0, 0, 'transfer_cancel', op, id, now)
  end
  t.st = 'c'
  t.cop = op
  t['end'] = now
  write_doc(id, rp, t, RECORD_TTL_MS)
end

-- Ends a placed or ready hold without collection: what the store holds goes back to available;
-- its transfer is cancelled if not shipped yet, and otherwise arrives as ordinary stock.
local function release_hold(id, rp, d, status, kind, op, now)
  -- The transfer is read before anything is written (a hold and its transfer have the same
  -- SKUs, so the same position keys).
  local t = d.tid and read_doc(d.tid, rp)
  check_positions(d.ln, 2)
  for _, l in ipairs(d.ln) do
    if l[4] > 0 then
      move(l[1], d.store, l[2], 0, 0, -l[4], 0, kind, op, id, now)
      l[4] = 0
    end
  end
  if d.tid then
    if t and t.st == 'q' then
      cancel_transfer_doc(d.tid, rp, t, op, now)
    elseif t and t.st == 's' then
      t.hid = nil
      write_doc(d.tid, rp, t)
    end
  end
  d.st = status
  d.fop = op
  d['end'] = now
  write_doc(id, rp, d, RECORD_TTL_MS)
  deadline_remove(id, rp, d.ln)
end

-- Expiry is data: before anything else, every script releases what is due in the partitions it
-- touches, so availability is exact at the moment of expiry whether or not a sweeper runs.
-- A partition swept at a given time needs no second sweep in the same batch, unless a caller
-- has just put back a deadline that may have passed (force).
local swept_at = {}

-- The start of every call: nothing of an earlier call's batch carries over.
local function begin_call()
  ONE_SERVER, server_now = nil, nil
  pending_events, pending_tags, swept_at, fields_of = {}, {}, {}, {}
end

local function expire_due(now, force)
  local expired = 0
  for _, tag in ipairs(OPKEYS) do
    local dkey = deadlines_of(tag)
    if force or swept_at[dkey] ~= now then
      swept_at[dkey] = now
      local due = redis.call('ZRANGEBYSCORE', dkey, '-inf', now)
      for _, member in ipairs(due) do
        local rp, id = string.match(member, '^(%d+)/(.+)$')
        if string.byte(id) == 104 then  -- 'h': a hold
          local d = read_doc(id, rp)
          if d and (d.st == 'p' or d.st == 'y') then
            release_hold(id, rp, d, 'x', 'hold_expire', 'expire:' .. id, now)
            expired = expired + 1
          else
            redis.call('ZREM', dkey, member)
          end
        else
          local r = read_record(id, rp)
          if r and r.st == 'a' then
            release_record(id, rp, r, 'x', 'expire', 'expire:' .. id, now)
            expired = expired + 1
          else
            redis.call('ZREM', dkey, member)
          end
        end
      end
    end
  end
  return expired
end

local function op_key(op)
  return HOME .. ':op:' .. op
end

-- Operation ids make every mutation idempotent: the first result is stored and returned again.
local function replay(op)
  return redis.call('GET', op_key(op))
end

-- Idempotency keys of the API: the fingerprint of the request first made under an operation id,
-- so that another request reusing the id is refused instead of replayed. Returns 0 the first time
-- (and remembers it), 1 for the same request again, 2 for another request.
local function claim(fkey, fp)
  local seen = redis.call('GET', fkey)
  if not seen then
    redis.call('SET', fkey, fp, 'PX', OP_TTL_MS)
    return 0
  end
  if seen == fp then return 1 end
  return 2
end

local function remember(op, result)
  redis.call('SET', op_key(op), result, 'PX', OP_TTL_MS)
  return { result, 0 }
end

-- The common start of a step on a transfer (kind 't') or a hold ('h'): read the clock and
-- release what is due, replay the op's first outcome, find the document and check that it is in
-- state `from`. Returns the reply to give back at once, or nil, now, op, id and the document.
local function begin_step(ARGV, kind, from)
  local now = clock(ARGV[1])
  expire_due(now)
  local op, id = ARGV[2], ARGV[3]
  local first = replay(op)
  if first then return { first, 1 } end
  local d = read_doc(id)
  if not d or d.k ~= kind or d.st == 'f' then return { cjson.encode({ err = 'missing' }), 0 } end
  if d.st ~= from then return remember(op, cjson.encode({ err = 'state', st = d.st })) end
  return nil, now, op, id, d
end
