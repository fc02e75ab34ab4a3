"""`omnistock serve` as a user runs it: a real process on the embedded default."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import redis

READY = re.compile(r"omnistock ledger up: valkey at (redis://\S+)")


def _start(data_dir: Path) -> tuple[subprocess.Popen[str], str]:
    env = {**os.environ, "OMNISTOCK_DATA_DIR": str(data_dir)}
    env.pop("OMNISTOCK_REDIS_URL", None)
    proc = subprocess.Popen(
        [sys.executable, "-m", "omnistock.runtime.cli", "serve"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    deadline = time.monotonic() + 30
    assert proc.stdout is not None
    for line in proc.stdout:
        if match := READY.search(line):
            return proc, match.group(1)
        assert time.monotonic() < deadline, "serve did not report ready"
    raise AssertionError(f"serve exited early with {proc.wait()}")


def _valkey_pid(url: str) -> int:
    with redis.Redis.from_url(url) as client:
        return int(client.info("server")["process_id"])


def test_serve_starts_embedded_valkey_with_aof_and_stops_it_on_sigterm(tmp_path: Path) -> None:
    proc, url = _start(tmp_path)
    try:
        with redis.Redis.from_url(url) as client:
            assert client.config_get("appendonly")["appendonly"] == "yes"
            assert client.config_get("appendfsync")["appendfsync"] == "always"
        pid = _valkey_pid(url)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=20) == 0
        assert (
            not Path(f"/proc/{pid}").exists() or "zombie" in Path(f"/proc/{pid}/status").read_text()
        )
        assert (tmp_path / "valkey").is_dir()
    finally:
        proc.kill()
        proc.wait()


def test_serve_reports_a_crashed_valkey_and_exits_nonzero(tmp_path: Path) -> None:
    proc, url = _start(tmp_path)
    try:
        os.kill(_valkey_pid(url), signal.SIGKILL)
        assert proc.wait(timeout=20) == 1
        assert proc.stdout is not None
        assert "exited unexpectedly" in proc.stdout.read()
    finally:
        proc.kill()
        proc.wait()
