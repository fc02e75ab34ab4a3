"""The service's projector thread: one that fails is started again, and stopping it never
raises, so the journal does not silently stop while the service goes on answering."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

import pytest

from omnistock.runtime.settings import Settings
from omnistock.runtime.tools import ProjectorThread
from omnistock.runtime.valkey_server import EmbeddedValkey


def _journal_exists(db: Path) -> bool:
    if not db.exists():
        return False
    with sqlite3.connect(db) as conn:
        names = {row[0] for row in conn.execute("SELECT name FROM sqlite_master")}
    return "events" in names


# A failed attempt must leave nothing reporting to a closed event loop: a database driver's
# thread raising there shows as an unhandled thread exception, made an error here.
@pytest.mark.filterwarnings("error::pytest.PytestUnhandledThreadExceptionWarning")
def test_a_projector_that_cannot_start_is_started_again_once_it_can(
    tmp_path: Path, valkey_server: EmbeddedValkey
) -> None:
    db = tmp_path / "not-yet" / "omnistock.db"  # SQLite cannot create a file in a missing folder
    settings = Settings(
        data_dir=tmp_path / "data",
        redis_url=valkey_server.url,
        database_url=f"sqlite+aiosqlite:///{db}",
    )
    thread = ProjectorThread(settings)
    thread.RESTART_AFTER_S = 0.1
    thread.start()
    try:
        deadline = time.monotonic() + 30
        while thread.failures < 2:
            assert time.monotonic() < deadline, "the projector never failed"
            time.sleep(0.01)
        assert thread._thread.is_alive()
        assert not db.exists()
        db.parent.mkdir()
        deadline = time.monotonic() + 30
        while not _journal_exists(db):
            assert time.monotonic() < deadline, "the projector never started again"
            time.sleep(0.05)
    finally:
        thread.stop()
    assert not thread._thread.is_alive()


def test_stopping_a_projector_whose_loop_ended_does_not_raise(
    tmp_path: Path, valkey_server: EmbeddedValkey
) -> None:
    settings = Settings(data_dir=tmp_path / "data", redis_url=valkey_server.url)
    thread = ProjectorThread(settings)
    thread.start()
    deadline = time.monotonic() + 30
    while thread._loop is None:
        assert time.monotonic() < deadline
        time.sleep(0.01)
    thread.stop()
    thread.stop()  # again, with its loop closed
    assert not thread._thread.is_alive()
