"""Workers that cannot start stop ``omnistock serve`` however slowly they fail: each tells the
serve process, which stops once it has heard more failures than it has workers."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator

import pytest

from omnistock.runtime import worker_failures

REPORT = "from omnistock.runtime.worker_failures import report_to_service; report_to_service()"


@pytest.fixture
def stops(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[int]]:
    """The serve side installed in this process, as for 2 workers; yields its stop calls."""
    monkeypatch.delenv(worker_failures.SERVE_PID, raising=False)
    previous = signal.getsignal(worker_failures.SIGNAL)
    calls: list[int] = []
    worker_failures.stop_after_repeated_failures(2, lambda: calls.append(1))
    yield calls
    signal.signal(worker_failures.SIGNAL, previous)
    os.environ.pop(worker_failures.SERVE_PID, None)


def _worker(env_pid: str | None) -> None:
    """A worker process of this one reporting its failure, with ``env_pid`` as the serve pid it
    was given (None: none)."""
    env = {k: v for k, v in os.environ.items() if k != worker_failures.SERVE_PID}
    if env_pid is not None:
        env[worker_failures.SERVE_PID] = env_pid
    subprocess.run([sys.executable, "-c", REPORT], env=env, check=True, timeout=60)


def test_the_service_stops_once_every_worker_and_a_replacement_failed(stops: list[int]) -> None:
    assert os.environ[worker_failures.SERVE_PID] == str(os.getpid())
    _worker(str(os.getpid()))
    _worker(str(os.getpid()))
    assert stops == []  # both workers failed: granian replaces them
    _worker(str(os.getpid()))
    assert stops == [1]
    _worker(str(os.getpid()))
    assert stops == [1]  # stopping already


def test_a_worker_not_started_by_serve_signals_nothing(stops: list[int]) -> None:
    for env_pid in (None, str(os.getpid() + 1_000_000), ""):
        _worker(env_pid)
        _worker(env_pid)
        _worker(env_pid)
    assert stops == []
