"""Fixtures and helpers for the behaviour tests of the Redis ledger on real Valkey.

Test modules import the fixture functions (``harness_fixture`` provides ``harness``, and so on)
to make them available; the ``_fixture`` names keep the imports apart from the arguments.

The ledger fixtures are parametrized over the single server and the 3-shard cluster. Every test
works on SKUs and nodes named after a fresh uuid, so tests share the session's servers without
seeing each other's data; event checks filter the partition streams by those SKUs, because a
script also releases whatever else is due in its partitions (someone else's expiry events).

Fake clocks start far in the future and each one later than the last: a test driving time never
sees another test's reservations fall due in its window, and whatever earlier tests left behind
is already due at its start.
"""

from __future__ import annotations

import itertools
import time
import uuid
from collections.abc import AsyncIterator, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import pytest

from omnistock.domain.stock import Adjustment, Position, Reason
from omnistock.reservations import keys
from omnistock.reservations.connect import LedgerConnection, open_ledger
from omnistock.reservations.events import LedgerEvent, parse_entry
from omnistock.reservations.redis_ledger import RedisLedger

DAY_MS = 24 * 3600 * 1000
LONG_TTL_MS = 10 * 60 * 1000
"""Long enough that no reservation of a real-clock test falls due while the suite runs."""

_clock_starts = itertools.count(int(time.time() * 1000) + 3650 * DAY_MS, 2 * DAY_MS)


class FakeClock:
    """Milliseconds the ledger's scripts use instead of the server's TIME."""

    def __init__(self) -> None:
        self.now = next(_clock_starts)

    def __call__(self) -> int:
        return self.now

    def advance(self, ms: int) -> None:
        self.now += ms

    def set(self, ms: int) -> None:
        self.now = ms


class Names:
    """Unique SKU and node names for one test, placed in the partitions a test asks for."""

    def __init__(self) -> None:
        self.uid = uuid.uuid4().hex[:10]
        self._serial = itertools.count()

    def node(self, label: str = "n") -> str:
        return f"{label}-{self.uid}"

    def sku(self, partition: int | None = None, label: str = "s") -> str:
        while True:
            name = f"{label}-{self.uid}-{next(self._serial)}"
            if partition is None or keys.partition_of(name) == partition:
                return name

    def skus_in_distinct_partitions(self, count: int, label: str = "s") -> list[str]:
        found: dict[int, str] = {}
        while len(found) < count:
            name = self.sku(label=label)
            found.setdefault(keys.partition_of(name), name)
        return list(found.values())

    def op(self, label: str = "op") -> str:
        return f"{label}-{self.uid}-{next(self._serial)}"


@dataclass
class Harness:
    """A ledger plus the raw client and server handles to look behind it."""

    conn: LedgerConnection
    cluster: bool
    servers: list[Any]
    clock: FakeClock | None
    names: Names = field(default_factory=Names)

    @property
    def ledger(self) -> RedisLedger:
        return self.conn.ledger

    @property
    def client(self) -> Any:
        return self.conn.client

    async def server_time_ms(self) -> int:
        secs, micros = await self.client.time()
        return int(secs) * 1000 + int(micros) // 1000

    async def stock(self, node: str, sku: str, on_hand: int, safety_stock: int = 0) -> Position:
        return await self.ledger.set_stock(
            self.names.op("seed"), node, sku, on_hand, safety_stock=safety_stock
        )

    async def snapshot(self, skus: Iterable[str]) -> dict[str, list[Position]]:
        """Every position of these SKUs, versions included."""
        return await self.ledger.availability_many(list(skus))

    async def part_status(self, partition: int, rid: str) -> str | None:
        """The raw status letter of the part of a reservation kept in one partition: a(ctive),
        p(inned by a commit in progress), c(ommitted), r(eleased), x (expired); None if absent."""
        view = await self.ledger._view(partition, rid)
        return view.get("st")

    def stream_of(self, sku: str) -> str:
        """The stream a SKU's events go to: its partition's on a cluster, the one stream of a
        single server otherwise."""
        return keys.stream_key(keys.partition_of(sku) if self.cluster else 0)

    async def stream_marks(self, skus: Iterable[str]) -> dict[str, str]:
        """The last entry id of each event stream of these SKUs, to read what follows."""
        marks = {}
        for stream in sorted({self.stream_of(s) for s in skus}):
            last = await self.client.xrevrange(stream, count=1)
            marks[stream] = _text(last[0][0]) if last else "0-0"
        return marks

    async def events_since(
        self, marks: dict[str, str], skus: Iterable[str]
    ) -> list[dict[str, str]]:
        """Events about these SKUs appended after the marks, in stream order per stream."""
        wanted = set(skus)
        out = []
        for stream, mark in marks.items():
            for event_id, fields in await self.client.xrange(stream, min=f"({mark}"):
                for e in parse_entry(event_id, fields):
                    if e.sku in wanted:
                        out.append(_as_fields(e))
        return out

    def ledger_calls(self) -> int:
        """Calls of the ledger's function served so far, summed over every primary."""
        total = 0
        for server in self.servers:
            with server.client() as direct:
                stats = direct.info("commandstats")
            total += int(stats.get("cmdstat_fcall", {}).get("calls", 0))
        return total


def _as_fields(e: LedgerEvent) -> dict[str, str]:
    """An event as flat text fields, the vocabulary of these tests."""
    return {
        "op": e.op_id,
        "k": e.kind,
        "n": e.node_id,
        "s": e.sku,
        "ref": e.ref,
        "t": str(e.at_ms),
        "doh": str(e.d_on_hand),
        "drs": str(e.d_reserved),
        "dhd": str(e.d_held),
        "dib": str(e.d_inbound),
        "oh": str(e.on_hand),
        "rs": str(e.reserved),
        "hd": str(e.held),
        "ss": str(e.safety_stock),
        "ib": str(e.inbound),
        "v": str(e.version),
    }


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def receipt(node: str, sku: str, delta: int, ref: str | None = None) -> Adjustment:
    reason = Reason.RECEIPT if delta > 0 else Reason.SALE
    return Adjustment(node, sku, delta, reason, ref)


def partitions_of(skus: Sequence[str]) -> set[int]:
    return {keys.partition_of(s) for s in skus}


TARGETS = ["single", pytest.param("cluster", marks=pytest.mark.cluster)]


async def _open(request: pytest.FixtureRequest, target: str, clock: FakeClock | None) -> Harness:
    if target == "cluster":
        cluster = request.getfixturevalue("valkey_cluster")
        url, servers = cluster.url, cluster.primaries
    else:
        server = request.getfixturevalue("valkey_server")
        url, servers = server.url, [server]
    conn = await open_ledger(url, cluster=target == "cluster", durability="strict", clock=clock)
    return Harness(conn, target == "cluster", servers, clock)


@pytest.fixture(name="harness", params=TARGETS)
async def harness_fixture(request: pytest.FixtureRequest) -> AsyncIterator[Harness]:
    """A ledger on the server's real clock, on the single server and on the cluster."""
    h = await _open(request, request.param, None)
    try:
        yield h
    finally:
        await h.conn.aclose()


@pytest.fixture(name="timed", params=TARGETS)
async def timed_fixture(request: pytest.FixtureRequest) -> AsyncIterator[Harness]:
    """A ledger on a fake clock, on the single server and on the cluster."""
    h = await _open(request, request.param, FakeClock())
    try:
        yield h
    finally:
        await h.conn.aclose()


@pytest.fixture(name="timed_cluster")
async def timed_cluster_fixture(request: pytest.FixtureRequest) -> AsyncIterator[Harness]:
    """A ledger on a fake clock, on the cluster only (sagas)."""
    h = await _open(request, "cluster", FakeClock())
    try:
        yield h
    finally:
        await h.conn.aclose()


@pytest.fixture(name="ledger")
def ledger_fixture(harness: Harness) -> RedisLedger:
    return harness.ledger


def quantities(snapshot: dict[str, list[Position]]) -> dict[tuple[str, str], tuple[int, ...]]:
    """Positions without their versions: what a customer or an order can see."""
    return {
        (p.node_id, p.sku): (p.on_hand, p.reserved, p.held, p.safety_stock, p.inbound)
        for positions in snapshot.values()
        for p in positions
    }
