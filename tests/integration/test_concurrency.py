"""The ledger under real contention: several OS processes, each with its own connection and many
asyncio tasks, fire at the same positions at once (see ``concurrent_workers`` for what each
process runs). Every round is checked against the ledger: nothing oversold, nothing left over.
"""

from __future__ import annotations

import asyncio
import json
import sys
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Callable
from itertools import count
from pathlib import Path
from typing import Any

import pytest
from redis.cluster import key_slot

from omnistock.domain.reservation import ReservationStatus
from omnistock.domain.stock import Line
from omnistock.reservations import keys
from omnistock.reservations.connect import LedgerConnection, open_ledger
from omnistock.runtime.valkey_cluster import EmbeddedCluster

ROOT = Path(__file__).resolve().parents[2]
PROCESSES = 4
TASKS = 64
CALLS = 1000
STOCK = 100
ANSWER_TIMEOUT_S = 240
ANSWER_LIMIT = 64 * 1024 * 1024
"""The longest answer line a worker may give (asyncio's default is 64 KiB)."""


class Workers:
    """Worker processes of ``concurrent_workers``, driven over their stdin and stdout."""

    def __init__(self, procs: list[asyncio.subprocess.Process]) -> None:
        self.procs = procs

    @classmethod
    async def start(
        cls,
        url: str,
        *,
        cluster: bool = False,
        module: str = "tests.integration.concurrent_workers",
        count: int = PROCESSES,
    ) -> Workers:
        argv = [sys.executable, "-m", module, url]
        argv += ["--cluster"] if cluster else []
        procs = [
            await asyncio.create_subprocess_exec(
                *argv,
                cwd=ROOT,
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                limit=ANSWER_LIMIT,
            )
            for _ in range(count)
        ]
        workers = cls(procs)
        try:
            ready = await asyncio.gather(*(workers._read(p) for p in procs))
        except BaseException:
            await workers.close()
            raise
        assert all(r == {"ready": True} for r in ready)
        return workers

    async def _read(self, proc: asyncio.subprocess.Process) -> dict[str, Any]:
        assert proc.stdout is not None
        line = await asyncio.wait_for(proc.stdout.readline(), ANSWER_TIMEOUT_S)
        if not line:
            raise RuntimeError(f"worker {proc.pid} exited with {await proc.wait()}")
        return json.loads(line)

    async def run(self, commands: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Sends one command to each worker, all before reading any answer, so they run at once."""
        assert len(commands) == len(self.procs)
        for proc, command in zip(self.procs, commands, strict=True):
            assert proc.stdin is not None
            proc.stdin.write(json.dumps(command).encode() + b"\n")
        await asyncio.gather(*(p.stdin.drain() for p in self.procs if p.stdin is not None))
        return await asyncio.gather(*(self._read(p) for p in self.procs))

    async def close(self) -> None:
        for proc in self.procs:
            if proc.stdin is not None and not proc.stdin.is_closing():
                proc.stdin.close()
        for proc in self.procs:
            try:
                await asyncio.wait_for(proc.wait(), 10)
            except TimeoutError:
                proc.kill()
                await proc.wait()


def split(items: list[str], parts: int) -> list[list[str]]:
    return [items[i::parts] for i in range(parts)]


def unique(name: str) -> str:
    return f"{name}-{uuid.uuid4().hex[:12]}"


def errors_of(results: list[dict[str, Any]]) -> list[str]:
    return [e for r in results for e in r["errors"]]


@pytest.fixture(scope="module")
async def server_workers(redis_url: str) -> AsyncIterator[Workers]:
    workers = await Workers.start(redis_url)
    yield workers
    await workers.close()


@pytest.fixture(scope="module")
async def server(redis_url: str) -> AsyncIterator[LedgerConnection]:
    conn = await open_ledger(redis_url)
    yield conn
    await conn.aclose()


@pytest.fixture(scope="module")
async def cluster_workers(valkey_cluster: EmbeddedCluster) -> AsyncIterator[Workers]:
    workers = await Workers.start(valkey_cluster.url, cluster=True)
    yield workers
    await workers.close()


@pytest.fixture(scope="module")
async def cluster(valkey_cluster: EmbeddedCluster) -> AsyncIterator[LedgerConnection]:
    conn = await open_ledger(valkey_cluster.url, cluster=True)
    yield conn
    await conn.aclose()


async def contend(workers: Workers, prefix: str, lines: list[list[Any]]) -> list[dict[str, Any]]:
    """CALLS reserves of ``lines`` spread over every worker, TASKS at a time in each."""
    ops = [f"{prefix}:{i}" for i in range(CALLS)]
    return await workers.run(
        [
            {"cmd": "reserve", "lines": lines, "ops": share, "tasks": TASKS}
            for share in split(ops, PROCESSES)
        ]
    )


async def release_all(workers: Workers, prefix: str, rids: list[str]) -> None:
    """Releases ``rids`` from every worker at once; a worker releases others' reservations too."""
    results = await workers.run(
        [
            {"cmd": "release", "rids": share, "prefix": prefix, "tasks": TASKS}
            for share in split(rids, PROCESSES)
        ]
    )
    assert errors_of(results) == []
    assert sum(r["released"] for r in results) == len(rids)


# -- one SKU on the single server ------------------------------------------------------------


@pytest.mark.parametrize(
    "rounds",
    [pytest.param(5, id="5-rounds"), pytest.param(50, id="50-rounds", marks=pytest.mark.slow)],
)
async def test_a_thousand_concurrent_reserves_win_exactly_the_stock_every_round(
    server_workers: Workers, server: LedgerConnection, rounds: int
) -> None:
    ledger = server.ledger
    node, sku = unique("store"), unique("sku")
    await ledger.set_stock(unique("set"), node, sku, STOCK)

    for round_ in range(rounds):
        prefix = unique(f"round{round_}")
        results = await contend(server_workers, prefix, [[node, sku, 1]])
        assert errors_of(results) == []
        rids = [rid for r in results for rid in r["reserved"]]
        assert len(rids) == STOCK
        assert len(set(rids)) == STOCK
        assert sum(len(r["short"]) for r in results) == CALLS - STOCK

        pos = await ledger.position(node, sku)
        assert (pos.on_hand, pos.reserved, pos.available) == (STOCK, STOCK, 0)
        for reservation in await asyncio.gather(*(ledger.get_reservation(r) for r in rids)):
            assert reservation.status is ReservationStatus.ACTIVE
            assert reservation.lines == [Line(node, sku, 1)]

        await release_all(server_workers, f"{prefix}:release", rids)
        pos = await ledger.position(node, sku)
        assert (pos.on_hand, pos.reserved, pos.available) == (STOCK, 0, STOCK)


# -- two SKUs in different shards of the cluster ---------------------------------------------


def slot_owner(cluster: EmbeddedCluster) -> Callable[[int], tuple[str, int]]:
    """Which primary owns a slot, as the cluster itself reports it."""
    with cluster.primaries[0].client() as client:
        ranges = client.execute_command("CLUSTER", "SLOTS")

    def owner(slot: int) -> tuple[str, int]:
        for first, last, primary, *_ in ranges:
            if first <= slot <= last:
                host = primary[0].decode() if isinstance(primary[0], bytes) else primary[0]
                return host, int(primary[1])
        raise LookupError(slot)

    return owner


def shard_of(owner: Callable[[int], tuple[str, int]], sku: str) -> tuple[str, int]:
    return owner(key_slot(keys.tag(keys.partition_of(sku)).encode()))


def cross_shard_skus(cluster: EmbeddedCluster) -> tuple[str, str]:
    """Two fresh SKUs whose partitions live on different primaries."""
    owner, prefix = slot_owner(cluster), unique("xs")
    for i in count():
        a, b = f"{prefix}-a{i}", f"{prefix}-b{i}"
        if shard_of(owner, a) != shard_of(owner, b):
            return a, b
    raise AssertionError("unreachable")


async def leftover_parts(conn: LedgerConnection, rid_parts: list[tuple[str, int]]) -> list[str]:
    """The reservation parts among ``rid_parts`` that still hold stock (active or pinned), as the
    ledger reads each partition's own record of them."""
    views = await asyncio.gather(*(conn.ledger._view(p, rid) for rid, p in rid_parts))
    return [
        f"{rid}@{p}: {view}"
        for (rid, p), view in zip(rid_parts, views, strict=True)
        if view.get("st") in ("a", "p")
    ]


@pytest.mark.cluster
@pytest.mark.parametrize(
    ("stock_b", "rounds"),
    [
        pytest.param(STOCK, 5, id="both-100"),
        pytest.param(60, 5, id="b-only-60"),
        pytest.param(STOCK, 50, id="both-100-50-rounds", marks=pytest.mark.slow),
    ],
)
async def test_concurrent_cross_shard_reserves_win_exactly_the_scarcer_stock_and_leave_no_parts(
    valkey_cluster: EmbeddedCluster,
    cluster_workers: Workers,
    cluster: LedgerConnection,
    stock_b: int,
    rounds: int,
) -> None:
    ledger = cluster.ledger
    node = unique("dc")
    sku_a, sku_b = cross_shard_skus(valkey_cluster)
    part_a, part_b = keys.partition_of(sku_a), keys.partition_of(sku_b)
    assert part_a != part_b
    owner = slot_owner(valkey_cluster)
    assert shard_of(owner, sku_a) != shard_of(owner, sku_b)
    await ledger.set_stock(unique("set"), node, sku_a, STOCK)
    await ledger.set_stock(unique("set"), node, sku_b, stock_b)
    winners = min(STOCK, stock_b)

    for round_ in range(rounds):
        prefix = unique(f"round{round_}")
        results = await contend(cluster_workers, prefix, [[node, sku_a, 1], [node, sku_b, 1]])
        assert errors_of(results) == []
        rids = [rid for r in results for rid in r["reserved"]]
        short = [op for r in results for op in r["short"]]
        assert len(set(rids)) == len(rids)
        assert len(rids) + len(short) == CALLS
        assert all(keys.is_multi_part(rid) for rid in rids)

        # Nothing partial: both SKUs carry exactly the winners, and no refused attempt left a part.
        a, b = await ledger.position(node, sku_a), await ledger.position(node, sku_b)
        assert (a.on_hand, a.reserved) == (STOCK, len(rids))
        assert (b.on_hand, b.reserved) == (stock_b, len(rids))
        for reservation in await asyncio.gather(*(ledger.get_reservation(r) for r in rids)):
            assert reservation.status is ReservationStatus.ACTIVE
            assert sorted(reservation.lines, key=lambda line: line.sku) == [
                Line(node, sku_a, 1),
                Line(node, sku_b, 1),
            ]
        # The header part lives in the lower partition: parts are reserved in partition order.
        header = min(part_a, part_b)
        refused = [keys.reservation_id(op, header, single=False) for op in short]
        parts = [(rid, p) for rid in refused for p in (part_a, part_b)]
        assert await leftover_parts(cluster, parts) == []

        # Nothing refused while stock was there: the scarcer SKU is sold out.
        assert len(rids) == winners, f"round {round_}: {b.available} of {sku_b} left unreserved"
        assert b.available == 0

        await release_all(cluster_workers, f"{prefix}:release", rids)
        a, b = await ledger.position(node, sku_a), await ledger.position(node, sku_b)
        assert (a.reserved, b.reserved) == (0, 0)
        assert await leftover_parts(cluster, [(r, p) for r in rids for p in (part_a, part_b)]) == []


# -- mixed traffic ----------------------------------------------------------------------------


def skus_in_distinct_partitions(n: int) -> list[str]:
    """Fresh SKUs in pairwise different partitions, so on a cluster a reservation of two of them
    is a multi-partition saga."""
    skus: list[str] = []
    while len(skus) < n:
        sku = unique(f"mix{len(skus)}")
        if keys.partition_of(sku) not in {keys.partition_of(s) for s in skus}:
            skus.append(sku)
    return skus


@pytest.mark.parametrize("target", ["server", pytest.param("cluster", marks=pytest.mark.cluster)])
async def test_mixed_concurrent_traffic_conserves_every_unit(
    request: pytest.FixtureRequest, target: str
) -> None:
    """Reserve, commit, release, commit racing release, receipts, sales and compare-and-set
    counts from every worker at once on three positions; afterwards every unit is accounted for
    by what the workers saw succeed."""
    workers: Workers = request.getfixturevalue(f"{target}_workers")
    ledger = request.getfixturevalue(target).ledger
    node, skus, initial = unique("store"), skus_in_distinct_partitions(3), 40
    for sku in skus:
        await ledger.set_stock(unique("set"), node, sku, initial)

    results = await workers.run(
        [
            {
                "cmd": "mixed",
                "node": node,
                "skus": skus,
                "prefix": unique(f"mixed-w{w}"),
                "seed": w,
                "count": 300,
                "tasks": 32,
            }
            for w in range(PROCESSES)
        ]
    )
    assert errors_of(results) == []
    assert [v for r in results for v in r["violations"]] == []
    outcomes = sum((Counter(r["outcomes"]) for r in results), Counter())
    succeeded = {kind for kind in outcomes if ":" not in kind}
    assert succeeded == {"reserve", "commit", "release", "race", "receipt", "sale", "count"}
    assert outcomes["reserve:InsufficientStock"] > 0, "the traffic never reached the stock limit"

    def total(field: str, sku: str) -> int:
        return sum(r[field][sku] for r in results)

    active = {rid: lines for r in results for rid, lines in r["active"].items()}
    for sku in skus:
        pos = await ledger.position(node, sku)
        expected = (
            initial
            + total("receipts", sku)
            - total("sales", sku)
            - total("committed", sku)
            + total("counted", sku)
        )
        still_reserved = sum(q for lines in active.values() for s, q in lines if s == sku)
        assert pos.on_hand == expected, f"{sku}: on_hand {pos.on_hand}, accounted {expected}"
        assert pos.reserved == still_reserved, (
            f"{sku}: reserved {pos.reserved}, active reservations hold {still_reserved}"
        )
        assert pos.held == 0
        assert min(pos.on_hand, pos.reserved, pos.held, pos.inbound) >= 0
        assert pos.reserved + pos.held <= pos.on_hand
    for reservation in await asyncio.gather(*(ledger.get_reservation(r) for r in active)):
        assert reservation.status is ReservationStatus.ACTIVE
        expected_lines = active[reservation.reservation_id]
        assert sorted([line.sku, line.qty] for line in reservation.lines) == sorted(expected_lines)
