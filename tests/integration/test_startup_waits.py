"""A worker that starts while Valkey is away waits for it instead of ending: granian stops the
whole service when one of its workers ends, so a worker that gave up at start-up (a worker
starting late while Valkey restarts, say) would take every other worker down with it."""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from pathlib import Path

import pytest
import redis
from litestar.testing import AsyncTestClient

from omnistock.api.app import create_asgi
from omnistock.runtime import bootstrap
from omnistock.runtime.bootstrap import ledger_runtime
from omnistock.runtime.settings import Settings
from omnistock.runtime.valkey_server import EmbeddedValkey
from omnistock.store.database import documents, events
from tests.api.conftest import settings_for


class _Tried(logging.Handler):
    """Sets an event once the runtime reports a failed attempt to reach a dependency."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        super().__init__(logging.WARNING)
        self.loop = loop
        self.event = asyncio.Event()

    def emit(self, record: logging.LogRecord) -> None:
        if "at start-up failed" in record.getMessage():
            self.loop.call_soon_threadsafe(self.event.set)


async def test_the_ledger_runtime_waits_for_valkey_to_come_back(tmp_path: Path) -> None:
    server = EmbeddedValkey(tmp_path / "valkey")
    server.start()
    server.kill()  # down, on a port and data directory it will come back on
    tried = _Tried(asyncio.get_running_loop())
    logging.getLogger("omnistock.runtime").addHandler(tried)
    try:

        async def come_back() -> None:
            await tried.event.wait()
            await asyncio.to_thread(server.start, 30)

        returning = asyncio.create_task(come_back())
        settings = Settings(data_dir=tmp_path / "data", redis_url=server.url)
        async with ledger_runtime(settings) as runtime:
            assert returning.done() and tried.event.is_set()
            position = await runtime.ledger.set_stock("after", "n1", "sku-1", 3)
            assert position.on_hand == 3
    finally:
        logging.getLogger("omnistock.runtime").removeHandler(tried)
        server.stop()


async def test_it_gives_up_at_its_deadline_and_says_why(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    server = EmbeddedValkey(tmp_path / "valkey")
    server.start()
    server.kill()
    settings = Settings(data_dir=tmp_path / "data", redis_url=server.url)
    opening = bootstrap.when_reachable

    async def briefly(what, open_, **options):
        return await opening(what, open_, **(options | {"timeout_s": 0.5}))

    monkeypatch.setattr(bootstrap, "when_reachable", briefly)
    with pytest.raises(bootstrap.UNREACHABLE):
        async with ledger_runtime(settings):
            pass


async def test_a_worker_with_a_bad_redis_url_still_fails_to_start(tmp_path: Path) -> None:
    """Building the services in the background must not hide a misconfiguration: only an
    unreachable dependency is waited for; anything else ends the worker at start-up."""
    settings = settings_for(tmp_path / "data", "nosuchscheme://127.0.0.1:1")
    with pytest.raises(BaseException) as caught:
        async with AsyncTestClient(app=create_asgi(settings)):
            pass
    assert _raised(caught.value, ValueError, "scheme"), caught.value


@pytest.mark.parametrize("password", ["wrong-secret", None], ids=["wrong", "missing"])
async def test_a_worker_whose_password_is_refused_fails_to_start(
    tmp_path: Path, password: str | None
) -> None:
    """A refused password is a misconfiguration, not an outage: waiting cannot mend it, so the
    worker fails at start-up (and ``serve`` with it) instead of answering 503 for ever."""
    server = EmbeddedValkey(tmp_path / "valkey")
    server.start()
    server.client().config_set("requirepass", "right-secret")
    try:
        credentials = f":{password}@" if password else ""
        url = f"redis://{credentials}{server.host}:{server.port}/0"
        with pytest.raises(BaseException) as caught:
            async with asyncio.timeout(30):
                async with AsyncTestClient(app=create_asgi(settings_for(tmp_path / "data", url))):
                    pass
        assert _raised(caught.value, redis.exceptions.AuthenticationError, ""), caught.value
    finally:
        redis.Redis(host=server.host, port=server.port, password="right-secret").config_set(
            "requirepass", ""
        )
        server.stop()


def _raised(exc: BaseException, kind: type, text: str) -> bool:
    """Whether ``exc``, or an exception it groups (the test client's task group), is a
    ``kind`` that mentions ``text``."""
    if isinstance(exc, BaseExceptionGroup):
        return any(_raised(inner, kind, text) for inner in exc.exceptions)
    return isinstance(exc, kind) and text in str(exc)


async def test_preparing_the_database_waits_while_another_process_locks_it(
    tmp_path: Path,
) -> None:
    """``serve`` prepares the schema before its workers start; a database that is briefly
    unavailable then (here: write-locked, as a backup or a migration would) is waited for."""
    path = (tmp_path / "omnistock.db").resolve()
    locker = sqlite3.connect(path, isolation_level=None)
    locker.execute("BEGIN EXCLUSIVE")
    tried = _Tried(asyncio.get_running_loop())
    logging.getLogger("omnistock.runtime").addHandler(tried)
    try:

        async def unlock() -> None:
            await tried.event.wait()
            locker.execute("ROLLBACK")

        unlocking = asyncio.create_task(unlock())
        settings = settings_for(
            tmp_path / "data",
            "redis://unused",
            database_url=f"sqlite+aiosqlite:///{path}",
            db_timeout_s=0.2,
        )
        await bootstrap.prepare_database(settings)
        assert unlocking.done() and tried.event.is_set()
        tables = {row[0] for row in locker.execute("SELECT name FROM sqlite_master")}
        assert {"nodes", events.name, documents.name} <= tables, tables
    finally:
        logging.getLogger("omnistock.runtime").removeHandler(tried)
        locker.close()
