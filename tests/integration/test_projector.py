"""The projector journals every ledger event exactly once, on SQLite and on PostgreSQL: under a
concurrent workload, and when its process is killed mid-stream and started again.

Each test has a Valkey of its own, so the stream holds its events alone and the journal can be
compared with it entry by entry. The throughput test prints the projector's rate and its lag
under load (run with ``-s`` to see them).
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import subprocess
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aioredis
from sqlalchemy.ext.asyncio import AsyncEngine

from omnistock.reservations import keys
from omnistock.reservations.connect import LedgerConnection
from omnistock.runtime.valkey_server import EmbeddedValkey
from omnistock.store import projector as projector_module
from omnistock.store.database import open_engine
from omnistock.store.projector import GROUP, Projector
from tests.integration.journal_support import (
    PYTHON,
    Workload,
    assert_exactly_once,
    engine_fixture,  # noqa: F401
    journal_count,
    journal_rows,
    ledger_conn_fixture,  # noqa: F401
    own_valkey_fixture,  # noqa: F401
    stop_task,
    stream_event_count,
    stream_events,
    subprocess_env,
    wait_journaled,
    wait_until,
)

STREAM = keys.stream_key(0)


@pytest.fixture
async def client(own_valkey: EmbeddedValkey) -> AsyncIterator[Any]:
    """A client of the test's Valkey for the projector and the checks (not the ledger's)."""
    c = aioredis.from_url(own_valkey.url, socket_timeout=10)
    try:
        yield c
    finally:
        await c.aclose()


@contextlib.asynccontextmanager
async def running(projector: Projector) -> AsyncIterator[asyncio.Task]:
    task = asyncio.create_task(projector.run())
    try:
        yield task
    finally:
        await stop_task(task)


async def test_concurrent_workload_is_journaled_exactly_once(
    ledger_conn: LedgerConnection, engine: AsyncEngine, client: Any
) -> None:
    work = Workload.make(ledger_conn.ledger)
    await work.seed()
    projector = Projector(client, engine, cluster=False, block_ms=100)
    lags: list[int] = []
    stop = asyncio.Event()

    async def sample_lag() -> None:
        while not stop.is_set():
            lags.append(await projector.lag())
            await asyncio.sleep(0.02)

    async with running(projector):
        sampler = asyncio.create_task(sample_lag())
        # Two workloads at once: more tasks, the same positions.
        await asyncio.gather(work.run(tasks=8, per_task=40), work.run(tasks=4, per_task=40))
        total = await wait_journaled(engine, client)
        stop.set()
        await sampler
        await wait_until(
            lambda: _zero(projector.lag()), timeout_s=10, what="the projector's lag to reach 0"
        )

    assert work.ops > 300
    stream = await stream_events(client)
    assert len(stream) == total
    assert_exactly_once(stream, await journal_rows(engine))
    assert projector.delivered >= total
    assert {e["kind"] for e in stream.values()} >= {"set", "receipt", "sale", "reserve"}
    assert {e["kind"] for e in stream.values()} >= {"commit", "release", "return"}
    print(
        f"\n[projector] {total} events, lag under load max {max(lags)} mean "
        f"{sum(lags) / len(lags):.1f} stream entries ({len(lags)} samples)"
    )


async def _zero(lag: Any) -> bool:
    return await lag == 0


async def test_projected_counts_the_events_the_projector_wrote(
    ledger_conn: LedgerConnection,
    engine: AsyncEngine,
    client: Any,
    request: pytest.FixtureRequest,
) -> None:
    """``Projector.projected`` feeds the ``journaled`` metric and the CLI's closing line."""
    work = Workload.make(ledger_conn.ledger)
    await work.seed()
    await work.run(tasks=4, per_task=10)
    projector = Projector(client, engine, cluster=False, block_ms=100)
    async with running(projector):
        total = await wait_journaled(engine, client)
    assert projector.projected == total


async def test_under_steady_writes_the_projector_journals_in_batches(
    ledger_conn: LedgerConnection, engine: AsyncEngine, client: Any
) -> None:
    """A write arriving while the projector idles is read at once; writes that keep coming are
    gathered for ``linger_ms`` and journaled a batch at a time, not one read and transaction
    each."""
    ledger = ledger_conn.ledger
    projector = Projector(client, engine, cluster=False, block_ms=100, linger_ms=300)
    writes = 100
    async with running(projector):
        await ledger.set_stock("first", "n1", "sku-batch", 1)
        await wait_until(
            lambda: _equals(journal_count(engine), 1), timeout_s=10, what="the first event"
        )
        assert projector.batches == 1
        for i in range(writes):  # one stream entry each: every call waits for its answer
            await ledger.set_stock(f"steady-{i}", "n1", "sku-batch", i + 2)
        total = await wait_journaled(engine, client)
    assert total == writes + 1
    assert_exactly_once(await stream_events(client), await journal_rows(engine))
    assert projector.batches <= writes // 10, projector.batches
    print(f"\n[projector] {writes} steady writes journaled in {projector.batches - 1} batches")


async def _equals(count: Any, expected: int) -> bool:
    return await count == expected


async def test_projector_throughput_and_lag_under_load(
    ledger_conn: LedgerConnection, engine: AsyncEngine, client: Any, database_url: str
) -> None:
    """The rate at which a projector drains a backlog (the stream filled while none ran), then
    its lag while a workload runs alongside it."""
    work = Workload.make(ledger_conn.ledger, nodes=4, skus=20)
    await work.seed()
    started = time.monotonic()
    await work.run(tasks=16, per_task=500)
    written_s = time.monotonic() - started
    backlog = await stream_event_count(client)
    entries = await client.xlen(STREAM)

    projector = Projector(client, engine, cluster=False, block_ms=100)
    async with running(projector):
        started = time.monotonic()
        await wait_journaled(engine, client, timeout_s=120, every_s=0.01)
        drained_s = time.monotonic() - started

        stop = asyncio.Event()
        load = asyncio.create_task(work.run(tasks=16, stop=stop))
        lags = []
        before_ops = work.ops
        started = time.monotonic()
        while time.monotonic() - started < 1.5:
            lags.append(await projector.lag())
            await asyncio.sleep(0.05)
        stop.set()
        await load
        load_s = time.monotonic() - started
        total = await wait_journaled(engine, client, timeout_s=60)

    assert_exactly_once(await stream_events(client), await journal_rows(engine))
    kind = database_url.split(":", 1)[0]
    print(
        f"\n[projector] {kind}: backlog of {backlog} events in {entries} stream entries "
        f"(ledger wrote them at {backlog / written_s:,.0f} events/s) journaled in "
        f"{drained_s:.2f} s: {backlog / drained_s:,.0f} events/s"
        f"\n[projector] {kind}: under load ({(work.ops - before_ops) / load_s:,.0f} ops/s for "
        f"{load_s:.1f} s, {total - backlog} events): lag max {max(lags)}, mean "
        f"{sum(lags) / len(lags):.1f} stream entries (~{backlog / entries:.0f} events each)"
    )
    assert backlog > 10_000


# -- a projector process killed mid-stream ----------------------------------------------------


def _start_worker(env: dict[str, str], redis_url: str, database_url: str) -> subprocess.Popen:
    proc = subprocess.Popen(
        [PYTHON, "-m", "tests.integration.projector_worker", redis_url, database_url, "test-1"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()
    assert line.strip() == "ready", f"projector worker did not start: {line}{proc.stdout.read()}"
    return proc


async def test_projector_killed_mid_stream_and_restarted_journals_every_event_once(
    own_valkey: EmbeddedValkey,
    ledger_conn: LedgerConnection,
    engine: AsyncEngine,
    client: Any,
    database_url: str,
    tmp_path: Path,
) -> None:
    env = subprocess_env(own_valkey.url, database_url, tmp_path / "data")
    work = Workload.make(ledger_conn.ledger)
    await work.seed()
    stop = asyncio.Event()
    load = asyncio.create_task(work.run(tasks=6, stop=stop))
    left_pending = []
    try:
        for _round in range(3):
            proc = await asyncio.to_thread(_start_worker, env, own_valkey.url, database_url)
            try:
                start = await journal_count(engine)

                async def progressed(start: int = start) -> bool:
                    return await journal_count(engine) > start + 200

                await wait_until(progressed, timeout_s=30, what="the worker to journal events")
            finally:
                proc.send_signal(signal.SIGKILL)
                await asyncio.to_thread(proc.wait)
                if proc.stdout is not None:
                    proc.stdout.close()
            summary = await client.xpending(STREAM, GROUP)
            left_pending.append(int(summary["pending"]))
            await asyncio.sleep(0.2)  # the workload goes on while no projector runs
        stop.set()
        await load
        proc = await asyncio.to_thread(_start_worker, env, own_valkey.url, database_url)
        try:
            await wait_journaled(engine, client, timeout_s=60)

            async def acknowledged() -> bool:  # the last batch is journaled before its XACK
                return (await client.xpending(STREAM, GROUP))["pending"] == 0

            await wait_until(acknowledged, timeout_s=10, what="every entry acknowledged")
        finally:
            proc.send_signal(signal.SIGTERM)
            out, _ = await asyncio.to_thread(proc.communicate, timeout=30)
        assert proc.returncode == 0, out
    finally:
        stop.set()
        await load

    assert_exactly_once(await stream_events(client), await journal_rows(engine))
    assert (await client.xpending(STREAM, GROUP))["pending"] == 0
    print(f"\n[projector] SIGKILLed 3 times, leaving {left_pending} entries pending; journal exact")


async def test_a_running_projector_ends_on_one_cancel(
    ledger_conn: LedgerConnection, client: Any, sqlite_url: str
) -> None:
    """On Python 3.11, asyncio.wait_for, which redis-py wraps each socket write in, returns
    normally when a cancellation arrives as the write completes; a projector that loops on then
    never ends, and the service's shutdown (one cancel, then waiting) hangs."""
    engine = open_engine(sqlite_url, timeout_s=10)
    try:
        from omnistock.store.database import create_schema

        await create_schema(engine)
        # The ledger's client, as the service's projector uses it (socket timeout set).
        projector = Projector(ledger_conn.client, engine, cluster=False, block_ms=20)
        missed = 0
        for i in range(120):
            task = asyncio.create_task(projector.run())
            await asyncio.sleep(0.002 * (i % 15))
            task.cancel()
            done, _ = await asyncio.wait([task], timeout=0.3)
            if not done:
                missed += 1
            await stop_task(task)
        assert missed == 0, f"{missed} of 120 cancellations were lost"
    finally:
        await engine.dispose()


async def test_entries_a_killed_consumer_left_pending_are_journaled_by_a_running_projector(
    ledger_conn: LedgerConnection,
    client: Any,
    sqlite_url: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(projector_module, "CLAIM_IDLE_MS", 500)
    engine = open_engine(sqlite_url, timeout_s=10)
    try:
        from omnistock.store.database import create_schema

        await create_schema(engine)
        work = Workload.make(ledger_conn.ledger)
        projector = Projector(client, engine, cluster=False, block_ms=100)
        await projector.ensure_groups()
        await work.seed()
        # What a projector killed between reading and acknowledging leaves behind.
        dead = await client.xreadgroup(GROUP, "host:99999", {STREAM: ">"}, count=5)
        assert dead and dead[0][1]
        async with running(projector):  # its start-up claim finds them idle < CLAIM_IDLE_MS
            await work.run(tasks=4, per_task=20)
            target = await stream_event_count(client)

            async def complete() -> bool:
                return await journal_count(engine) >= target

            await wait_until(
                complete, timeout_s=3, what="the dead consumer's entries (idle 500 ms) journaled"
            )
    finally:
        await engine.dispose()
