"""`omnistock serve` as a user runs it: a real process on the embedded default."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import redis

from omnistock.runtime.valkey_server import EmbeddedValkey, free_port
from tests.integration.process_support import gone

READY = re.compile(r"omnistock listening on \S+ .*valkey at (redis://\S+)")


def _serve_command(port: int, workers: int) -> list[str]:
    return [
        sys.executable,
        *("-m", "omnistock.runtime.cli", "serve"),
        *("--port", str(port), "--workers", str(workers)),
    ]


def _serve_env(data_dir: Path, redis_url: str | None = None) -> dict[str, str]:
    env = {**os.environ, "OMNISTOCK_DATA_DIR": str(data_dir)}
    env.pop("OMNISTOCK_REDIS_URL", None)
    if redis_url is not None:
        env["OMNISTOCK_REDIS_URL"] = redis_url
    return env


def _start(
    data_dir: Path, workers: int = 1, redis_url: str | None = None
) -> tuple[subprocess.Popen[str], str, int]:
    """Starts ``serve`` (on the embedded default unless given a ``redis_url``) and returns
    once it reported its Valkey and answers /readyz: the process, its Valkey's URL as it
    printed it and its port."""
    port = free_port()
    proc = subprocess.Popen(
        _serve_command(port, workers),
        env=_serve_env(data_dir, redis_url),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    deadline = time.monotonic() + 30
    assert proc.stdout is not None
    for line in proc.stdout:
        if match := READY.search(line):
            _wait_ready(port, deadline)
            return proc, match.group(1), port
        assert time.monotonic() < deadline, "serve did not report ready"
    raise AssertionError(f"serve exited early with {proc.wait()}")


def _wait_ready(port: int, deadline: float) -> None:
    while True:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        assert time.monotonic() < deadline, "serve did not answer /readyz"
        time.sleep(0.1)


def _valkey_pid(url: str) -> int:
    with redis.Redis.from_url(url) as client:
        return int(client.info("server")["process_id"])


def test_serve_starts_embedded_valkey_with_aof_and_stops_it_on_sigterm(tmp_path: Path) -> None:
    proc, url, _port = _start(tmp_path)
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
    proc, url, _port = _start(tmp_path)
    try:
        os.kill(_valkey_pid(url), signal.SIGKILL)
        assert proc.wait(timeout=20) == 1
        assert proc.stdout is not None
        assert "exited unexpectedly" in proc.stdout.read()
    finally:
        proc.kill()
        proc.wait()


def test_serve_with_a_password_redis_refuses_stops_at_once_and_says_why(tmp_path: Path) -> None:
    """A wrong password is a misconfiguration: ``serve`` checks it before its workers start and
    stops with status 1 and the reason, where workers failing one after the other could keep
    granian respawning them for many seconds. The password itself is never printed."""
    server = EmbeddedValkey(tmp_path / "valkey")
    server.start()
    server.client().config_set("requirepass", "right-secret")
    try:
        url = f"redis://:wrong-secret@{server.host}:{server.port}/0"
        started = time.monotonic()
        done = subprocess.run(
            _serve_command(free_port(), 2),
            env=_serve_env(tmp_path / "data", url),
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert done.returncode == 1, done.stdout + done.stderr
        assert time.monotonic() - started < 20
        assert "cannot be used: AuthenticationError" in done.stderr, done.stderr
        assert f"redis://:***@{server.host}:{server.port}/0" in done.stderr, done.stderr
        assert "wrong-secret" not in done.stdout + done.stderr
        assert "Spawning worker" not in done.stdout + done.stderr

        proc, printed_url, _port = _start(
            tmp_path / "data", redis_url=url.replace("wrong-secret", "right-secret")
        )
        try:
            assert printed_url == f"redis://:***@{server.host}:{server.port}/0"
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=20)
    finally:
        redis.Redis(host=server.host, port=server.port, password="right-secret").config_set(
            "requirepass", ""
        )
        server.stop()


def test_serve_on_a_redis_that_evicts_when_full_stops_at_once_and_says_why(tmp_path: Path) -> None:
    """An evicting maxmemory-policy would let a full server drop reservations and operation ids:
    ``serve`` refuses it before its workers start."""
    server = EmbeddedValkey(tmp_path / "valkey", extra_config={"maxmemory-policy": "allkeys-lru"})
    server.start()
    try:
        done = subprocess.run(
            _serve_command(free_port(), 1),
            env=_serve_env(tmp_path / "data", server.url),
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert done.returncode == 1, done.stdout + done.stderr
        assert "cannot be used: EvictionError" in done.stderr, done.stderr
        assert "maxmemory-policy noeviction" in done.stderr, done.stderr
        assert "Spawning worker" not in done.stdout + done.stderr
    finally:
        server.stop()


def test_serve_with_a_database_url_it_cannot_use_stops_at_once_and_says_why(
    tmp_path: Path,
) -> None:
    env = _serve_env(tmp_path / "data") | {"OMNISTOCK_DATABASE_URL": "nosuchdialect://host/db"}
    done = subprocess.run(
        _serve_command(free_port(), 1), env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 1, done.stdout + done.stderr
    assert "the database cannot be used: NoSuchModuleError" in done.stderr, done.stderr
    assert "Traceback" not in done.stderr
    assert not (tmp_path / "data" / "valkey").exists()  # stopped before starting anything


def test_serve_workers_are_fresh_interpreters_not_forks_of_its_threads(tmp_path: Path) -> None:
    """``serve`` runs threads beside granian (the projector, the embedded Valkey's watcher). A
    worker forked from it could inherit a lock one of them held at that moment and wait on it
    for ever, so workers are spawned: a new interpreter each, sharing no thread state."""
    proc, url, _port = _start(tmp_path)
    try:
        valkey = _valkey_pid(url)
        children = [
            int(pid)
            for pid in Path(f"/proc/{proc.pid}/task/{proc.pid}/children").read_text().split()
        ]
        commands = [_command_line(pid) for pid in children if pid != valkey]
        # Spawning also starts multiprocessing's resource tracker beside the workers.
        workers = [c for c in commands if "multiprocessing.resource_tracker" not in c]
        assert workers, commands
        for command in workers:
            assert "multiprocessing.spawn" in command, command
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0


def test_serve_replaces_a_worker_that_dies_and_goes_on_serving(tmp_path: Path) -> None:
    """A worker killed from outside (the kernel's OOM killer, a crash in native code) is
    replaced; the service goes on, where granian by default stops altogether."""
    proc, url, port = _start(tmp_path, workers=2)
    try:
        valkey = _valkey_pid(url)
        first = _workers(proc.pid, valkey)
        assert len(first) == 2, first
        os.kill(first[0], signal.SIGKILL)
        deadline = time.monotonic() + 30
        while True:
            assert proc.poll() is None, "serve stopped when one of its workers died"
            now = _workers(proc.pid, valkey)
            if len(now) == 2 and first[0] not in now:
                break
            assert time.monotonic() < deadline, f"the dead worker was not replaced: {now}"
            time.sleep(0.1)
        _wait_ready(port, time.monotonic() + 30)
        assert proc.poll() is None
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0


def test_serve_killed_with_sigkill_leaves_nothing_running_and_starts_again(
    tmp_path: Path,
) -> None:
    """``kill -9`` of serve (or the OOM killer choosing it) gives it no chance to stop its
    children. Its Valkey, left running, would share the AOF of the next serve on the same data
    directory, and its workers would go on answering from the old listening socket: both
    stop by themselves, and the next serve starts on the same data."""
    proc, url, _port = _start(tmp_path, workers=2)
    valkey = _valkey_pid(url)
    with redis.Redis.from_url(url) as client:
        client.set("written-before-the-kill", "1")
    left = [valkey, *_workers(proc.pid, valkey)]
    assert len(left) == 3, left
    proc.kill()
    proc.wait()
    deadline = time.monotonic() + 20
    while left := [pid for pid in left if not gone(pid)]:
        assert time.monotonic() < deadline, f"still running after serve was killed: {left}"
        time.sleep(0.1)

    again, url, _port = _start(tmp_path)
    try:
        with redis.Redis.from_url(url) as client:
            assert client.get("written-before-the-kill") == b"1"
    finally:
        again.send_signal(signal.SIGTERM)
        assert again.wait(timeout=30) == 0


def test_a_second_serve_on_a_data_directory_in_use_stops_and_says_which_server_holds_it(
    tmp_path: Path,
) -> None:
    first, url, port = _start(tmp_path)
    try:
        done = subprocess.run(
            _serve_command(free_port(), 1),
            env=_serve_env(tmp_path),
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert done.returncode == 1, done.stdout + done.stderr
        assert f"in use by valkey-server pid {_valkey_pid(url)}" in done.stderr, done.stderr
        assert "Traceback" not in done.stderr
        assert first.poll() is None
        assert (tmp_path / "metrics").is_dir()  # the running service's snapshots are left
        _wait_ready(port, time.monotonic() + 10)
    finally:
        first.send_signal(signal.SIGTERM)
        assert first.wait(timeout=30) == 0


def _workers(serve_pid: int, valkey_pid: int) -> list[int]:
    """The pids of serve's granian workers: its children but its Valkey and multiprocessing's
    resource tracker."""
    children = Path(f"/proc/{serve_pid}/task/{serve_pid}/children").read_text().split()
    return [
        int(pid)
        for pid in children
        if int(pid) != valkey_pid and "resource_tracker" not in _command_line(int(pid))
    ]


def _command_line(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except (FileNotFoundError, ProcessLookupError):  # it ended meanwhile
        return ""
