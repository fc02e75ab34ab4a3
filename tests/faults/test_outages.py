"""Dependency outages under load: `omnistock serve --workers 2` keeps its promises while its Valkey,
its database, or both go away for a while and come back, with concurrent clients throughout.

Each test starts a Valkey (strict durability) and a database of its own and runs the real
service on them as a subprocess. Concurrent HTTP clients (16, 32 in the full profile) place
reservations, adjust stock and read availability and positions before, during and after the
outage; every call is recorded with its timing and answer. What is proven:

- Valkey down (stopped with SHUTDOWN; in the full profile also killed with SIGKILL and restarted
  from its AOF): every call made during the outage answers 503 within twice the request
  deadline, none hangs; /readyz answers 503 naming ``redis`` while the database check stays ok;
  once Valkey is back on the same port, every kind of call succeeds again within a bound,
  without restarting the service, and keeps succeeding.
- Database down. SQLite (default profile): another process holds the write lock (see
  ``SqliteWriteLock``): reservations, adjustments, availability and positions keep answering
  2xx (the node catalog is cached in every worker), creating a node answers 503 within the bound,
  the journal (GET /v1/events) and the catalog still read, /readyz stays 200 because the
  database still answers reads, and the projector falls behind (projector_lag_events > 0).
  PostgreSQL (full profile): the server is stopped (``pg_ctl stop -m fast``) and started again:
  the ledger calls still answer 2xx, everything that reads or writes SQL (node create, node list,
  events) answers 503 within the bound, /readyz answers 503 naming ``database``.
  Either way the projector catches up once the database is back, and every ledger event
  appended to the stream during the outage is in the journal exactly once.
- Both at once, briefly: ledger calls 503 within the bound, /readyz names redis (and the
  database on PostgreSQL), and everything recovers as above.

After each run, every write that got no definite answer is re-sent under its Idempotency-Key
until it gets one; then every position is read back and must hold exactly what the
acknowledged writes add up to (reserved = distinct reservations answered 201, on_hand = seed +
adjustments answered 200): nothing acknowledged was lost, nothing applied twice. The journal is
compared with the ledger's event stream event by event. Figures (calls, slowest answer during
the outage, recovery and catch-up times) are printed: run with ``-s`` to see them.
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from omnistock.runtime.bootstrap import CATALOG_REFRESH_S
from tests.faults.outage_support import (
    CLIENTS,
    FAST_BOUND_S,
    FULL,
    OUTAGE_S,
    RECOVERY_BOUND_S,
    Call,
    Deps,
    Load,
    Service,
    Window,
    check_journal,
    check_ledger,
    deps_for,
    profile_note,
    send,
    slowest,
    start_service,
    stream_last_id,
    summarize,
)

LEDGER_CALLS = ("reserve", "adjust", "availability", "position")
HUNG_S = 5.0

FULL_ONLY = pytest.mark.skipif(not FULL, reason="full profile: OMNISTOCK_FAULTS_PROFILE=full")


class SqlNot503(AssertionError):
    """A call that needs SQL did not answer 503 "database unavailable" while the database was
    down."""


DB_KINDS = [
    "sqlite",
    pytest.param("postgresql", marks=[pytest.mark.slow, FULL_ONLY]),
]


def assert_sql_refused(calls: list[Call]) -> None:
    """Checked last, after everything else a test proves."""
    bad = [
        (c.kind, c.status, c.body)
        for c in calls
        if c.status != 503 or c.body.get("title") != "database unavailable"
    ]
    if bad:
        raise SqlNot503(f"{len(bad)} of {len(calls)} SQL calls not 503: {bad[:3]}")


@pytest.fixture(params=DB_KINDS)
def deps(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Deps]:
    yield from deps_for(tmp_path, request.param)


@pytest.fixture
def sqlite_deps(tmp_path: Path) -> Iterator[Deps]:
    yield from deps_for(tmp_path, "sqlite")


@pytest.fixture
def service(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Service]:
    deps: Deps = request.getfixturevalue(
        "deps" if "deps" in request.fixturenames else "sqlite_deps"
    )
    svc = start_service(tmp_path / "data", deps.valkey.url, deps.database_url)
    try:
        yield svc
    finally:
        svc.stop()


def make_load(service: Service) -> Load:
    tag = f"{time.monotonic_ns() % 10**8}"
    return Load(service.base, [f"n{i}-{tag}" for i in range(3)], [f"s{i}-{tag}" for i in range(8)])


async def until(check: Any, *, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        assert time.monotonic() < deadline, f"timed out after {timeout_s} s waiting for {what}"
        await asyncio.sleep(0.05)


def answered(load: Load, kind: str, ok: Any, after: float) -> bool:
    return any(c.kind == kind and c.started >= after and ok(c.status) for c in load.calls)


def ok2xx(status: int | None) -> bool:
    return status is not None and 200 <= status < 300


class Probes:
    """Calls beside the load during an outage, every ``every_s``: /readyz, a node create, the
    node list and the journal's first page."""

    def __init__(self, base: str, every_s: float = 0.25) -> None:
        self.base = base
        self.every_s = every_s
        self.calls: list[Call] = []
        self.stop = asyncio.Event()

    async def run(self) -> None:
        body = {"name": "probe", "kind": "store", "lat": 48.1, "lon": 11.6, "ships": False}
        async with httpx.AsyncClient(base_url=self.base, timeout=30) as http:
            n = 0
            while not self.stop.is_set():
                n += 1
                batch = await asyncio.gather(
                    send(http, "readyz", "GET", "/readyz"),
                    send(
                        http,
                        "node_put",
                        "PUT",
                        f"/v1/nodes/probe-{time.monotonic_ns()}-{n}",
                        role="admin",
                        json={**body, "pickup": True},
                    ),
                    send(http, "node_list", "GET", "/v1/nodes", role="admin"),
                    send(http, "events", "GET", "/v1/events?limit=5"),
                )
                self.calls.extend(batch)
                await asyncio.sleep(self.every_s)


async def outage(
    load: Load,
    probes: Probes,
    *,
    take: list[Any],
    give: list[Any],
    seconds: float,
) -> Window:
    """Takes the dependencies away (``take``, blocking calls run off the loop), keeps them
    away for ``seconds`` while the load and the probes run, gives them back; returns the
    window between the moment they were all gone and the moment the first came back."""
    for action in take:
        await asyncio.to_thread(action)
    down = time.monotonic()
    probe_task = asyncio.create_task(probes.run())
    await asyncio.sleep(seconds)  # the outage itself: the load and the probes run meanwhile
    probes.stop.set()
    await probe_task
    up = time.monotonic()
    for action in give:
        await asyncio.to_thread(action)
    return Window("outage", down, up)


async def run_under_load(
    service: Service, deps: Deps, *, valkey_down: str | None, db_down: bool, seconds: float
) -> tuple[Load, Probes, Window, float, float]:
    """Seeds, starts the load, waits until every kind of call has succeeded, runs the outage,
    waits until every kind of call succeeds again; returns the load, the probes, the outage
    window, when the dependencies were back, and when every call kind had succeeded again."""
    load = make_load(service)
    await load.seed()
    # Each worker learns of new nodes from its catalog cache, refreshed every second: a worker
    # that had not yet would look the seeded nodes up in the database, and fail while it is down.
    await asyncio.sleep(CATALOG_REFRESH_S + 0.5)
    runner = asyncio.create_task(load.run())
    try:
        started = time.monotonic()
        await until(
            lambda: all(answered(load, k, ok2xx, started) for k in LEDGER_CALLS),
            timeout_s=30,
            what="the load to get going",
        )
        take: list[Any] = []
        give: list[Any] = []
        if valkey_down == "hang":
            pid = deps.valkey.pid
            assert pid is not None
            take.append(lambda: os.kill(pid, signal.SIGSTOP))
            give.append(lambda: os.kill(pid, signal.SIGCONT))
        elif valkey_down is not None:
            take.append(deps.valkey.stop if valkey_down == "stop" else deps.valkey.kill)
            give.append(deps.valkey.start)
        if db_down:
            take.append(deps.take_db)
            give.append(deps.give_db)
        probes = Probes(service.base)
        window = await outage(load, probes, take=take, give=give, seconds=seconds)
        back = time.monotonic()
        await until(
            lambda: all(answered(load, k, ok2xx, back) for k in LEDGER_CALLS),
            timeout_s=RECOVERY_BOUND_S,
            what="every kind of call to succeed again",
        )
        recovered = max(
            min(
                c.started
                for c in load.calls
                if c.kind == k and c.started >= back and ok2xx(c.status)
            )
            for k in LEDGER_CALLS
        )
        # Keep the load on a little longer: recovered means recovered for good.
        steady = time.monotonic()
        await until(
            lambda: sum(1 for c in load.calls if c.started >= steady) >= 4 * CLIENTS,
            timeout_s=30,
            what="load after the recovery",
        )
    finally:
        load.stop.set()
        await runner
    return load, probes, window, back, recovered


def report(name: str, deps: Deps, load: Load, probes: Probes, window: Window, **figures: Any):
    inside = window.inside(load.calls)
    print(
        f"\n[{name}] profile={profile_note()} db={deps.db_kind} clients={load.tasks} "
        f"outage={window.end - window.start:.1f}s calls={len(load.calls)} "
        f"during={len(inside)} slowest_during={slowest(inside):.3f}s "
        f"slowest_all={slowest(load.calls):.3f}s "
        + " ".join(
            f"{k}={v:.2f}s" if isinstance(v, float) else f"{k}={v}" for k, v in figures.items()
        )
        + f"\n  load during: {summarize(inside)}\n  probes: {summarize(probes.calls)}"
        + "\n  slowest calls (kind, status, seconds, start relative to the outage): "
        + str(
            [
                (c.kind, c.status, round(c.elapsed, 3), round(c.started - window.start, 2))
                for c in sorted(load.calls + probes.calls, key=lambda c: -c.elapsed)[:5]
            ]
        )
    )


def assert_all_fast(calls: list[Call]) -> None:
    """Every failure answered within twice the request deadline (fail fast, never hang); every
    success within ``HUNG_S``: a success cannot outlast the deadline unless the process was held
    up, which a machine shared with other test runs does now and then for a second or two."""
    slow = [
        (c.kind, c.status, round(c.elapsed, 3))
        for c in calls
        if c.elapsed > (HUNG_S if ok2xx(c.status) else FAST_BOUND_S)
    ]
    assert not slow, f"answers slower than {FAST_BOUND_S} s (failures) or {HUNG_S} s: {slow[:10]}"
    lost = [(c.kind, c.body) for c in calls if c.status is None]
    assert not lost, f"calls without an HTTP answer: {lost[:5]}"


def assert_no_failure_after(load: Load, since: float) -> None:
    after = [c for c in load.calls if c.started >= since]
    failed = [(c.kind, c.status, c.body) for c in after if not ok2xx(c.status)]
    assert not failed, f"{len(failed)} of {len(after)} failed after the recovery: {failed[:5]}"


def readyz_inside(probes: Probes, window: Window) -> list[Call]:
    calls = [c for c in window.inside(probes.calls) if c.kind == "readyz"]
    assert calls, "no /readyz probe answered during the outage"
    return calls


# -- Valkey ------------------------------------------------------------------------------------

VALKEY_MODES = ["stop", "hang", pytest.param("kill", marks=[pytest.mark.slow, FULL_ONLY])]


@pytest.mark.parametrize("mode", VALKEY_MODES)
async def test_valkey_outage_under_load_answers_503_fast_and_recovers_by_itself(
    sqlite_deps: Deps, service: Service, mode: str
) -> None:
    load, probes, window, back, recovered = await run_under_load(
        service, sqlite_deps, valkey_down=mode, db_down=False, seconds=OUTAGE_S
    )
    inside = window.inside(load.calls)
    report(f"valkey-{mode}", sqlite_deps, load, probes, window, recovery=recovered - back)

    assert_all_fast(load.calls + probes.calls)
    assert len(inside) >= CLIENTS, "too little load during the outage to prove anything"
    wrong = [(c.kind, c.status) for c in inside if c.status != 503]
    assert not wrong, f"calls during the Valkey outage that were not 503: {wrong[:10]}"
    for c in inside:
        # Refused connections are reported as the ledger's; a hung server is cut off by the
        # request deadline, which cannot tell which dependency kept it.
        title = "redis unavailable" if mode != "hang" else c.body["title"]
        assert c.body["status"] == 503 and c.body["title"] == title, c.body
    for c in readyz_inside(probes, window):
        assert c.status == 503, c.body
        assert c.body["checks"]["redis"] != "ok" and c.body["checks"]["database"] == "ok", c.body
    assert recovered - back < RECOVERY_BOUND_S
    assert_no_failure_after(load, recovered)

    settled = await load.settle()
    counts = await check_ledger(load)
    assert counts["refused"] == 0, counts
    total, _ = await check_journal(sqlite_deps.valkey.url, sqlite_deps.database_url)
    print(f"  resent after the outage: {settled}; {counts}; journal == stream: {total} events")


# -- the database ------------------------------------------------------------------------------


async def lag_of(base: str) -> int | None:
    async with httpx.AsyncClient(base_url=base, timeout=30) as http:
        ready = await send(http, "readyz", "GET", "/readyz")
    return (ready.body or {}).get("details", {}).get("projector_lag_events")


async def test_database_outage_under_load_keeps_the_ledger_serving_and_journal_catches_up(
    deps: Deps, service: Service
) -> None:
    marks: dict[str, str] = {}

    # The stream's last entry id just before the database goes and just after it is back.
    def take_db() -> None:
        marks["from"] = asyncio.run(stream_last_id(deps.valkey.url))
        deps.take_db()

    def give_db() -> None:
        marks["to"] = asyncio.run(stream_last_id(deps.valkey.url))
        deps.give_db()

    db = Deps(deps.valkey, deps.database_url, deps.db_kind, take_db, give_db)
    load, probes, window, back, recovered = await run_under_load(
        service, db, valkey_down=None, db_down=True, seconds=OUTAGE_S
    )
    lags = [
        c.body["details"]["projector_lag_events"]
        for c in window.inside(probes.calls)
        if c.kind == "readyz" and c.body and c.body["details"]["projector_lag_events"] is not None
    ]
    start = time.monotonic()
    await until_async_lag_zero(service.base)
    caught_up = time.monotonic() - start
    inside = window.inside(load.calls)
    report(
        "database",
        deps,
        load,
        probes,
        window,
        recovery=recovered - back,
        catch_up=caught_up,
        max_lag=max(lags, default=-1),
    )

    assert_all_fast(load.calls + probes.calls)
    assert len(inside) >= CLIENTS, "too little load during the outage to prove anything"
    wrong = [(c.kind, c.status, c.body) for c in inside if not ok2xx(c.status)]
    assert not wrong, f"ledger calls that failed while only the database was down: {wrong[:5]}"
    probe = {k: [c for c in window.inside(probes.calls) if c.kind == k] for k in _PROBES}
    assert all(probe.values()), "a probe never answered during the outage"
    if deps.db_kind == "sqlite":
        # A write lock leaves SQLite readable: the catalog and the (stale) journal answer, and
        # readiness holds, since the database does answer.
        assert all(c.status == 200 for c in probe["node_list"] + probe["events"])
        for c in probe["readyz"]:
            assert c.status == 200 and c.body["checks"]["database"] == "ok", c.body
    else:
        for c in probe["readyz"]:
            assert c.status == 503, c.body
            assert c.body["checks"]["database"] != "ok" and c.body["checks"]["redis"] == "ok"
    assert lags and max(lags) > 0, f"the projector did not fall behind: {lags}"
    assert_no_failure_after(load, recovered)

    await load.settle()
    counts = await check_ledger(load)
    assert counts["refused"] == 0, counts
    total, during = await check_journal(
        deps.valkey.url, deps.database_url, between=(marks["from"], marks["to"])
    )
    print(f"  {counts}; journal == stream: {total} events, {during} appended during the outage")
    assert during > 0, "no ledger event was appended while the database was down"
    # Creating a node writes SQL: refused fast, whichever database; on a PostgreSQL that is
    # down, reading nodes and the journal too.
    sql = probe["node_put"] + (
        probe["node_list"] + probe["events"] if deps.db_kind != "sqlite" else []
    )
    assert_sql_refused(sql)


_PROBES = ("readyz", "node_put", "node_list", "events")


async def until_async_lag_zero(base: str) -> None:
    deadline = time.monotonic() + 60
    while (lag := await lag_of(base)) != 0:
        assert time.monotonic() < deadline, f"projector lag still {lag}"
        await asyncio.sleep(0.1)


# -- both --------------------------------------------------------------------------------------


async def test_valkey_and_database_down_together_then_everything_recovers(
    deps: Deps, service: Service
) -> None:
    load, probes, window, back, recovered = await run_under_load(
        service, deps, valkey_down="stop", db_down=True, seconds=OUTAGE_S / 2
    )
    await until_async_lag_zero(service.base)
    inside = window.inside(load.calls)
    report("both", deps, load, probes, window, recovery=recovered - back)

    assert_all_fast(load.calls + probes.calls)
    assert inside, "no call was made during the outage"
    wrong = [(c.kind, c.status) for c in inside if c.status != 503]
    assert not wrong, f"calls during the outage that were not 503: {wrong[:10]}"
    for c in readyz_inside(probes, window):
        assert c.status == 503 and c.body["checks"]["redis"] != "ok", c.body
        if deps.db_kind == "postgresql":
            assert c.body["checks"]["database"] != "ok", c.body
    assert recovered - back < RECOVERY_BOUND_S
    assert_no_failure_after(load, recovered)

    await load.settle()
    counts = await check_ledger(load)
    assert counts["refused"] == 0, counts
    total, _ = await check_journal(deps.valkey.url, deps.database_url)
    print(f"  {counts}; journal == stream: {total} events")
    assert_sql_refused([c for c in window.inside(probes.calls) if c.kind == "node_put"])
