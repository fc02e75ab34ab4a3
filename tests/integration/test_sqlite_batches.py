"""The projector's batch writes to a SQLite file: one transaction each, all of it or nothing,
and a database another writer holds is waited for only so long; a SQLite database it cannot
open a connection of its own to is written through the engine."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import msgspec
import pytest
import redis.asyncio as aioredis
from sqlalchemy.ext.asyncio import AsyncEngine

from omnistock.reservations import keys
from omnistock.reservations.events import LedgerEvent
from omnistock.store.database import create_schema, open_engine
from omnistock.store.projector import Projector, _Part, _Read, document_row
from omnistock.store.sqlite_batches import SqliteBatches, database_file
from tests.integration.journal_support import engine_fixture  # noqa: F401


@pytest.fixture
def database_url(sqlite_url: str) -> str:
    """A SQLite file only: the batches are SQLite's."""
    return sqlite_url


def _event(event_id: str) -> tuple:
    event = LedgerEvent(
        event_id, "op-1", "reserve", "n1", "s1", 0, 1, 0, 0, 5, 1, 0, 0, 0, 2, "r", 9
    )
    return msgspec.structs.astuple(event)


def _part(doc_id: str) -> dict:
    return document_row("r", doc_id, 0, b'{"st":"a","exp":1700000000000}', -1, "0-1", 5)


def _counts(path: str) -> tuple[int, int]:
    with sqlite3.connect(path) as conn:
        events = conn.execute("SELECT count(*) FROM events").fetchone()[0]
        parts = conn.execute("SELECT count(*) FROM ledger_documents").fetchone()[0]
    return events, parts


async def test_a_batch_is_written_once_and_a_repeated_event_is_not_counted(
    engine: AsyncEngine,
) -> None:
    path = database_file(engine)
    assert path is not None
    batches = SqliteBatches(path, timeout_s=2)
    try:
        assert await batches.write([_event("0:1-0/0"), _event("0:1-0/1")], [_part("r0-a")], []) == 2
        # The same batch delivered again: its events are there already.
        assert await batches.write([_event("0:1-0/0"), _event("0:1-0/1")], [_part("r0-a")], []) == 0
    finally:
        batches.close()

    assert _counts(path) == (2, 1)


async def test_a_batch_that_fails_part_way_leaves_nothing_written(engine: AsyncEngine) -> None:
    path = database_file(engine)
    assert path is not None
    broken = _part("r0-b") | {"status": None}  # a column that takes no null
    batches = SqliteBatches(path, timeout_s=2)
    try:
        with pytest.raises(sqlite3.IntegrityError):
            await batches.write([_event("0:2-0/0")], [_part("r0-a"), broken], [])

        assert _counts(path) == (0, 0)
        # The connection is usable again: the failed transaction was rolled back.
        assert await batches.write([_event("0:2-0/0")], [_part("r0-a")], []) == 1
    finally:
        batches.close()

    assert _counts(path) == (1, 1)


async def test_a_batch_waits_for_another_writer_only_up_to_its_timeout(
    engine: AsyncEngine,
) -> None:
    path = database_file(engine)
    assert path is not None
    other = sqlite3.connect(path, isolation_level=None)
    other.execute("BEGIN IMMEDIATE")  # another writer holds the database
    batches = SqliteBatches(path, timeout_s=0.2)
    try:
        with pytest.raises(sqlite3.OperationalError, match="locked"):
            await batches.write([_event("0:3-0/0")], [], [])
        other.execute("COMMIT")

        assert await batches.write([_event("0:3-0/0")], [], []) == 1
    finally:
        batches.close()
        other.close()

    assert _counts(path) == (1, 0)


def test_only_a_sqlite_database_file_gets_a_connection_of_the_projectors_own(
    tmp_path: Path,
) -> None:
    def file_of(url: str) -> str | None:
        engine = open_engine(url, timeout_s=1)
        try:
            return database_file(engine)
        finally:
            engine.sync_engine.dispose()

    assert file_of(f"sqlite+aiosqlite:///{tmp_path / 'j.db'}") == str(tmp_path / "j.db")
    assert file_of("sqlite+aiosqlite://") is None
    assert file_of("sqlite+aiosqlite:///:memory:") is None
    assert file_of(f"sqlite+aiosqlite:///{tmp_path / 'j.db'}?uri=true&mode=ro") is None
    assert file_of("postgresql+asyncpg://u:p@127.0.0.1:1/db") is None


async def test_a_database_without_a_connection_of_its_own_is_written_through_the_engine(
    tmp_path: Path, redis_url: str
) -> None:
    """A SQLite URL with options (here a file URI) keeps the engine's path: the same rows, the
    same once-only journal."""
    path = tmp_path / "uri.db"
    engine = open_engine(f"sqlite+aiosqlite:///file:{path}?uri=true", timeout_s=2)
    client = aioredis.from_url(redis_url)
    try:
        await create_schema(engine)
        projector = Projector(client, engine, cluster=False)
        assert database_file(engine) is None
        line = "op-1\treserve\tn1\ts1\t0\t1\t0\t0\t5\t1\t0\t0\t0\t2\tr0-a\t9"
        part = _Part("r", "r0-a", 0, b'{"st":"a","exp":1700000000000}', -1, "0-1", 5)
        read = _Read([(b"1-0", {b"e": line.encode()})], "0-0", "1-0", 5, True, [part])

        assert await projector._project(keys.stream_key(0), read) == 1
        assert await projector._project(keys.stream_key(0), read) == 0  # delivered again
    finally:
        await client.aclose()
        await engine.dispose()

    assert _counts(str(path)) == (1, 1)
