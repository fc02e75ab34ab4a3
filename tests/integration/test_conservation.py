"""Conservation under concurrency, bank-style: a warehouse and four stores, a few SKUs, and worker
processes moving stock around at once (transfers shipped and received in full or in part, holds
placed from a store's own stock or with a source, made ready, collected, cancelled, sales and
receipts, reservations committed or released; see ``movement_workers``), while a reader process
takes snapshot after snapshot.

Every snapshot: no quantity negative, reserved + held within on_hand, and per SKU on_hand + inbound
summed over the nodes between the start minus everything that left and the start plus every
receipt (each SKU's positions are read in one script, so this holds at every read, on a cluster
too). At the end, exactly, per SKU: on_hand + inbound over the nodes = start + receipts - sales -
commits - collects - losses (shipped minus received); and per position: reserved = the requested
transfers plus the active reservations, held = the placed and ready holds, inbound = the transfers
in transit; and every transfer and hold is in the state its worker left it in.
"""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from collections.abc import AsyncIterator
from typing import Any

import pytest

from omnistock.domain.movement import HoldStatus, TransferStatus
from omnistock.reservations.connect import LedgerConnection, open_ledger
from omnistock.runtime.valkey_cluster import EmbeddedCluster
from tests.integration.test_concurrency import PROCESSES, Workers, errors_of, unique
from tests.integration.test_concurrency import skus_in_distinct_partitions as distinct_skus

MODULE = "tests.integration.movement_workers"
STORES = 4
SKUS = 4
WAREHOUSE_STOCK = 60
STORE_STOCK = 15
KINDS = {
    "request",
    "ship",
    "receive",
    "cancel_transfer",
    "hold_local",
    "hold_sourced",
    "ready",
    "collect",
    "cancel_hold",
    "sale",
    "receipt",
    "reserve",
    "commit",
    "release",
}


class Crew(Workers):
    """Traffic workers, and a reader as the last process."""

    @property
    def workers(self) -> list[asyncio.subprocess.Process]:
        return self.procs[:-1]

    @property
    def reader(self) -> asyncio.subprocess.Process:
        return self.procs[-1]

    @staticmethod
    async def send(proc: asyncio.subprocess.Process, line: str) -> None:
        assert proc.stdin is not None
        proc.stdin.write(line.encode() + b"\n")
        await proc.stdin.drain()

    async def round(
        self, traffic: list[dict[str, Any]], watch: dict[str, Any]
    ) -> tuple[list[dict[str, Any]], dict[str, Any]]:
        """The reader starts watching, every worker runs its traffic at once, and once all of
        them are done the reader is told to stop."""
        await self.send(self.reader, json.dumps(watch))
        for proc, command in zip(self.workers, traffic, strict=True):
            await self.send(proc, json.dumps(command))
        results = await asyncio.gather(*(self._read(p) for p in self.workers))
        await self.send(self.reader, "stop")
        return list(results), await self._read(self.reader)


async def _start(url: str, cluster: bool) -> Crew:
    started = await Workers.start(url, cluster=cluster, module=MODULE, count=PROCESSES + 1)
    return Crew(started.procs)


@pytest.fixture(scope="module")
async def server_crew(redis_url: str) -> AsyncIterator[Crew]:
    crew = await _start(redis_url, False)
    yield crew
    await crew.close()


@pytest.fixture(scope="module")
async def server(redis_url: str) -> AsyncIterator[LedgerConnection]:
    conn = await open_ledger(redis_url)
    yield conn
    await conn.aclose()


@pytest.fixture(scope="module")
async def cluster_crew(valkey_cluster: EmbeddedCluster) -> AsyncIterator[Crew]:
    crew = await _start(valkey_cluster.url, True)
    yield crew
    await crew.close()


@pytest.fixture(scope="module")
async def cluster(valkey_cluster: EmbeddedCluster) -> AsyncIterator[LedgerConnection]:
    conn = await open_ledger(valkey_cluster.url, cluster=True)
    yield conn
    await conn.aclose()


def _sum(results: list[dict[str, Any]], name: str) -> Counter[str]:
    return sum((Counter(r[name]) for r in results), Counter())


async def conservation_round(crew: Crew, conn: LedgerConnection, count: int, tasks: int) -> str:
    """One round of traffic and snapshots on fresh nodes and SKUs; returns its summary."""
    ledger = conn.ledger
    warehouse = unique("wh")
    nodes = [warehouse, *(unique(f"store{i}") for i in range(STORES))]
    skus = distinct_skus(SKUS)
    start = {sku: WAREHOUSE_STOCK + STORES * STORE_STOCK for sku in skus}
    for node in nodes:
        for sku in skus:
            on_hand = WAREHOUSE_STOCK if node == warehouse else STORE_STOCK
            await ledger.set_stock(unique("seed"), node, sku, on_hand)

    results, watched = await crew.round(
        [
            {
                "cmd": "traffic",
                "nodes": nodes,
                "skus": skus,
                "prefix": unique(f"w{w}"),
                "seed": w,
                "count": count,
                "tasks": tasks,
            }
            for w in range(len(crew.workers))
        ],
        {"cmd": "watch", "skus": skus},
    )

    final = await ledger.availability_many(skus)
    ops = sum(r["ops"] for r in results)
    outcomes = _sum(results, "outcomes")
    sums = {name: _sum(results, name) for name in ("receipts", "sales", "commits", "collects")}
    losses = _sum(results, "losses")
    left = {
        sku: sum(sums[n][sku] for n in ("sales", "commits", "collects")) + losses[sku]
        for sku in skus
    }
    expected = {sku: start[sku] + sums["receipts"][sku] - left[sku] for sku in skus}

    violations = [v for r in results for v in r["violations"]] + watched["violations"]
    for sku in skus:
        if watched["high"][sku] > start[sku] + sums["receipts"][sku]:
            violations.append(f"{sku}: a snapshot saw {watched['high'][sku]}, above every receipt")
        if watched["low"][sku] < start[sku] - left[sku]:
            violations.append(f"{sku}: a snapshot saw {watched['low'][sku]}, below all that left")
        total = sum(p.on_hand + p.inbound for p in final[sku])
        if total != expected[sku]:
            violations.append(
                f"{sku}: on_hand + inbound {total}, expected {expected[sku]} = {start[sku]} "
                f"+ receipts {sums['receipts'][sku]} - sales {sums['sales'][sku]} - commits "
                f"{sums['commits'][sku]} - collects {sums['collects'][sku]} - losses {losses[sku]}"
            )
    owed = {field: _sum(results, field) for field in ("reserved", "held", "inbound")}
    for sku in skus:
        seen = {p.node_id for p in final[sku]}
        for p in final[sku]:
            if min(p.on_hand, p.reserved, p.held, p.inbound) < 0 or p.reserved + p.held > p.on_hand:
                violations.append(f"final: {p!r}")
            actual = {"reserved": p.reserved, "held": p.held, "inbound": p.inbound}
            for field, by_position in owed.items():
                if actual[field] != by_position[f"{p.node_id}|{sku}"]:
                    violations.append(
                        f"{p!r}: {field} should be {by_position[f'{p.node_id}|{sku}']}"
                    )
        for field, by_position in owed.items():
            for key, qty in by_position.items():
                node, _, of = key.partition("|")
                if of == sku and qty and node not in seen:
                    violations.append(f"{key}: {field} {qty} on a position that does not exist")

    transfers = {tid: s for r in results for tid, s in r["transfers"].items()}
    holds = {hid: s for r in results for hid, s in r["holds"].items()}
    got_t = await asyncio.gather(*(ledger.get_transfer(t) for t in transfers))
    got_h = await asyncio.gather(*(ledger.get_hold(h) for h in holds))
    for t in got_t:
        if t.status is not TransferStatus(transfers[t.transfer_id]):
            violations.append(
                f"{t.transfer_id} is {t.status}, its worker left it {transfers[t.transfer_id]}"
            )
    for h in got_h:
        want = HoldStatus.PLACED if holds[h.hold_id] == "awaiting" else HoldStatus(holds[h.hold_id])
        if h.status is not want:
            violations.append(f"{h.hold_id} is {h.status}, its worker left it {holds[h.hold_id]}")

    summary = (
        f"{ops} operations, {watched['snapshots']} snapshots, violations: {len(violations)}; "
        f"{len(transfers)} transfers ({sum(losses.values())} units lost), {len(holds)} holds, "
        f"{sum(outcomes[k] for k in outcomes if ':' in k)} refusals"
    )
    detail = f"{summary}\n" + "\n".join(violations[:40])
    assert errors_of(results) == [], detail
    assert violations == [], detail
    assert watched["snapshots"] > 0, detail
    succeeded = {kind for kind in outcomes if ":" not in kind}
    assert succeeded == KINDS, f"{detail}\nnever succeeded: {KINDS - succeeded}"
    assert outcomes["request:InsufficientStock"] + outcomes["sale:BelowCommitted"] > 0, (
        f"{detail}\nthe traffic never ran short of stock"
    )
    assert sum(losses.values()) > 0, f"{detail}\nno receipt was partial"
    return summary


ROUND = {"count": 1000, "tasks": 16}
LONG_ROUND = {"count": 10_000, "tasks": 32}


async def test_every_unit_is_accounted_for_on_a_single_server(
    server_crew: Crew, server: LedgerConnection
) -> None:
    summary = await conservation_round(server_crew, server, **ROUND)
    print(f"conservation (single server): {summary}")


@pytest.mark.cluster
async def test_every_unit_is_accounted_for_on_a_cluster(
    cluster_crew: Crew, cluster: LedgerConnection
) -> None:
    summary = await conservation_round(cluster_crew, cluster, **ROUND)
    print(f"conservation (cluster): {summary}")


@pytest.mark.slow
@pytest.mark.timeout(900)
async def test_every_unit_is_accounted_for_in_a_long_run_on_a_single_server(
    server_crew: Crew, server: LedgerConnection
) -> None:
    summary = await conservation_round(server_crew, server, **LONG_ROUND)
    print(f"conservation (single server, long): {summary}")


@pytest.mark.slow
@pytest.mark.cluster
@pytest.mark.timeout(900)
async def test_every_unit_is_accounted_for_in_a_long_run_on_a_cluster(
    cluster_crew: Crew, cluster: LedgerConnection
) -> None:
    summary = await conservation_round(cluster_crew, cluster, **LONG_ROUND)
    print(f"conservation (cluster, long): {summary}")
