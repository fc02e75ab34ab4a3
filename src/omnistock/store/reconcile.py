"""Reconciliation: the journal replayed into positions, compared with the live ledger.

For every position (node, SKU) the journal has events of, the replay sums the deltas of on_hand,
reserved, held and inbound over all of them, and takes safety_stock and version (which have no
deltas) from its latest event. Those are compared with what the ledger holds now, field by
field; positions only one side has are differences too. The journal is also checked against
itself: the sum of a position's deltas must equal the resulting value its latest event
recorded, or an event is missing (trimmed from the stream before it was projected, say).

The journal is read in one streamed query, ordered by SKU, aggregated in the database (GROUP BY
for the sums, a window for the latest event), so memory holds one chunk of SKUs at a time, plus
the set of the journal's SKU names. The latest event is the one with the highest version, not
the highest seq: seq is the order events reached the journal, which with several projectors, or
a projector catching up after a restart, need not be the order the ledger made them in.

The journal trails the ledger by the projector's lag, so a difference found while the projector
is behind may only be events not yet journaled: the report says how far behind it is.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa
from redis import exceptions as redis_errors
from sqlalchemy.ext.asyncio import AsyncEngine

from omnistock.domain.stock import Position
from omnistock.reservations import keys
from omnistock.store.database import events

log = logging.getLogger("omnistock.reconcile")

CHUNK_SKUS = 200
"""SKUs read from the ledger per call."""

SUMMED = ("on_hand", "reserved", "held", "inbound")
"""Fields the journal has deltas of: replayed as the sum of the deltas."""
LATEST = ("safety_stock", "version")
"""Fields without deltas: taken from the position's latest event."""
FIELDS = ("on_hand", "reserved", "held", "safety_stock", "inbound", "version")

LEDGER = "ledger"
"""A difference between the replayed journal and the live ledger."""
JOURNAL = "journal"
"""An inconsistency inside the journal: the sum of a position's deltas is not the resulting value
of its latest event."""

PROJECTOR_GROUP = "journal"
"""The projector's consumer group (``omnistock.store.projector.GROUP``)."""


@dataclass(frozen=True, slots=True)
class Difference:
    node_id: str
    sku: str
    field: str
    journal: int | None
    """The replayed journal's value; None when the journal has no event of the position."""
    ledger: int | None
    """The live ledger's value; None when the ledger has no such position."""
    kind: str = LEDGER
    """``LEDGER`` (journal against ledger) or ``JOURNAL`` (the journal against itself)."""
    latest: int | None = None
    """For a ``JOURNAL`` inconsistency, the resulting value of the position's latest event
    (``journal`` being the sum of its deltas)."""

    def render(self) -> str:
        journal = "-" if self.journal is None else str(self.journal)
        ledger = "-" if self.ledger is None else str(self.ledger)
        if self.kind == JOURNAL:
            note = f"journal inconsistent: sum of deltas {journal}, latest event says {self.latest}"
        elif self.journal is None:
            note = "position missing from the journal"
        elif self.ledger is None:
            note = "position missing from the ledger"
        else:
            note = ""
        return f"{self.node_id}\t{self.sku}\t{self.field}\t{journal}\t{ledger}\t{note}".rstrip()


@dataclass
class ReconcileReport:
    positions: int = 0
    """Positions compared (either side has them)."""
    skus: int = 0
    """SKUs compared."""
    events: int = 0
    """Journal events replayed."""
    differences: list[Difference] = field(default_factory=list)
    lag: int | None = None
    """Stream entries the projector had not journaled yet when the reconciliation started
    (None: unknown)."""

    @property
    def positions_differing(self) -> int:
        return len({(d.node_id, d.sku) for d in self.differences})

    def render(self) -> str:
        scope = f"{self.positions} positions of {self.skus} SKUs, {self.events} journal events"
        if self.lag is None:
            lag = "projector lag unknown"
        else:
            lag = f"projector lag {self.lag} stream entries"
        if not self.differences:
            return f"omnistock reconcile: journal and ledger agree ({scope}; {lag})"
        lines = [
            f"omnistock reconcile: {_count(len(self.differences), 'difference')} in "
            f"{_count(self.positions_differing, 'position')} ({scope}; {lag})"
        ]
        if self.lag:
            lines.append(
                f"  the journal trails the ledger by {self.lag} stream entries: a difference may "
                f"only be events not projected yet; run again once the lag is 0"
            )
        elif self.lag is None:
            lines.append("  the projector's lag is unknown: a difference may be events not yet")
            lines.append("  projected; run again once the projector has caught up")
        else:
            lines.append(
                "  the projector had caught up; on a ledger taking writes, a position changed "
                "while this ran can differ too: run again to confirm"
            )
        lines.append("node\tsku\tfield\tjournal\tledger\tnote")
        lines.extend(d.render() for d in self.differences)
        return "\n".join(lines)


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}{'' if n == 1 else 's'}"


@dataclass(slots=True)
class _Replayed:
    """A position replayed from the journal."""

    node_id: str
    sku: str
    events: int
    sums: dict[str, int]  # SUMMED fields: sum of deltas
    latest: dict[str, int]  # FIELDS: resulting values of the latest event

    def values(self) -> dict[str, int]:
        return {**{f: self.latest[f] for f in LATEST}, **self.sums}


def _positions_query() -> sa.Select:
    """Every position of the journal: its event count and sums of deltas (GROUP BY), joined to
    its latest event (a window), ordered by SKU so that a SKU's positions come together."""
    e = events
    sums = (
        sa.select(
            e.c.node_id,
            e.c.sku,
            sa.func.count().label("events"),
            *(sa.func.sum(e.c[f"d_{f}"]).label(f"sum_{f}") for f in SUMMED),
        )
        .group_by(e.c.node_id, e.c.sku)
        .subquery("sums")
    )
    ranked = sa.select(
        e.c.node_id,
        e.c.sku,
        *(e.c[f] for f in FIELDS),
        sa.func.row_number()
        .over(partition_by=(e.c.node_id, e.c.sku), order_by=(e.c.version.desc(), e.c.seq.desc()))
        .label("rank"),
    ).subquery("ranked")
    return (
        sa.select(
            sums.c.node_id,
            sums.c.sku,
            sums.c.events,
            *(sums.c[f"sum_{f}"] for f in SUMMED),
            *(ranked.c[f] for f in FIELDS),
        )
        .join_from(
            sums,
            ranked,
            sa.and_(
                ranked.c.node_id == sums.c.node_id,
                ranked.c.sku == sums.c.sku,
                ranked.c.rank == 1,
            ),
        )
        .order_by(sums.c.sku, sums.c.node_id)
    )


async def _journal_by_sku(engine: AsyncEngine) -> AsyncIterator[tuple[str, list[_Replayed]]]:
    """Each SKU of the journal with its replayed positions, streamed from the database."""
    sku: str | None = None
    positions: list[_Replayed] = []
    async with engine.connect() as conn:
        result = await conn.stream(_positions_query().execution_options(yield_per=1000))
        async for row in result:
            m = row._mapping
            replayed = _Replayed(
                m["node_id"],
                m["sku"],
                int(m["events"]),
                {f: int(m[f"sum_{f}"] or 0) for f in SUMMED},
                {f: int(m[f]) for f in FIELDS},
            )
            if replayed.sku != sku:
                if sku is not None:
                    yield sku, positions
                sku, positions = replayed.sku, []
            positions.append(replayed)
        if sku is not None:
            yield sku, positions


def _values(p: Position) -> dict[str, int]:
    return {f: getattr(p, f) for f in FIELDS}


def _compare(
    report: ReconcileReport, sku: str, journal: list[_Replayed], ledger: list[Position]
) -> None:
    live = {p.node_id: p for p in ledger}
    replayed = {r.node_id: r for r in journal}
    report.skus += 1
    for node in sorted(live.keys() | replayed.keys()):
        report.positions += 1
        r, p = replayed.get(node), live.get(node)
        if r is not None:
            report.events += r.events
            for f in SUMMED:
                if r.sums[f] != r.latest[f]:
                    report.differences.append(
                        Difference(
                            node,
                            sku,
                            f,
                            r.sums[f],
                            None if p is None else getattr(p, f),
                            JOURNAL,
                            r.latest[f],
                        )
                    )
        theirs = None if r is None else r.values()
        ours = None if p is None else _values(p)
        for f in FIELDS:
            j = None if theirs is None else theirs[f]
            v = None if ours is None else ours[f]
            if j != v:
                report.differences.append(Difference(node, sku, f, j, v))


async def _ledger_skus(client: Any) -> AsyncIterator[str]:
    """Every SKU the ledger keeps a hash of positions for (SCAN, on every primary)."""
    async for key in client.scan_iter(
        match=f"{{{keys.NAMESPACE}.*}}:s:*", count=1000, _type="hash"
    ):
        text = key.decode() if isinstance(key, bytes) else str(key)
        _tag, sep, sku = text.partition("}:s:")
        if sep and sku:
            yield sku


async def projector_lag(client: Any, *, cluster: bool) -> int | None:
    """Stream entries not yet journaled: not delivered to the projector's group, or delivered
    but not acknowledged; a stream without the group counts whole. None when unknown."""
    total = 0
    for stream in keys.event_streams(cluster):
        try:
            groups = await client.xinfo_groups(stream)
        except redis_errors.ResponseError:  # no such stream: nothing was ever written there
            continue
        for group in groups:
            name = group.get("name")
            if (name.decode() if isinstance(name, bytes) else name) == PROJECTOR_GROUP:
                if group.get("lag") is None:  # the server cannot tell (entries were deleted)
                    return None
                total += int(group["lag"]) + int(group.get("pending") or 0)
                break
        else:
            total += int(await client.xlen(stream))
    return total


def _client_of(ledger: Any) -> Any:
    """The Redis client under a ``RedisLedger`` (it keeps it in its script runner), or None."""
    return getattr(getattr(ledger, "_runner", None), "_client", None)


async def _chunks(
    items: AsyncIterator[tuple[str, list[_Replayed]]], size: int
) -> AsyncIterator[list[tuple[str, list[_Replayed]]]]:
    chunk: list[tuple[str, list[_Replayed]]] = []
    async for item in items:
        chunk.append(item)
        if len(chunk) >= size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


async def reconcile(
    ledger: Any,
    engine: AsyncEngine,
    *,
    lag: int | None = None,
    client: Any | None = None,
    chunk_skus: int = CHUNK_SKUS,
) -> ReconcileReport:
    """Replays the journal and compares it with ``ledger``; every difference is in the report.

    ``lag`` is the projector's lag if the caller knows it; otherwise it is read from the
    projector's consumer group. ``client`` (by default the ledger's own) is also used to find
    SKUs the ledger has and the journal has none of; without one, only the journal's SKUs are
    compared."""
    client = client if client is not None else _client_of(ledger)
    cluster = bool(getattr(ledger, "cluster", False))
    if lag is None and client is not None:
        try:
            lag = await projector_lag(client, cluster=cluster)
        except Exception as exc:  # the lag only explains differences: go on without it
            log.warning("reconcile: could not read the projector's lag: %s", exc)
    report = ReconcileReport(lag=lag)
    seen: set[str] = set()
    async for chunk in _chunks(_journal_by_sku(engine), chunk_skus):
        live = await ledger.availability_many([sku for sku, _ in chunk])
        for sku, replayed in chunk:
            seen.add(sku)
            _compare(report, sku, replayed, live.get(sku, []))
    if client is not None:
        await _ledger_only(report, ledger, client, seen, chunk_skus)
    return report


async def _ledger_only(
    report: ReconcileReport, ledger: Any, client: Any, seen: set[str], chunk_skus: int
) -> None:
    """SKUs the ledger has positions of and the journal has no event of."""
    batch: list[str] = []

    async def flush(skus: Iterable[str]) -> None:
        live = await ledger.availability_many(list(skus))
        for sku, positions in live.items():
            if positions:
                _compare(report, sku, [], positions)

    async for sku in _ledger_skus(client):
        if sku in seen:
            continue
        seen.add(sku)  # SCAN may return a key twice
        batch.append(sku)
        if len(batch) >= chunk_skus:
            await flush(batch)
            batch = []
    if batch:
        await flush(batch)
