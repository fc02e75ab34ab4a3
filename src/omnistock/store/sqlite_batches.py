"""The projector's writes to a SQLite database file: one batch, one call in a thread.

Through SQLAlchemy's async driver every step of a transaction (the connection, each statement,
its cursor, the commit) is a round trip between the event loop and the driver's thread, and
under load those round trips cost the projector more CPU per batch than writing the rows. Here
a batch (its events, its parts, the commit) is a single call on a connection of the
projector's own, made in a worker thread, with the rows as they are (plain tuples and dicts:
SQLAlchemy's executemany would build every row's parameters in Python first).

The connection is one more of the database's connections, like those of the engine's pool: WAL
lets the service's readers go on while it writes, and a writer holding the lock is waited for
up to the database timeout.
"""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from collections.abc import Sequence
from typing import Any

import msgspec
from sqlalchemy.ext.asyncio import AsyncEngine

from omnistock.reservations.events import LedgerEvent
from omnistock.store.database import documents, events

# A journal row holds an event's fields in LedgerEvent's order, which are the column names.
EVENT_COLUMNS = tuple(f.name for f in msgspec.structs.fields(LedgerEvent))
INSERT_EVENTS = (
    f"INSERT OR IGNORE INTO {events.name} ({', '.join(EVENT_COLUMNS)}) "
    f"VALUES ({', '.join('?' * len(EVENT_COLUMNS))})"
)

# The projection row of a part (one key per column), upserted unless the row holds a newer read.
DOCUMENT_COLUMNS = tuple(c.name for c in documents.columns)
UPSERT_PARTS = (
    f"INSERT INTO {documents.name} ({', '.join(DOCUMENT_COLUMNS)}) "
    f"VALUES ({', '.join(':' + c for c in DOCUMENT_COLUMNS)}) "
    "ON CONFLICT (doc_id, part) DO UPDATE SET "
    + ", ".join(f"{c} = excluded.{c}" for c in DOCUMENT_COLUMNS[2:])
    + f" WHERE {documents.name}.seen <= excluded.seen"
)
# A part whose key is gone, unless the row holds a newer read.
DELETE_GONE = f"DELETE FROM {documents.name} WHERE doc_id = :d AND part = :p AND seen <= :s"


def database_file(engine: AsyncEngine) -> str | None:
    """The file of a SQLite engine's database; None for any other database, for one in memory
    (only the engine's own connections see it) and for a URL with options."""
    url = engine.url
    if engine.dialect.name != "sqlite" or url.query:
        return None
    path = url.database
    if not path or path == ":memory:" or path.startswith("file:"):
        return None
    return path


class SqliteBatches:
    """Writes the projector's batches to one SQLite database file."""

    def __init__(self, path: str, *, timeout_s: float) -> None:
        self._path = path
        self._timeout_s = timeout_s
        self._conn: sqlite3.Connection | None = None
        # One batch at a time: a projector awaits each write, and one whose task was cancelled
        # leaves its write running in the thread, which the next write waits for.
        self._lock = threading.Lock()
        self._closing = False

    async def write(
        self,
        rows: Sequence[tuple[Any, ...]],
        present: Sequence[dict[str, Any]],
        gone: Sequence[dict[str, Any]],
    ) -> int:
        """Journals ``rows`` (events, a duplicate event id is skipped), upserts ``present`` and
        deletes ``gone`` parts, in one transaction; returns how many events were new."""
        self._closing = False
        return await asyncio.to_thread(self._write, rows, present, gone)

    def _write(
        self,
        rows: Sequence[tuple[Any, ...]],
        present: Sequence[dict[str, Any]],
        gone: Sequence[dict[str, Any]],
    ) -> int:
        with self._lock:
            conn = self._connection()
            # IMMEDIATE takes the write lock now (waiting for another writer up to the
            # timeout) rather than at the first insert.
            conn.execute("BEGIN IMMEDIATE")
            try:
                written = conn.executemany(INSERT_EVENTS, rows).rowcount if rows else 0
                if present:
                    conn.executemany(UPSERT_PARTS, present)
                if gone:
                    conn.executemany(DELETE_GONE, gone)
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise
            finally:
                if self._closing:
                    self._close()
            return max(0, written)

    def _connection(self) -> sqlite3.Connection:
        if self._conn is None:
            # Autocommit mode: the transaction is the explicit BEGIN ... COMMIT above.
            self._conn = sqlite3.connect(
                self._path, timeout=self._timeout_s, isolation_level=None, check_same_thread=False
            )
        return self._conn

    def close(self) -> None:
        """Closes the connection now or, while a write still runs in its thread (its projector
        was cancelled meanwhile), as soon as that write ends. A later write opens it again."""
        self._closing = True
        if self._lock.acquire(blocking=False):
            try:
                self._close()
            finally:
                self._lock.release()

    def _close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None
