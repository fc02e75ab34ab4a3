"""Cluster failover under concurrent reservation load: the ledger keeps serving, nothing
acknowledged is lost on a graceful failover, what a killed primary loses is counted, and
``omnistock reconcile`` reports exactly the differences the loss left between journal and ledger.

A 3-shard Valkey cluster with one replica per shard (strict durability: appendfsync always on
every node) serves a ledger opened as the service opens it on a cluster
(``open_ledger(..., cluster=True)``). Sixteen tasks reserve through it continuously, one line
mostly and every fourth reservation two lines on different shards (a saga); an operation that
fails while a shard changes hands is sent again under the same op id until it is definite. A
projector journals the 128 partition streams into SQLite beside them.

- Graceful (``CLUSTER FAILOVER`` on the replica; once in the default profile, on every shard and
  back in the full profile): the ledger keeps serving afterwards, on the failed-over shard too
  (the client refreshes its slot map on the redirections); every acknowledged reservation is
  still there, active, with its lines; every position's reserved count is exactly what the
  acknowledged reservations add up to; the journal catches up and ``omnistock reconcile`` on the
  cluster finds journal and ledger in agreement (exit 0).
- SIGKILL (full profile): a primary is killed, its replica promoted by the cluster itself
  (cluster-node-timeout 2 s; CLUSTER FAILOVER TAKEOVER only if that has not happened within
  15 s, and the test says which), the killed node restarted to rejoin as a replica. Replication is
  asynchronous, so acknowledged writes the replica never received are lost: the test counts
  them and the units of reserved stock gone with them, and checks that nothing was applied
  twice (no position holds more than its acknowledged reservations). The journal may hold events
  of the lost writes (projected from the old primary before it died): those are exactly the
  journal events whose stream entry no longer exists, and ``omnistock reconcile`` must report
  exactly their positions, with reserved off by exactly their deltas (and exit 0 when there are
  none). A lost write the projector had not journaled yet is gone from both sides, and no
  comparison of the two can see it; the count printed says how many of those there were.
  On loopback a plain SIGKILL loses nothing in practice (the replication stream is handed to
  the kernel in the same turn as the replies, and the kernel still delivers it), so the plan's
  last failover holds the replica behind first (see ``kill_primary_behind``): it must lose at
  least the ``BEHIND_ACKS`` reservations acknowledged meanwhile, some of them journaled, which
  reconcile must then report.

Counts and timings are printed: run with ``-s`` to see them.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from omnistock.reservations import keys
from omnistock.reservations.connect import LedgerConnection, open_ledger
from omnistock.store.database import create_schema, open_engine
from omnistock.store.projector import Projector
from tests.faults.failover_support import (
    FailoverCluster,
    ReserveLoad,
    journal_lost_events,
    lost_reservations,
    open_cluster_client,
    reserved_differences,
    run_reconcile,
    skus_on_every_shard,
    wait_lag_zero,
)
from tests.faults.outage_support import FULL, profile_note
from tests.integration.journal_support import stop_task

pytestmark = pytest.mark.cluster

FULL_ONLY = pytest.mark.skipif(not FULL, reason="full profile: OMNISTOCK_FAULTS_PROFILE=full")
ACKS_BETWEEN = 300
"""Reservations acknowledged before the first failover and after each one."""
BEHIND_ACKS = 50
"""Reservations a primary acknowledges on its shard while its replica is held behind."""
BEHIND_JOURNALED = 10
"""Events of those the projector journals before the primary is killed."""


@pytest.fixture
def fc(tmp_path: Path) -> Iterator[FailoverCluster]:
    cluster = FailoverCluster(tmp_path / "cluster")
    cluster.start()
    try:
        yield cluster
    finally:
        cluster.stop()


@dataclass
class Rig:
    conn: LedgerConnection
    client: Any  # a second cluster client, for the projector and the checks
    engine: AsyncEngine  # the journal's
    url: str  # the journal's
    load: ReserveLoad  # seeded, not started
    projector: Projector  # running throughout


@contextlib.asynccontextmanager
async def setup(fc: FailoverCluster, tmp_path: Path) -> AsyncIterator[Rig]:
    """The ledger, the journal with its projector running, and a seeded load."""
    conn = await open_ledger(fc.seed_url, cluster=True, durability="strict", timeout_s=1.0)
    client = await open_cluster_client(fc.seed_url)
    url = f"sqlite+aiosqlite:///{(tmp_path / 'journal.db').resolve()}"
    engine = open_engine(url, timeout_s=10)
    await create_schema(engine)
    projector = Projector(client, engine, cluster=True, block_ms=100)
    task = asyncio.create_task(projector.run())
    try:
        skus = skus_on_every_shard(fc, client, per_shard=4)
        load = ReserveLoad(conn.ledger, f"fo-node-{uuid.uuid4().hex[:8]}", skus)
        await load.seed()
        yield Rig(conn, client, engine, url, load, projector)
    finally:
        await stop_task(task)
        await engine.dispose()
        await client.aclose()
        await conn.aclose()


async def acks(load: ReserveLoad, since: float, count: int, skus: set[str] | None = None) -> None:
    """Waits until ``count`` reservations were acknowledged after ``since`` (touching one of
    ``skus`` when given)."""
    deadline = time.monotonic() + 120
    while True:
        done = [
            a
            for a in load.acked
            if a.at >= since and (skus is None or any(s in skus for _n, s, _q in a.lines))
        ]
        if len(done) >= count:
            return
        assert time.monotonic() < deadline, f"only {len(done)} of {count} acknowledged"
        await asyncio.sleep(0.05)


def skus_of_shard(fc: FailoverCluster, client: Any, skus: list[str], shard: int) -> set[str]:
    return {
        s for s in skus if fc.shard_of_slot(client.keyslot(keys.tag(keys.partition_of(s)))) == shard
    }


def behind(fc: FailoverCluster, rig: Rig, shard: int) -> Any:
    """For ``kill_primary_behind``: ready once the held-back shard has acknowledged
    ``BEHIND_ACKS`` reservations and the projector has journaled events of the shard's SKUs
    made since (read from the primary: the failover will take them from the ledger)."""
    skus = sorted(skus_of_shard(fc, rig.client, rig.load.skus, shard))
    path = rig.url.removeprefix("sqlite+aiosqlite:///")
    mark = {"since": 0.0, "since_ms": 0}

    def journaled() -> int:
        with contextlib.closing(sqlite3.connect(path, timeout=10)) as db:
            marks = ",".join("?" * len(skus))
            query = f"SELECT count(*) FROM events WHERE at_ms >= ? AND sku IN ({marks})"
            return int(db.execute(query, [mark["since_ms"], *skus]).fetchone()[0])

    def ready() -> bool:
        on_shard = sum(
            1
            for a in rig.load.acked
            if a.at >= mark["since"] and any(s in skus for _n, s, _q in a.lines)
        )
        return on_shard >= BEHIND_ACKS and journaled() >= BEHIND_JOURNALED

    def make_ready() -> Any:
        mark["since"], mark["since_ms"] = time.monotonic(), int(time.time() * 1000)
        return ready

    return make_ready


async def run_failovers(fc: FailoverCluster, rig: Rig, plan: list[tuple[str, int]]) -> None:
    """Runs the load, and each failover of ``plan`` under it; after each, waits until the
    ledger has acknowledged reservations again, some of them on the shard that changed hands."""
    load, client = rig.load, rig.client
    runner = asyncio.create_task(load.run())
    try:
        await acks(load, 0.0, ACKS_BETWEEN)
        for how, shard in plan:
            if how == "graceful":
                failover = await asyncio.to_thread(fc.graceful, shard)
            elif how == "kill":
                failover = await asyncio.to_thread(fc.kill_primary, shard)
            else:
                make_ready = behind(fc, rig, shard)
                failover = await asyncio.to_thread(fc.kill_primary_behind, shard, make_ready)
            after = time.monotonic()
            await acks(load, after, ACKS_BETWEEN)
            await acks(load, after, 20, skus_of_shard(fc, client, load.skus, shard))
            print(f"  {failover}")
    finally:
        load.stop.set()
        await runner


def summary(load: ReserveLoad) -> str:
    return (
        f"acked={len(load.acked)} refused={load.refused} retried_ops={load.retried_ops} "
        f"retries={load.retries} longest_to_definite={load.longest_s:.2f}s "
        f"script_errors={len(load.script_errors)}"
    )


GRACEFUL_PLAN = [("graceful", 0), ("graceful", 1), ("graceful", 2), ("graceful", 0)]


async def test_graceful_failover_under_load_loses_nothing_and_reconcile_agrees(
    fc: FailoverCluster, tmp_path: Path
) -> None:
    plan = GRACEFUL_PLAN if FULL else GRACEFUL_PLAN[:1]
    print(f"\n[failover-graceful] profile={profile_note()} plan={plan}")
    async with setup(fc, tmp_path) as rig:
        load, url = rig.load, rig.url
        await run_failovers(fc, rig, plan)
        lost = await lost_reservations(rig.conn.ledger, load.acked)
        differing = await reserved_differences(rig.conn.ledger, load.node, load.skus, load.acked)
        lag_s = await wait_lag_zero(rig.client)
        print(f"  {summary(load)}\n  lost acknowledged reservations: {len(lost)}")
        assert len(fc.failovers) == len(plan)
        assert not lost, f"acknowledged and lost on a graceful failover: {lost[:5]}"
        assert not differing, f"reserved (ledger, acknowledged) differ: {differing}"
    reconciled = await asyncio.to_thread(run_reconcile, tmp_path / "data", fc.seed_url, url)
    print(f"  journal caught up {lag_s:.2f}s after the load; {reconciled.output.strip()}")
    assert reconciled.code == 0, reconciled.output
    assert "journal and ledger agree" in reconciled.output


@pytest.mark.slow
@FULL_ONLY
async def test_killed_primary_loses_at_most_unreplicated_writes_and_reconcile_reports_them(
    fc: FailoverCluster, tmp_path: Path
) -> None:
    plan = [("kill", 1), ("graceful", 2), ("kill-behind", 0)]
    print(f"\n[failover-kill] profile={profile_note()} plan={plan}")
    async with setup(fc, tmp_path) as rig:
        load, url = rig.load, rig.url
        await run_failovers(fc, rig, plan)
        lost = await lost_reservations(rig.conn.ledger, load.acked)
        differing = await reserved_differences(rig.conn.ledger, load.node, load.skus, load.acked)
        lag_s = await wait_lag_zero(rig.client)
        journal_lost = await journal_lost_events(rig.engine, rig.client)
        journaled_ops = {e["op_id"] for e in journal_lost}
    # Nothing applied twice or out of nowhere: no position holds more than was acknowledged.
    over = {s: d for s, d in differing.items() if d[0] > d[1]}
    assert not over, f"positions holding more than acknowledged (ledger, acked): {over}"
    deficit = sum(want - have for have, want in differing.values())
    lost_units = sum(q for a in lost for _n, _s, q in a.lines)
    print(
        f"  {summary(load)}\n  lost acknowledged reservations: {len(lost)} "
        f"({deficit} reserved units), {len({a.op_id for a in lost} & journaled_ops)} of them "
        f"journaled before the loss; journal events the ledger no longer has: "
        f"{len(journal_lost)}; journal caught up {lag_s:.2f}s after the load"
    )
    assert (deficit == 0) == (not lost), (deficit, len(lost))
    # The replica held behind missed what its primary acknowledged meanwhile.
    assert len(lost) >= BEHIND_ACKS, f"only {len(lost)} lost with the replica held behind"
    assert len(journal_lost) >= BEHIND_JOURNALED, "the journal had none of the lost writes"
    assert len(lost) <= deficit <= lost_units

    reconciled = await asyncio.to_thread(run_reconcile, tmp_path / "data", fc.seed_url, url)
    print("  " + reconciled.output.strip().replace("\n", "\n  "))
    expected: dict[tuple[str, str, str], int] = {}
    for e in journal_lost:
        if e["d_reserved"]:
            key = (e["node_id"], e["sku"], "reserved")
            expected[key] = expected.get(key, 0) + e["d_reserved"]
    reported = {k: v for k, v in reconciled.ledger_diffs.items() if k[2] == "reserved"}
    assert reported == {k: v for k, v in expected.items() if v}, reconciled.output
    assert reconciled.positions == {(e["node_id"], e["sku"]) for e in journal_lost}
    assert reconciled.code == (1 if journal_lost else 0), reconciled.output
