-- Undo a part of a multi-part transfer or hold that could not be created whole (cluster sagas):
-- what this part reserved or held is given back, and the part records the final refusal (the
-- refused part too), so that repeating the creating operation replays it in every partition.
-- A document another operation made is left alone. Idempotent.
-- ARGV: now, op, id, the final refusal (JSON).
local now = clock(ARGV[1])
local op, id = ARGV[2], ARGV[3]
local d = read_doc(id)
if d and d.op ~= op then return 0 end
if d and d.k == 't' and d.st == 'q' then
  check_positions(d.ln, 2)
  for _, l in ipairs(d.ln) do
    move(l[1], d.from, l[2], 0, -l[3], 0, 0, 'transfer_cancel', op, id, now)
  end
elseif d and d.k == 'h' and (d.st == 'p' or d.st == 'y') then
  -- Everything that can fail on a key of the wrong type comes before the first write (see
  -- check_positions): the transfer is read, the deadline set written first.
  local t = d.tid and read_doc(d.tid)
  check_positions(d.ln, 2)
  deadline_remove(id, HOME_P, d.ln)
  for _, l in ipairs(d.ln) do
    if l[4] > 0 then move(l[1], d.store, l[2], 0, 0, -l[4], 0, 'hold_cancel', op, id, now) end
  end
  if d.tid then
    if t and t.st == 'q' then
      for _, l in ipairs(t.ln) do
        move(l[1], t.from, l[2], 0, -l[3], 0, 0, 'transfer_cancel', op, d.tid, now)
      end
    end
    redis.call('DEL', doc_key(d.tid))
  end
end
write_doc(id, HOME_P, { k = d and d.k or 'x', st = 'f', op = op, res = ARGV[4] }, OP_TTL_MS)
-- The op's memory of a part it made (see remember in the creating scripts) gives way to the
-- refusal too; an op id that made nothing here may be another document's, and is left alone.
if d then redis.call('SET', op_key(op), ARGV[4], 'PX', OP_TTL_MS) end
return 1
