"""``omnistock rebuild``: the live ledger restored from the database after Redis lost data.

The ledger comes back as of the journal's point: what the projector had journaled when the data
was lost. Changes made after that were lost with Redis (the projector's lag at that moment; see
``omnistock_projector_lag_events``).

Restored:

* every position, from the journal: the latest event of each (node, SKU) carries its on_hand,
  reserved, held, safety_stock, inbound and version after the change. Latest means the highest
  version (a position's version grows by one with every change; the journal's ``seq`` only breaks
  ties), because projectors sharing the stream commit their batches in any order, so ``seq`` is
  the order of arrival in the journal, not of the changes;
* every reservation, transfer and hold part in the projection (``ledger_documents``): the record
  or document exactly as the scripts stored it; an open one with its deadline back in the deadline
  set(s), as the scripts register it, so expiry stays exact (a deadline that passed while the
  ledger was down expires at the next script touching its partition, at the ledger's time); a part
  pinned by a multi-part commit in progress pinned, due at once, so the sweeper resolves it from
  its header as after a crashed coordinator; a finished one until its time to live runs out, so it
  can still be read, and committed or released again with the same op id (which replays);
* what operations answered, as far as it decides what a retried request does. A reservation
  record, a transfer or a hold is itself the memory of the operation that made it (a retried
  reserve, transfer request or hold placement finds it and replays), and a retried commit,
  release or hold cancellation replays by the record's state. What ``set_stock`` and ``adjust``
  answered is rebuilt from their events in the journal (exactly what they returned), so a request
  retried after the loss does not apply twice; a transfer or hold step (ship, receive, cancel,
  ready, collect) remembers the document as it is now. Both for as long as the ledger keeps
  operation results (its OP_TTL_MS from the operation's time).

Not restored:

* refusals (a reserve short of stock, an adjustment below what is committed, a version conflict):
  they emit no event; a retried request is decided again;
* the API's idempotency-key claims (request fingerprints): a key reused with another body before
  the loss replays the first result instead of being refused;
* the event streams and the projector's consumer group: the journal holds their events already;
  the projector makes its group again;
* steps that emit no event and happened after the projector last read their part (a hold made
  ready, a multi-part commit's pin, a hold cancelled while its transfer is on its way) unless a
  projector refresh read them before the loss (see ``store.projector``).

The report names every position whose reserved, held or inbound does not match the open
documents restored (a projection ahead of or behind the journal, which can only happen when
several projectors shared the stream or the projector had not caught up when the data was lost).

Run it with the service stopped, or at least not taking traffic: it refuses to write over a
ledger that holds any position unless forced, and forced, it writes over what is there without
removing anything the database does not know.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import msgspec
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from omnistock.reservations import keys
from omnistock.reservations.connect import LedgerConnection
from omnistock.reservations.runner import LedgerUnavailable
from omnistock.store.database import documents, events

CHUNK = 200
"""Items per script call: a partition with more is restored in several calls."""

ATTEMPTS = 3

STOCK_KINDS = ("set", "receipt", "sale", "return", "damage", "count")
"""Event kinds of ``set_stock`` and ``adjust``, whose results are rebuilt from the journal."""

_decode = msgspec.json.Decoder().decode
_encode = msgspec.json.encode


class RebuildRefused(Exception):
    """The ledger is not empty, and rebuild was not forced."""


@dataclass
class RebuildReport:
    positions: int = 0
    reservations: int = 0  # open reservation parts
    transfers: int = 0  # open transfer parts
    holds: int = 0  # open hold parts
    finished: int = 0  # finished parts kept for their time to live
    expired: int = 0  # finished parts whose time to live had run out: not restored
    deadlines: int = 0
    pins: int = 0
    results: int = 0  # operation results remembered again
    journal_events: int = 0
    journal_seq: int = 0
    forced: bool = False
    mismatches: list[str] = field(default_factory=list)

    def render(self) -> str:
        lines = [
            f"omnistock rebuild: restored the ledger from the journal up to seq "
            f"{self.journal_seq} ({self.journal_events} events)"
            + (" over a ledger that was not empty (--force)" if self.forced else ""),
            f"  positions:          {self.positions}",
            f"  open reservations:  {self.reservations} parts",
            f"  open transfers:     {self.transfers} parts",
            f"  open holds:         {self.holds} parts",
            f"  deadlines:          {self.deadlines} (pinned parts: {self.pins})",
            f"  finished:           {self.finished} parts kept until their time to live runs "
            f"out ({self.expired} already past it, not restored)",
            f"  operation results:  {self.results}",
        ]
        if self.mismatches:
            lines.append(
                f"  {len(self.mismatches)} positions do not match their open documents "
                f"(reserved, held, inbound: journal vs documents):"
            )
            lines += [f"    {m}" for m in self.mismatches]
        else:
            lines.append("  every position matches its open documents")
        return "\n".join(lines)


@dataclass(slots=True)
class _Position:
    node_id: str
    sku: str
    on_hand: int
    reserved: int
    held: int
    safety_stock: int
    inbound: int
    version: int


@dataclass(slots=True)
class _Part:
    kind: str
    doc_id: str
    part: int
    status: str
    is_open: bool
    raw: str
    deadline_ms: int | None
    expires_at_ms: int | None


async def rebuild(
    connection: LedgerConnection, engine: AsyncEngine, *, force: bool
) -> RebuildReport:
    """Restores the live ledger from the database (see the module's docstring); refuses with
    ``RebuildRefused`` when the ledger holds any position, unless ``force``."""
    found = await first_position_key(connection.client)
    if found is not None and not force:
        raise RebuildRefused(
            f"the ledger is not empty (it holds positions, {found} among them); rebuild restores "
            f"an empty ledger only: use --force to write over it"
        )
    restore = _Restorer(connection)
    op_ttl_ms, _record_ttl_ms, ledger_now, server_now = await restore.probe()
    report = RebuildReport(forced=found is not None)

    positions = await latest_positions(engine)
    parts = await projected_parts(engine)
    report.journal_events, report.journal_seq = await _journal_extent(engine)
    live = [p for p in parts if p.expires_at_ms is None or p.expires_at_ms > server_now]
    report.expired = len(parts) - len(live)
    results = await stock_results(engine, since_ms=ledger_now - op_ttl_ms)
    results += step_results(live, ledger_now)

    # Positions first: a script that expires a restored reservation needs its positions.
    by_partition: dict[int, list[list[Any]]] = defaultdict(list)
    for p in positions:
        by_partition[keys.partition_of(p.sku)].append(
            [p.sku, p.node_id, p.on_hand, p.reserved, p.held, p.safety_stock, p.inbound, p.version]
        )
    report.positions = await restore.section(0, by_partition)

    by_partition = defaultdict(list)
    for part in live:
        pin = ""
        if part.kind == "r" and part.status == "p":
            pin = ledger_now
            report.pins += 1
        deadline = "" if part.deadline_ms is None else part.deadline_ms
        until = "" if part.expires_at_ms is None else part.expires_at_ms
        kind = "r" if part.kind == "r" else "d"
        by_partition[part.part].append([kind, part.doc_id, part.raw, until, deadline, pin])
        if part.deadline_ms is not None:
            report.deadlines += 1
        if part.is_open:
            counter = {"r": "reservations", "t": "transfers", "h": "holds"}[part.kind]
            setattr(report, counter, getattr(report, counter) + 1)
        else:
            report.finished += 1
    await restore.section(1, by_partition)

    by_partition = defaultdict(list)
    for partition, op_id, result, at_ms in results:
        by_partition[partition].append([op_id, result, at_ms])
    report.results = await restore.section(2, by_partition)

    report.mismatches = mismatches(positions, [p for p in live if p.is_open])
    return report


class _Restorer:
    """Calls of the ``restore`` operation (restore.lua), one partition each."""

    def __init__(self, connection: LedgerConnection) -> None:
        self._runner = connection.runner
        # The ledger's clock: the server's, or the one a test drives.
        self._now = connection.ledger._now()

    async def _call(self, partition: int, args: list[Any]) -> list[Any]:
        for attempt in range(ATTEMPTS):
            try:
                return await self._runner.op("restore", [keys.tag(partition)], args)
            except LedgerUnavailable:  # every write of restore.lua can be repeated
                if attempt == ATTEMPTS - 1:
                    raise
                await asyncio.sleep(0.1 * (attempt + 1))
        raise AssertionError("unreachable")

    async def probe(self) -> tuple[int, int, int, int]:
        """The ledger's OP_TTL_MS and RECORD_TTL_MS, its time now, and the server's."""
        op_ttl, record_ttl, now, server_now, *_ = await self._call(0, [self._now, 0, 0, 0])
        return int(op_ttl), int(record_ttl), int(now), int(server_now)

    async def section(self, index: int, items: dict[int, list[list[Any]]]) -> int:
        """Writes one section (0 positions, 1 parts, 2 operation results) of every partition,
        in calls of up to ``CHUNK`` items; returns how many the scripts wrote."""
        calls = []
        for partition, rows in sorted(items.items()):
            for start in range(0, len(rows), CHUNK):
                chunk = rows[start : start + CHUNK]
                counts: list[Any] = [0, 0, 0]
                counts[index] = len(chunk)
                args: list[Any] = [self._now]
                for i in range(3):
                    args.append(counts[i])
                    if i == index:
                        args += [value for row in chunk for value in row]
                calls.append(self._call(partition, args))
        replies = await asyncio.gather(*calls)
        return sum(int(reply[4 + index]) for reply in replies)


async def first_position_key(client: Any) -> str | None:
    """A position key of the ledger, if it holds any (every primary of a cluster is scanned)."""
    pattern = f"{{{keys.NAMESPACE}.*}}:s:*"
    async with contextlib.aclosing(client.scan_iter(match=pattern, count=1000)) as found:
        async for key in found:
            return key.decode() if isinstance(key, bytes) else str(key)
    return None


async def latest_positions(engine: AsyncEngine) -> list[_Position]:
    """Each position as its latest journaled event left it (see the module's docstring)."""
    ranked = sa.select(
        events.c.node_id,
        events.c.sku,
        events.c.on_hand,
        events.c.reserved,
        events.c.held,
        events.c.safety_stock,
        events.c.inbound,
        events.c.version,
        sa.func.row_number()
        .over(
            partition_by=(events.c.node_id, events.c.sku),
            order_by=(events.c.version.desc(), events.c.seq.desc()),
        )
        .label("rank"),
    ).subquery()
    query = (
        sa.select(*(c for c in ranked.c if c.name != "rank"))
        .where(ranked.c.rank == 1)
        .order_by(ranked.c.sku, ranked.c.node_id)
    )
    async with engine.connect() as conn:
        return [_Position(*row) for row in await conn.execute(query)]


async def projected_parts(engine: AsyncEngine) -> list[_Part]:
    query = sa.select(
        documents.c.kind,
        documents.c.doc_id,
        documents.c.part,
        documents.c.status,
        documents.c.is_open,
        documents.c.raw,
        documents.c.deadline_ms,
        documents.c.expires_at_ms,
    ).order_by(documents.c.doc_id, documents.c.part)
    async with engine.connect() as conn:
        return [_Part(*row) for row in await conn.execute(query)]


async def _journal_extent(engine: AsyncEngine) -> tuple[int, int]:
    async with engine.connect() as conn:
        count, last = (
            await conn.execute(sa.select(sa.func.count(), sa.func.max(events.c.seq)))
        ).one()
    return int(count or 0), int(last or 0)


async def stock_results(engine: AsyncEngine, *, since_ms: int) -> list[tuple[int, str, str, int]]:
    """What ``set_stock`` and ``adjust`` calls since ``since_ms`` answered, rebuilt from their
    events: (partition it is remembered in, op id, result, time). One call's events share a
    stream entry; the partition is that of its first line (a single server remembers an op in
    the partition of the first line, a cluster runs one call per partition)."""
    query = (
        sa.select(
            events.c.event_id,
            events.c.op_id,
            events.c.kind,
            events.c.node_id,
            events.c.sku,
            events.c.on_hand,
            events.c.reserved,
            events.c.held,
            events.c.safety_stock,
            events.c.inbound,
            events.c.version,
            events.c.at_ms,
        )
        .where(events.c.kind.in_(STOCK_KINDS), events.c.at_ms >= since_ms)
        .order_by(events.c.seq)
    )
    calls: dict[tuple[str, str], list[tuple[int, Any]]] = {}
    async with engine.connect() as conn:
        for row in await conn.execute(query):
            entry, _, index = row.event_id.rpartition("/")
            calls.setdefault((entry, row.op_id), []).append((int(index), row))
    out = []
    for (_entry, op_id), rows in calls.items():
        rows.sort(key=lambda pair: pair[0])
        first = rows[0][1]
        final: dict[tuple[str, str], list[int]] = {}
        for _i, row in rows:
            final[(row.node_id, row.sku)] = [
                row.on_hand,
                row.reserved,
                row.held,
                row.safety_stock,
                row.inbound,
                row.version,
            ]
        if first.kind == "set":
            result: Any = {"pos": final[(first.node_id, first.sku)]}
        else:
            result = {"pos": list(final.values())}
        at_ms = max(row.at_ms for _i, row in rows)
        out.append((keys.partition_of(first.sku), op_id, _encode(result).decode(), at_ms))
    return out


# The op id fields of a document's steps, and the field holding the step's time.
_STEP_OPS = {
    "t": (("sop", "shipped"), ("rop", "end"), ("cop", "end")),
    "h": (("yop", None), ("kop", "end"), ("fop", "end")),
}


def step_results(parts: Sequence[_Part], now_ms: int) -> list[tuple[int, str, str, int]]:
    """What the steps of transfers and holds answered: the document (as it is now), remembered
    in the partition of each part under the step's op id."""
    out = []
    for part in parts:
        if part.kind not in _STEP_OPS:
            continue
        body = _decode(part.raw)
        for op_field, time_field in _STEP_OPS[part.kind]:
            op_id = body.get(op_field)
            if not op_id:
                continue
            if op_field == "cop" and body.get("hid"):
                continue  # cancelled with its hold: the op is the hold's, and remembers the hold
            if op_field == "fop" and body.get("st") != "c":
                continue  # expired: not an operation anyone retries
            at_ms = int(body.get(time_field) or now_ms) if time_field else now_ms
            out.append((part.part, str(op_id), part.raw, at_ms))
    return out


def mismatches(positions: Sequence[_Position], open_parts: Sequence[_Part]) -> list[str]:
    """Positions whose reserved, held or inbound differ from what the open documents account
    for: reserved by active (or pinned) reservations and requested transfers at their source,
    held by open holds, inbound by transfers in transit to their destination."""
    implied: dict[tuple[str, str], list[int]] = defaultdict(lambda: [0, 0, 0])
    for part in open_parts:
        body = _decode(part.raw)
        if part.kind == "r":
            for _p, node, sku, qty in body["ln"]:
                implied[(node, sku)][0] += int(qty)
        elif part.kind == "t" and part.status == "q":
            for line in body["ln"]:
                implied[(body["from"], line[1])][0] += int(line[2])
        elif part.kind == "t":
            for line in body["ln"]:
                implied[(body["to"], line[1])][2] += int(line[3])
        elif part.kind == "h":
            for line in body["ln"]:
                implied[(body["store"], line[1])][1] += int(line[3])
    out = []
    seen = set()
    for p in positions:
        seen.add((p.node_id, p.sku))
        want = implied.get((p.node_id, p.sku), [0, 0, 0])
        if [p.reserved, p.held, p.inbound] != want:
            out.append(
                f"{p.node_id}/{p.sku}: {p.reserved}, {p.held}, {p.inbound} vs "
                f"{want[0]}, {want[1]}, {want[2]}"
            )
    for (node, sku), want in sorted(implied.items()):
        if (node, sku) not in seen and want != [0, 0, 0]:
            out.append(f"{node}/{sku}: no position vs {want[0]}, {want[1]}, {want[2]}")
    return out
