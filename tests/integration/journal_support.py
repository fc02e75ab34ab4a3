"""Helpers for the journal tests: a Valkey of the test's own, a ledger workload from concurrent
tasks, and the two sides to compare (the event stream as the ledger wrote it, the journal).

Journal tests need a Valkey of their own: the session's server is shared by every test, whose
events all go to its one stream, and reconciliation compares everything the ledger holds.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import sys
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from omnistock.domain.errors import DomainError
from omnistock.domain.stock import Adjustment, Line, Reason
from omnistock.reservations import keys
from omnistock.reservations.connect import LedgerConnection, open_ledger
from omnistock.reservations.events import parse_entry
from omnistock.reservations.redis_ledger import RedisLedger
from omnistock.runtime.valkey_server import EmbeddedValkey
from omnistock.store.database import events, open_engine

LONG_TTL_MS = 10 * 60 * 1000
JOURNAL_FIELDS = (
    "event_id",
    "op_id",
    "kind",
    "node_id",
    "sku",
    "d_on_hand",
    "d_reserved",
    "d_held",
    "d_inbound",
    "on_hand",
    "reserved",
    "held",
    "safety_stock",
    "inbound",
    "version",
    "ref",
    "at_ms",
)


@pytest.fixture(name="own_valkey")
def own_valkey_fixture(tmp_path: Path) -> Iterator[EmbeddedValkey]:
    """A Valkey for this test alone (appendfsync everysec: these tests are about the journal)."""
    server = EmbeddedValkey(tmp_path / "valkey", durability="fast")
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(name="ledger_conn")
async def ledger_conn_fixture(own_valkey: EmbeddedValkey) -> AsyncIterator[LedgerConnection]:
    conn = await open_ledger(own_valkey.url, durability="fast", timeout_s=10)
    try:
        yield conn
    finally:
        await conn.aclose()


@pytest.fixture(name="engine")
async def engine_fixture(database_url: str) -> AsyncIterator[AsyncEngine]:
    """The test's database (SQLite or PostgreSQL), migrated to head."""
    from omnistock.store.database import create_schema

    engine = open_engine(database_url, timeout_s=10)
    try:
        await create_schema(engine)
        yield engine
    finally:
        await engine.dispose()


# -- the two sides ----------------------------------------------------------------------------


def _stream_event_row(partition: int, e: Any) -> dict[str, Any]:
    row = {f: getattr(e, f) for f in JOURNAL_FIELDS}
    row["event_id"] = f"{partition}:{e.event_id}"
    return row


async def stream_events(client: Any, *, cluster: bool = False) -> dict[str, dict[str, Any]]:
    """Every event in the ledger's streams, by the event id the projector journals it under."""
    out: dict[str, dict[str, Any]] = {}
    for partition, stream in enumerate(keys.event_streams(cluster)):
        start = "-"
        while True:
            page = await client.xrange(stream, min=start, count=5000)
            for entry_id, fields in page:
                for e in parse_entry(entry_id, fields):
                    row = _stream_event_row(partition, e)
                    out[row["event_id"]] = row
            if len(page) < 5000:
                break
            last = page[-1][0]
            start = "(" + (last.decode() if isinstance(last, bytes) else last)
    return out


async def journal_rows(engine: AsyncEngine) -> list[dict[str, Any]]:
    """Every journal row, in journal order."""
    async with engine.connect() as conn:
        rows = await conn.execute(
            sa.select(*(events.c[f] for f in JOURNAL_FIELDS)).order_by(events.c.seq)
        )
        return [dict(r._mapping) for r in rows]


async def journal_count(engine: AsyncEngine) -> int:
    async with engine.connect() as conn:
        return int((await conn.execute(sa.select(sa.func.count()).select_from(events))).scalar())


async def stream_event_count(client: Any) -> int:
    return len(await stream_events(client))


def assert_exactly_once(stream: dict[str, dict[str, Any]], journal: list[dict[str, Any]]) -> None:
    """Every event of the stream is in the journal once, as the stream has it, and nothing
    else is."""
    ids = [row["event_id"] for row in journal]
    duplicates = {i for i in ids if ids.count(i) > 1} if len(set(ids)) != len(ids) else set()
    assert not duplicates, f"journaled more than once: {sorted(duplicates)[:10]}"
    missing = stream.keys() - set(ids)
    assert not missing, f"{len(missing)} events never journaled, e.g. {sorted(missing)[:5]}"
    extra = set(ids) - stream.keys()
    assert not extra, f"journal events the stream does not have: {sorted(extra)[:5]}"
    assert len(journal) == len(stream)
    for row in journal:
        assert row == stream[row["event_id"]]


async def wait_until(
    check: Callable[[], Awaitable[bool]], *, timeout_s: float, what: str, every_s: float = 0.05
) -> None:
    """Polls ``check`` until it holds; fails with ``what`` at the deadline."""
    deadline = time.monotonic() + timeout_s
    while not await check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")
        await asyncio.sleep(every_s)


async def wait_journaled(
    engine: AsyncEngine, client: Any, *, timeout_s: float = 30, every_s: float = 0.05
) -> int:
    """Waits until the journal holds as many events as the stream; returns that count."""
    target = await stream_event_count(client)

    async def done() -> bool:
        return await journal_count(engine) >= target

    await wait_until(
        done, timeout_s=timeout_s, what=f"{target} events in the journal", every_s=every_s
    )
    return target


async def stop_task(task: asyncio.Task, *, timeout_s: float = 10.0) -> None:
    """Cancels ``task`` and waits for it to end, cancelling again while it runs on.

    One ``cancel()`` is not always enough on Python 3.11: ``asyncio.wait_for`` (which redis-py
    wraps every socket write in when a socket timeout is set) returns normally, swallowing the
    cancellation, when it arrives just as the write completes."""
    deadline = time.monotonic() + timeout_s
    while not task.done():
        task.cancel()
        await asyncio.wait([task], timeout=0.05)
        if time.monotonic() > deadline:
            raise AssertionError(f"task {task.get_name()} did not stop within {timeout_s} s")
    if not task.cancelled() and task.exception() is not None:
        raise task.exception()  # type: ignore[misc]


# -- a workload -------------------------------------------------------------------------------


@dataclass
class Workload:
    """Stock operations of every kind from concurrent tasks, on a few nodes and SKUs."""

    ledger: RedisLedger
    nodes: list[str]
    skus: list[str]
    uid: str = field(default_factory=lambda: uuid.uuid4().hex[:8])
    ops: int = 0
    refused: int = 0
    _serial: Iterator[int] = field(default_factory=itertools.count)

    @classmethod
    def make(cls, ledger: RedisLedger, *, nodes: int = 3, skus: int = 6) -> Workload:
        uid = uuid.uuid4().hex[:8]
        return cls(
            ledger,
            [f"n{i}-{uid}" for i in range(nodes)],
            [f"s{i}-{uid}" for i in range(skus)],
            uid,
        )

    def op(self, label: str) -> str:
        return f"{label}-{self.uid}-{next(self._serial)}"

    async def seed(self, on_hand: int = 1000) -> None:
        for node in self.nodes:
            for sku in self.skus:
                await self.ledger.set_stock(self.op("seed"), node, sku, on_hand)

    async def one(self, task: int, k: int) -> None:
        """One operation (two lines where it takes lines), chosen by ``k``."""
        n, s = self.nodes, self.skus
        node, other = n[(task + k) % len(n)], n[(task + k + 1) % len(n)]
        sku, sku2 = s[(task * 7 + k) % len(s)], s[(task * 7 + k + 3) % len(s)]
        ledger = self.ledger
        try:
            match k % 5:
                case 0:
                    await ledger.set_stock(
                        self.op("set"), node, sku, 900 + k % 50, safety_stock=k % 3
                    )
                case 1:
                    await ledger.adjust(
                        self.op("adj"),
                        [
                            Adjustment(node, sku, 5, Reason.RECEIPT, f"po-{task}-{k}"),
                            Adjustment(other, sku2, -2, Reason.SALE),
                        ],
                    )
                case 2 | 3:
                    r = await ledger.reserve(
                        self.op("res"),
                        [Line(node, sku, 2), Line(other, sku2, 1)],
                        ttl_ms=LONG_TTL_MS,
                        order_ref=f"order-{task}-{k}",
                    )
                    if k % 5 == 2:
                        await ledger.commit(self.op("commit"), r.reservation_id)
                    else:
                        await ledger.release(self.op("release"), r.reservation_id)
                case _:
                    await ledger.adjust(
                        self.op("ret"), [Adjustment(node, sku2, 1, Reason.RETURN, "rma")]
                    )
            self.ops += 1
        except DomainError:
            self.refused += 1

    async def run(
        self, *, tasks: int = 8, per_task: int | None = None, stop: asyncio.Event | None = None
    ) -> None:
        """``tasks`` concurrent tasks doing ``per_task`` operations each, or until ``stop``."""

        async def worker(task: int) -> None:
            for k in itertools.count():
                if (per_task is not None and k >= per_task) or (stop and stop.is_set()):
                    return
                await self.one(task, k)
                if stop is not None and k % 20 == 0:
                    await asyncio.sleep(0)

        await asyncio.gather(*(worker(t) for t in range(tasks)))


# -- a projector process ----------------------------------------------------------------------


def subprocess_env(redis_url: str, database_url: str, data_dir: Path) -> dict[str, str]:
    """The environment of an ``omnistock`` tool run against the test's Valkey and database."""
    src = str(Path(__file__).resolve().parents[2] / "src")
    root = str(Path(__file__).resolve().parents[2])
    env = {
        **os.environ,
        "OMNISTOCK_REDIS_URL": redis_url,
        "OMNISTOCK_DATABASE_URL": database_url,
        "OMNISTOCK_DATA_DIR": str(data_dir),
        "OMNISTOCK_DURABILITY": "fast",
        "PYTHONPATH": os.pathsep.join([src, root, os.environ.get("PYTHONPATH", "")]),
    }
    env.pop("OMNISTOCK_REDIS_CLUSTER", None)
    return env


PYTHON = sys.executable
