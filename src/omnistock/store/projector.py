"""The projector: the ledger's event streams into the journal table, each event exactly once.

Delivery is at least once: entries are read through a consumer group and acknowledged only once
the transaction that wrote them has committed, so a projector killed in between leaves them
pending and they are delivered again (to itself on restart, or claimed by another projector when
they have been idle for ``CLAIM_IDLE_MS``). The journal's unique event id turns a second delivery
into nothing, so every event lands once. Several projectors (one per worker) share the group.

With the events it also keeps the projection of the live reservations, transfers and holds (the
``ledger_documents`` table, what ``omnistock rebuild`` restores them from): one script reads a
batch of entries and, at the same moment, the current record or document of everything the
batch's events name (by their ref), and the transaction that journals the events upserts those
parts too. So the projection never trails the journal it came with, and it is at the journal's
exact point whenever the projector has caught up: a part read with a batch can only be ahead of
the journal by events still waiting in the stream after that batch, which name it, and the
projector reads it again with them. Each part carries the stream entry id it was read at, and a
read older than the row's does not overwrite it, so projectors committing out of order (or a
redelivered batch) leave the newest state. A part whose key is gone (a saga's abort deleted it,
or a finished part outlived its time to live) is deleted.

Steps that emit no event (a hold made ready, a multi-part commit's pin, a hold cancelled while
its transfer is on its way) reach the projection by ``refresh``: every ``refresh_s`` the
projector reads every open part again, in a read that leaves the journal exact (see
projector_read.lua), and drops finished parts whose time to live has run out.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
from dataclasses import dataclass
from importlib import resources
from typing import Any

import msgspec
import sqlalchemy as sa
from redis import exceptions as redis_errors
from sqlalchemy.dialects import postgresql
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from omnistock.outage_log import OutageLog
from omnistock.reservations import keys
from omnistock.reservations.events import parse_entry, stream_position, text
from omnistock.store.database import documents, events
from omnistock.store.sqlite_batches import (
    DOCUMENT_COLUMNS,
    EVENT_COLUMNS,
    INSERT_EVENTS,
    UPSERT_PARTS,
    SqliteBatches,
    database_file,
)

log = logging.getLogger("omnistock.projector")

GROUP = "journal"
CLAIM_IDLE_MS = 30_000
REFRESH_ATTEMPTS = 20

# Status letters of parts still open, per kind (see _lib.lua): a reservation active or pinned,
# a transfer requested or in transit, a hold placed or ready.
OPEN = {"r": frozenset("ap"), "t": frozenset("qs"), "h": frozenset("py")}

READ_SCRIPT = (
    resources.files("omnistock.store")
    .joinpath("projector_read.lua")
    .read_text()
    .replace("__NS__", keys.NAMESPACE)
)

_decode = msgspec.json.Decoder().decode
_astuple = msgspec.structs.astuple


def consumer_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


@dataclass(slots=True)
class _Part:
    """A reservation, transfer or hold part as one read found it (raw empty: the key is gone)."""

    kind: str
    doc_id: str
    partition: int
    raw: bytes
    pttl: int
    seen: str  # the stream's last entry id at the read, as stream_position
    now_ms: int


@dataclass(slots=True)
class _Read:
    """One read of a stream (see projector_read.lua)."""

    entries: list[tuple[Any, dict[Any, Any] | None]]
    next_start: str
    last_id: str  # the stream's last entry id then
    now_ms: int
    exact: bool
    parts: list[_Part]


def _parse_read(reply: list[Any]) -> _Read:
    raw_entries, next_start, last, now, exact, flat = reply
    entries = []
    for entry_id, fields in raw_entries or []:
        pairs = dict(zip(fields[::2], fields[1::2], strict=True)) if fields else None
        entries.append((entry_id, pairs))
    last_id, now_ms = text(last), int(now)
    seen = stream_position(last_id)
    parts = [
        _Part(text(kind), text(doc), int(part), raw, int(ttl), seen, now_ms)
        for kind, doc, part, raw, ttl in flat or []
    ]
    return _Read(entries, text(next_start), last_id, now_ms, bool(int(exact)), parts)


def orphaned_holds(parts: list[_Part]) -> list[str]:
    """Kind and id (flat) of the holds of transfers made for a hold that no longer name it, not
    read already. A hold placed with a source emits events about its transfer only, and a hold
    cancelled or expired while its transfer is on its way emits none and unlinks the transfer;
    its id follows from the operation id, as the transfer's does."""
    have = {p.doc_id for p in parts}
    out = []
    for p in parts:
        if p.kind != "t" or not p.raw:
            continue
        body = _decode(p.raw)
        parsed = keys.parse_doc_id(p.doc_id, "t")
        if body.get("ref") != "hold" or body.get("hid") or not body.get("op") or not parsed:
            continue
        home, multi = parsed
        hid = keys.doc_id("h", str(body["op"]), home, single=not multi)
        if hid not in have:
            have.add(hid)
            out += ["h", hid]
    return out


def document_row(
    kind: str, doc_id: str, part: int, raw: bytes | str, pttl: int, seen: str, now_ms: int
) -> dict[str, Any]:
    """The projection row of one part as read from the ledger."""
    body = _decode(raw)
    status = str(body.get("st", ""))
    is_open = status in OPEN[kind]
    deadline = None
    if is_open and (kind == "h" or status == "a"):  # pinned reservations have no deadline
        deadline = int(body["exp"])
    return {
        "doc_id": doc_id,
        "part": part,
        "kind": kind,
        "status": status,
        "is_open": is_open,
        "raw": raw.decode() if isinstance(raw, bytes) else raw,
        "deadline_ms": deadline,
        "expires_at_ms": now_ms + pttl if pttl >= 0 else None,
        "seen": seen,
        "updated_at_ms": now_ms,
    }


def _part_rows(parts: list[_Part]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The projection rows of the parts a read found (for a part read twice, its newest read),
    and the keys of those whose key is gone: (present, gone)."""
    newest: dict[tuple[str, int], _Part] = {}
    for p in parts:
        key = (p.doc_id, p.partition)
        if key not in newest or newest[key].seen <= p.seen:
            newest[key] = p
    present, gone = [], []
    for p in newest.values():
        if p.raw:
            present.append(
                document_row(p.kind, p.doc_id, p.partition, p.raw, p.pttl, p.seen, p.now_ms)
            )
        else:
            gone.append({"d": p.doc_id, "p": p.partition, "s": p.seen})
    return present, gone


def _stop_if_cancelled() -> None:
    """Ends the current task if it was cancelled. A cancellation that lands while a Redis command
    is in flight can be lost in redis-py (the command returns or fails as usual, the task is
    left cancelling), and a loop that carried on would never stop: seen in the app's shutdown,
    which then waits for the projector forever."""
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError


class Projector:
    def __init__(
        self,
        client: Any,
        engine: AsyncEngine,
        *,
        cluster: bool,
        consumer: str | None = None,
        batch: int = 500,
        block_ms: int = 1000,
        refresh_s: float = 60.0,
        linger_ms: int = 25,
        db_timeout_s: float = 10.0,
    ) -> None:
        """``db_timeout_s``: how long a batch's write waits for another writer of a SQLite
        database."""
        self._client = client
        self._engine = engine
        self._cluster = cluster
        self._consumer = consumer or consumer_name()
        self._batch = batch
        self._block_ms = block_ms
        self._streams = {
            keys.stream_key(p): p for p in (range(keys.PARTITIONS) if cluster else [0])
        }
        self._refresh_s = refresh_s
        self._linger_s = linger_ms / 1000
        path = database_file(engine)
        self._sqlite = None if path is None else SqliteBatches(path, timeout_s=db_timeout_s)
        self._outage = OutageLog(log, "projecting")
        self._script = client.register_script(READ_SCRIPT)
        self.projected = 0  # events this projector wrote (duplicates excluded)
        self.delivered = 0  # events it was handed
        self.parts = 0  # reservation, transfer and hold parts it upserted or deleted
        self.batches = 0  # reads that took entries, each journaled in one transaction

    async def ensure_groups(self) -> None:
        for stream in self._streams:
            try:
                await self._client.xgroup_create(stream, GROUP, id="0", mkstream=True)
            except redis_errors.ResponseError as exc:
                if "BUSYGROUP" not in str(exc):
                    raise

    async def run(self) -> None:
        """Projects until cancelled; a dependency down is waited out, not fatal."""
        try:
            await self._run()
        finally:
            if self._sqlite is not None:
                self._sqlite.close()

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        refresh_at = loop.time() + self._refresh_s
        claim_at = loop.time() + CLAIM_IDLE_MS / 2000
        ready = False
        while True:
            try:
                _stop_if_cancelled()
                if not ready:
                    await self.ensure_groups()
                    await self.catch_up()
                    ready = True
                await self.step()
                self._outage.succeeded()
                if loop.time() >= claim_at:
                    # What a projector that died left pending (a restarted one is a new
                    # consumer): taken over once it has been idle for CLAIM_IDLE_MS.
                    claim_at = loop.time() + CLAIM_IDLE_MS / 2000
                    await self.catch_up()
                if loop.time() >= refresh_at:
                    refresh_at = loop.time() + self._refresh_s
                    await self.refresh()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                _stop_if_cancelled()
                self._outage.failed(exc)
                ready = False
                await asyncio.sleep(1.0)

    async def catch_up(self) -> int:
        """Entries delivered to this consumer before a restart, and entries another consumer
        left pending for long: projected again (duplicates land once)."""
        total = 0
        for stream in self._streams:
            while True:
                read = await self._read(stream, "own")
                if not read.entries:
                    break
                total += await self._project(stream, read)
            start = "0-0"
            while True:
                read = await self._read(stream, "claim", start=start)
                if read.entries:
                    total += await self._project(stream, read)
                start = read.next_start
                if start == "0-0":
                    break
        return total

    async def step(self) -> int:
        """One read of new entries (waiting up to ``block_ms`` for some) and their projection."""
        if not self._cluster:
            [stream] = self._streams
            read = await self._read(stream, "new")
            if not read.entries and self._block_ms > 0:
                # Everything up to the stream's last entry is delivered: wait for a later one.
                woke = await self._client.xread(
                    {stream: read.last_id}, count=1, block=self._block_ms
                )
                if woke:
                    read = await self._read(stream, "new")
            written = await self._project(stream, read)
            await self._linger(len(read.entries))
            return written
        total = took = 0
        for stream in self._streams:
            read = await self._read(stream, "new")
            took = max(took, len(read.entries))
            total += await self._project(stream, read)
        await self._linger(took)
        if total == 0:
            await asyncio.sleep(self._block_ms / 1000)
        return total

    async def _linger(self, took: int) -> None:
        """After a read that took entries but did not fill a batch: under steady load, a
        moment's wait lets the next read take a batch of entries instead of one or two. Each
        read, transaction and acknowledgement is paid per batch, and a reservation reserved and
        released within the wait is upserted once. The journal trails by at most this more."""
        if 0 < took < self._batch and self._linger_s > 0:
            await asyncio.sleep(self._linger_s)

    async def refresh(self) -> int:
        """Reads every open reservation, transfer and hold part again, for the steps that emit
        no event; returns how many parts were read. Each stream's parts are read with a batch of
        its new entries (projected as usual) in a read that leaves the journal exact, tried up
        to ``REFRESH_ATTEMPTS`` times while other entries keep it from being so (they are left
        for the next refresh after that). Finished parts past their time to live are dropped."""
        async with self._engine.connect() as conn:
            rows = await conn.execute(
                sa.select(documents.c.kind, documents.c.doc_id, documents.c.part).where(
                    documents.c.is_open
                )
            )
            wanted: dict[str, list[str]] = {}
            for kind, doc_id, part in rows:
                stream = keys.stream_key(part if self._cluster else 0)
                if stream in self._streams:
                    wanted.setdefault(stream, []).extend((kind, doc_id))
        read_count = 0
        now_ms = None
        for stream, flat in wanted.items():
            step = 2 * self._batch
            for i in range(0, len(flat), step):
                chunk = flat[i : i + step]
                for _attempt in range(REFRESH_ATTEMPTS):
                    read = await self._read(stream, "new", extras=chunk)
                    await self._project(stream, read)
                    now_ms = read.now_ms
                    if read.exact:
                        read_count += len(chunk) // 2
                        break
        if now_ms is None:
            now_ms = await self._server_time_ms()
        async with self._engine.begin() as conn:
            await conn.execute(
                sa.delete(documents).where(
                    sa.not_(documents.c.is_open), documents.c.expires_at_ms < now_ms
                )
            )
        return read_count

    async def _server_time_ms(self) -> int:
        secs, micros = await self._client.time()
        return int(secs) * 1000 + int(micros) // 1000

    async def _read(
        self, stream: str, mode: str, *, start: str = "0-0", extras: list[str] | None = None
    ) -> _Read:
        read = await self._call(stream, mode, start, extras or [])
        orphans = orphaned_holds(read.parts)
        if orphans:
            # Such a hold has ended, so a later read finds it as it was.
            read.parts += (await self._call(stream, "parts", start, orphans)).parts
        return read

    async def _call(self, stream: str, mode: str, start: str, extras: list[str]) -> _Read:
        partition = str(self._streams[stream]) if self._cluster else ""
        args = [mode, GROUP, self._consumer, self._batch, CLAIM_IDLE_MS, start, partition]
        return _parse_read(await self._script(keys=[stream], args=[*args, *extras]))

    async def _project(self, stream: str, read: _Read) -> int:
        """Journals a read's events and upserts the parts it read, in one transaction, then
        acknowledges its entries."""
        partition = self._streams[stream]
        rows = []
        ids = []
        for entry_id, fields in read.entries:
            ids.append(entry_id)
            if not fields:  # trimmed away before it was read: nothing left to project
                continue
            for e in parse_entry(entry_id, fields):
                rows.append((f"{partition}:{e.event_id}", *_astuple(e)[1:]))
        written = 0
        if rows or read.parts:
            present, gone = _part_rows(read.parts)
            if self._sqlite is not None:
                written = await self._sqlite.write(rows, present, gone)
            else:
                async with self._engine.begin() as conn:
                    if rows:
                        written = await self._insert(conn, rows)
                    await self._upsert_parts(conn, present, gone)
        if ids:
            await self._client.xack(stream, GROUP, *ids)
        self.batches += bool(read.entries)
        self.delivered += len(rows)
        self.projected += written
        self.parts += len(read.parts)
        return written

    async def _insert(self, conn: AsyncConnection, rows: list[tuple[Any, ...]]) -> int:
        """Writes the events not journaled yet; returns how many that was."""
        if self._engine.dialect.name == "postgresql":
            statement = postgresql.insert(events).on_conflict_do_nothing(
                index_elements=["event_id"]
            )
            # asyncpg reports no row count for a batch: count what was written instead.
            params = [dict(zip(EVENT_COLUMNS, row, strict=True)) for row in rows]
            result = await conn.execute(statement.returning(events.c.seq), params)
            return len(result.all())
        # A SQLite database the projector cannot open a connection of its own to (in memory).
        result = await conn.exec_driver_sql(INSERT_EVENTS, rows)
        return max(0, result.rowcount or 0)

    async def _upsert_parts(
        self, conn: AsyncConnection, present: list[dict[str, Any]], gone: list[dict[str, Any]]
    ) -> None:
        if present and self._engine.dialect.name != "postgresql":
            await conn.exec_driver_sql(UPSERT_PARTS, present)
        elif present:
            insert = postgresql.insert(documents)
            statement = insert.on_conflict_do_update(
                index_elements=["doc_id", "part"],
                set_={name: insert.excluded[name] for name in DOCUMENT_COLUMNS[2:]},
                where=documents.c.seen <= insert.excluded.seen,
            )
            await conn.execute(statement, present)
        if gone:
            await conn.execute(
                sa.delete(documents).where(
                    documents.c.doc_id == sa.bindparam("d"),
                    documents.c.part == sa.bindparam("p"),
                    documents.c.seen <= sa.bindparam("s"),
                ),
                gone,
            )

    async def lag(self) -> int:
        """Events (stream entries) not yet delivered to the group, plus those delivered but not
        yet acknowledged. Entries trimmed from the stream before the group read them still
        count. Where the server cannot tell (entries deleted from the middle of the stream), every
        entry still in the stream counts: an upper bound, never a reassuring 0."""
        total = 0
        for stream in self._streams:
            for group in await self._client.xinfo_groups(stream):
                if text(group.get("name")) == GROUP:
                    lag = group.get("lag")
                    if lag is None:
                        lag = await self._client.xlen(stream)
                    total += int(lag) + int(group.get("pending") or 0)
        return total
