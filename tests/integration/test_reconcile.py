"""Reconciliation, on SQLite and on PostgreSQL: the journal replayed into positions agrees with
the live ledger after a clean run, and every difference planted on either side is reported with
its node, SKU and field; ``omnistock reconcile`` exits 1 on a difference and 0 otherwise.

Each test has a Valkey of its own: reconciliation looks at everything the ledger holds.
"""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
import time
import tracemalloc
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aioredis
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from omnistock.reservations import keys
from omnistock.reservations.connect import LedgerConnection
from omnistock.runtime.valkey_server import EmbeddedValkey
from omnistock.store.database import events
from omnistock.store.projector import Projector
from omnistock.store.reconcile import JOURNAL, LEDGER, Difference, reconcile
from tests.integration.journal_support import (
    PYTHON,
    Workload,
    engine_fixture,  # noqa: F401
    ledger_conn_fixture,  # noqa: F401
    own_valkey_fixture,  # noqa: F401
    stop_task,
    subprocess_env,
    wait_journaled,
)


@pytest.fixture
async def client(own_valkey: EmbeddedValkey) -> AsyncIterator[Any]:
    c = aioredis.from_url(own_valkey.url, socket_timeout=10)
    try:
        yield c
    finally:
        await c.aclose()


@contextlib.asynccontextmanager
async def projecting(client: Any, engine: AsyncEngine) -> AsyncIterator[Projector]:
    projector = Projector(client, engine, cluster=False, block_ms=100)
    task = asyncio.create_task(projector.run())
    try:
        yield projector
    finally:
        await stop_task(task)


@pytest.fixture
async def journaled(
    ledger_conn: LedgerConnection, engine: AsyncEngine, client: Any
) -> AsyncIterator[Workload]:
    """A workload run through the ledger and fully journaled; the projector is stopped."""
    work = Workload.make(ledger_conn.ledger, nodes=3, skus=7)
    await work.seed()
    async with projecting(client, engine):
        await work.run(tasks=6, per_task=30)
        await wait_journaled(engine, client)
    yield work


def stock_key(sku: str) -> str:
    return f"{keys.tag(keys.partition_of(sku))}:s:{sku}"


async def test_clean_run_reports_no_difference(
    journaled: Workload, engine: AsyncEngine, ledger_conn: LedgerConnection
) -> None:
    report = await reconcile(ledger_conn.ledger, engine)

    assert report.differences == []
    assert report.skus == len(journaled.skus)
    assert report.positions == len(journaled.nodes) * len(journaled.skus)
    assert report.events > 300
    assert report.lag == 0
    assert "agree" in report.render()


async def test_chunks_of_skus_cover_every_position(
    journaled: Workload, engine: AsyncEngine, ledger_conn: LedgerConnection, client: Any
) -> None:
    """The journal is streamed and the ledger read a few SKUs at a time: a chunk boundary loses
    nothing, on the journal's side or the ledger's."""
    node, sku = journaled.nodes[0], journaled.skus[-1]
    await client.hincrby(stock_key(sku), f"{node}|rs", 1)

    report = await reconcile(ledger_conn.ledger, engine, chunk_skus=2)

    assert report.skus == len(journaled.skus)
    assert report.positions == len(journaled.nodes) * len(journaled.skus)
    assert [(d.node_id, d.sku, d.field) for d in report.differences] == [(node, sku, "reserved")]


async def test_a_field_changed_in_redis_is_reported_with_node_sku_and_field(
    journaled: Workload, engine: AsyncEngine, ledger_conn: LedgerConnection, client: Any
) -> None:
    node, sku = journaled.nodes[1], journaled.skus[2]
    before = await ledger_conn.ledger.position(node, sku)
    await client.hset(stock_key(sku), f"{node}|oh", before.on_hand + 7)

    report = await reconcile(ledger_conn.ledger, engine)

    assert report.differences == [
        Difference(node, sku, "on_hand", before.on_hand, before.on_hand + 7, LEDGER)
    ]
    text = report.render()
    assert "1 difference in 1 position" in text
    assert f"{node}\t{sku}\ton_hand\t{before.on_hand}\t{before.on_hand + 7}" in text


async def test_positions_only_one_side_has_are_reported(
    journaled: Workload, engine: AsyncEngine, ledger_conn: LedgerConnection, client: Any
) -> None:
    sku = journaled.skus[0]
    # The ledger has a node of a journaled SKU, and a whole SKU, the journal never saw.
    await client.hset(stock_key(sku), mapping={"ghost|oh": 3, "ghost|v": 1})
    unknown = f"unjournaled-{journaled.uid}"
    await client.hset(stock_key(unknown), mapping={"n9|oh": 4, "n9|ss": 1, "n9|v": 2})
    # The journal has a position the ledger lacks.
    async with engine.begin() as conn:
        await conn.execute(
            events.insert().values(
                event_id="0:1-0/0",
                at_ms=1,
                op_id="planted",
                kind="receipt",
                node_id="lost",
                sku=sku,
                d_on_hand=5,
                d_reserved=0,
                d_held=0,
                d_inbound=0,
                on_hand=5,
                reserved=0,
                held=0,
                safety_stock=0,
                inbound=0,
                version=1,
                ref="",
            )
        )

    report = await reconcile(ledger_conn.ledger, engine)

    found = {(d.node_id, d.sku, d.field): (d.journal, d.ledger) for d in report.differences}
    assert found[("ghost", sku, "on_hand")] == (None, 3)
    assert found[("ghost", sku, "version")] == (None, 1)
    assert found[("n9", unknown, "on_hand")] == (None, 4)
    assert found[("n9", unknown, "safety_stock")] == (None, 1)
    assert found[("lost", sku, "on_hand")] == (5, None)
    assert found[("lost", sku, "version")] == (1, None)
    assert {(n, s) for n, s, _f in found} == {("ghost", sku), ("n9", unknown), ("lost", sku)}
    assert all(d.kind == LEDGER for d in report.differences)
    text = report.render()
    assert "position missing from the journal" in text
    assert "position missing from the ledger" in text


async def test_an_event_missing_from_the_journal_shows_as_an_inconsistency_inside_it(
    journaled: Workload, engine: AsyncEngine, ledger_conn: LedgerConnection
) -> None:
    node, sku = journaled.nodes[0], journaled.skus[0]
    async with engine.begin() as conn:
        seqs = (
            await conn.execute(
                sa.select(events.c.seq, events.c.d_on_hand)
                .where(
                    events.c.node_id == node,
                    events.c.sku == sku,
                    events.c.d_on_hand != 0,
                    events.c.d_reserved == 0,
                    events.c.d_held == 0,
                    events.c.d_inbound == 0,
                )
                .order_by(events.c.seq)
            )
        ).all()
        # Not the latest event: the position's final quantities stay in the journal.
        seq, lost = seqs[len(seqs) // 2]
        await conn.execute(events.delete().where(events.c.seq == seq))

    report = await reconcile(ledger_conn.ledger, engine)

    live = await ledger_conn.ledger.position(node, sku)
    inside = [d for d in report.differences if d.kind == JOURNAL]
    assert inside == [
        Difference(node, sku, "on_hand", live.on_hand - lost, live.on_hand, JOURNAL, live.on_hand)
    ]
    against = [d for d in report.differences if d.kind == LEDGER]
    assert against == [Difference(node, sku, "on_hand", live.on_hand - lost, live.on_hand)]
    assert "journal inconsistent" in report.render()


async def test_the_report_gives_the_projectors_lag(
    journaled: Workload, engine: AsyncEngine, ledger_conn: LedgerConnection
) -> None:
    # The projector is stopped: what happens now is not journaled.
    await journaled.run(tasks=2, per_task=5)

    report = await reconcile(ledger_conn.ledger, engine)

    assert report.differences
    assert report.lag is not None and report.lag > 0
    assert f"the journal trails the ledger by {report.lag} stream entries" in report.render()
    given = await reconcile(ledger_conn.ledger, engine, lag=42)
    assert given.lag == 42 and "projector lag 42" in given.render()


@pytest.mark.slow
async def test_a_large_journal_is_reconciled_in_bounded_memory(
    ledger_conn: LedgerConnection, engine: AsyncEngine, client: Any, database_url: str
) -> None:
    """The journal is aggregated in the database and streamed: the memory reconciliation takes
    follows the positions of a chunk of SKUs, not the number of events."""
    work = Workload.make(ledger_conn.ledger, nodes=10, skus=300)
    await work.seed()
    async with projecting(client, engine):
        await work.run(tasks=16, per_task=2500)
        events_total = await wait_journaled(engine, client, timeout_s=300)

    tracemalloc.start()
    started = time.monotonic()
    try:
        report = await reconcile(ledger_conn.ledger, engine)
        elapsed = time.monotonic() - started
        _current, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()

    assert report.differences == []
    assert report.events == events_total > 60_000
    assert report.positions == 10 * 300
    kind = database_url.split(":", 1)[0]
    print(
        f"\n[reconcile] {kind}: {report.events} events, {report.positions} positions in "
        f"{elapsed:.2f} s, peak Python memory {peak / 1e6:.1f} MB"
    )
    assert peak < 30e6


def _cli_reconcile(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [PYTHON, "-m", "omnistock.runtime.cli", "reconcile"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


async def test_cli_exits_0_on_a_clean_ledger_and_1_on_a_difference(
    journaled: Workload,
    own_valkey: EmbeddedValkey,
    client: Any,
    database_url: str,
    tmp_path: Path,
) -> None:
    env = subprocess_env(own_valkey.url, database_url, tmp_path / "data")

    clean = await asyncio.to_thread(_cli_reconcile, env)
    assert clean.returncode == 0, clean.stdout + clean.stderr
    assert "journal and ledger agree" in clean.stdout

    node, sku = journaled.nodes[2], journaled.skus[4]
    await client.hincrby(stock_key(sku), f"{node}|hd", 2)
    differs = await asyncio.to_thread(_cli_reconcile, env)
    assert differs.returncode == 1, differs.stdout + differs.stderr
    assert f"{node}\t{sku}\theld\t" in differs.stdout
