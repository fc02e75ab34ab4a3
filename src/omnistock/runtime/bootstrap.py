"""The composition root: builds the ledger runtime and the services the API uses from settings,
and takes them down in order."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

from sqlalchemy import exc as sa_errors
from sqlalchemy.ext.asyncio import AsyncEngine

from omnistock.api.auth import ApiKeys, resolve_keys
from omnistock.api.live import EventFollower, LiveAvailability, availability_renderer
from omnistock.api.metrics import Metrics
from omnistock.reservations.connect import LedgerConnection, open_ledger
from omnistock.reservations.redis_ledger import RedisLedger
from omnistock.reservations.runner import UNAVAILABLE_ERRORS
from omnistock.reservations.sweeper import Sweeper
from omnistock.runtime.settings import Settings
from omnistock.runtime.valkey_server import EmbeddedValkey
from omnistock.store.catalog import NodeCatalog
from omnistock.store.database import create_schema, default_url, open_engine
from omnistock.store.projector import Projector

log = logging.getLogger("omnistock.runtime")

STARTUP_TIMEOUT_S = 120.0
# How often each worker reloads its node-catalog cache: how long a node change takes to reach
# every worker.
CATALOG_REFRESH_S = 1.0
SHUTDOWN_WAIT_S = 5.0
# What a dependency that cannot be reached for the moment raises (down, restarting, failing
# over, an SQLite file locked by another process): what the ledger's runner reports as
# unavailable, and the database's own.
UNREACHABLE = (
    *UNAVAILABLE_ERRORS,
    sa_errors.OperationalError,
    sa_errors.InterfaceError,
    sa_errors.TimeoutError,
)

T = TypeVar("T")


async def when_reachable(
    what: str, open_: Callable[[], Awaitable[T]], *, timeout_s: float = STARTUP_TIMEOUT_S
) -> T:
    """``open_()``, tried again while its dependency cannot be reached, for up to
    ``timeout_s``. A worker starting while Valkey or the database is briefly away (a restart,
    a failover) waits for it: a worker that gave up would end, and granian stops the whole
    service when a worker ends."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    pause = 0.1
    while True:
        try:
            return await open_()
        except UNREACHABLE as exc:
            if loop.time() + pause > deadline:
                raise
            log.warning("%s unreachable at start-up (%s); trying again", what, exc)
            await asyncio.sleep(pause)
            pause = min(1.0, pause * 2)


@dataclass
class LedgerRuntime:
    settings: Settings
    connection: LedgerConnection
    sweeper: Sweeper
    embedded: EmbeddedValkey | None
    redis_url: str

    @property
    def ledger(self) -> RedisLedger:
        return self.connection.ledger


def start_embedded_valkey(settings: Settings) -> EmbeddedValkey:
    server = EmbeddedValkey(settings.data_dir / "valkey", durability=settings.durability)
    # Replaying a large AOF takes a while; the service is not ready before it is done.
    server.start(timeout=STARTUP_TIMEOUT_S)
    return server


@contextlib.asynccontextmanager
async def ledger_runtime(
    settings: Settings, *, embedded: EmbeddedValkey | None = None
) -> AsyncIterator[LedgerRuntime]:
    """Starts the embedded Valkey when no Redis URL is set, opens the ledger and its sweeper;
    on exit stops them in reverse order, the embedded Valkey last."""
    owned = None
    if settings.redis_url is None and embedded is None:
        owned = embedded = start_embedded_valkey(settings)
    url = settings.redis_url or embedded.url  # type: ignore[union-attr]
    try:
        connection = await when_reachable(
            "valkey",
            lambda: open_ledger(
                url,
                cluster=settings.redis_cluster,
                durability=settings.durability,
                timeout_s=settings.redis_timeout_s,
            ),
        )
        try:
            sweeper = Sweeper(connection.ledger, interval_s=settings.sweep_interval_ms / 1000)
            sweeper.start()
            try:
                yield LedgerRuntime(settings, connection, sweeper, embedded, url)
            finally:
                await sweeper.stop()
        finally:
            await connection.aclose()
    finally:
        if owned is not None:
            owned.stop()


@dataclass
class Services:
    """Everything a request handler uses, built once per worker in the app's lifespan."""

    settings: Settings
    runtime: LedgerRuntime
    engine: AsyncEngine
    catalog: NodeCatalog
    keys: ApiKeys
    metrics: Metrics
    projector: Projector
    live: LiveAvailability

    @property
    def ledger(self) -> RedisLedger:
        return self.runtime.ledger


async def _every(interval_s: float, name: str, action: Callable[[], Awaitable[object]]) -> None:
    while True:
        await asyncio.sleep(interval_s)
        try:
            await action()
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # a dependency down: keep going, readiness reports it
            log.debug("%s failed: %s", name, exc)


@contextlib.asynccontextmanager
async def service_runtime(settings: Settings, metrics: Metrics) -> AsyncIterator[Services]:
    """The ledger runtime, the database and the catalog, the API keys, and the background
    tasks that keep the catalog cache and the shared metrics fresh and feed the live
    availability streams."""
    keys = resolve_keys(settings.api_keys, settings.data_dir)
    url = settings.database_url or default_url(settings.data_dir)
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    engine = open_engine(url, timeout_s=settings.db_timeout_s)
    try:
        await when_reachable("the database", lambda: create_schema(engine))
        catalog = NodeCatalog(engine)
        await when_reachable("the database", catalog.refresh)
        async with ledger_runtime(settings) as runtime:
            projector = Projector(runtime.connection.client, engine, cluster=settings.redis_cluster)
            follower = await EventFollower.open(
                runtime.redis_url,
                cluster=settings.redis_cluster,
                timeout_s=settings.redis_timeout_s,
            )
            live = LiveAvailability(
                runtime.ledger.availability_many, follower, availability_renderer(catalog), metrics
            )
            services = Services(settings, runtime, engine, catalog, keys, metrics, projector, live)
            # Open streams never end by themselves, and the server waits for every open request
            # before it stops: the stop signal ends them first.
            restore_signals = _on_stop_signal(live.close)
            tasks = [
                *live.tasks(),
                asyncio.create_task(
                    _every(CATALOG_REFRESH_S, "catalog refresh", catalog.refresh),
                    name="catalog refresh",
                ),
                asyncio.create_task(
                    _every(1.0, "metrics flush", _flush(services)), name="metrics flush"
                ),
            ]
            if settings.projector:
                tasks.append(asyncio.create_task(projector.run(), name="projector"))
            try:
                yield services
            finally:
                restore_signals()
                live.close()
                for task in tasks:
                    task.cancel()
                # A cancellation can be lost inside a Redis call (Python 3.11's wait_for):
                # shutting down waits for the tasks only so long.
                _done, stuck = await asyncio.wait(tasks, timeout=SHUTDOWN_WAIT_S)
                for task in stuck:
                    log.warning("background task %s did not stop in time", task.get_name())
                await live.aclose()
    finally:
        await engine.dispose()


def _on_stop_signal(callback: Callable[[], None]) -> Callable[[], None]:
    """Has ``callback`` run in the event loop when the process is told to stop (SIGTERM,
    SIGINT), before whatever handler the server installed, which still runs; returns what puts
    the handlers back. Granian's workers wait for open requests on their stop signal and run the
    lifespan's shutdown only after them, so this is where open-ended streams learn of it. Only
    Python-level handlers can be chained, and only from the main thread: elsewhere (a default
    disposition, a test client's thread) nothing is changed."""
    loop = asyncio.get_running_loop()
    installed: list[tuple[signal.Signals, Callable[..., object], Callable[..., object]]] = []
    for sig in (signal.SIGTERM, signal.SIGINT):
        try:
            previous = signal.getsignal(sig)
            if not callable(previous):
                continue

            def chained(signum: int, frame: object, previous: Callable[..., object] = previous):
                loop.call_soon_threadsafe(callback)
                return previous(signum, frame)

            signal.signal(sig, chained)
        except ValueError:  # not the main thread
            continue
        installed.append((sig, chained, previous))

    def restore() -> None:
        for sig, chained, previous in installed:
            with contextlib.suppress(ValueError):
                if signal.getsignal(sig) is chained:
                    signal.signal(sig, previous)

    return restore


def _flush(services: Services) -> Callable[[], Awaitable[None]]:
    async def flush() -> None:
        metrics = services.metrics
        metrics.outcomes["expired"] = services.runtime.sweeper.expired_total
        try:
            # Whoever runs the projector reports it (under `serve`, its main process).
            if services.settings.projector:
                metrics.outcomes["journaled"] = services.projector.projected
                metrics.gauges["omnistock_projector_lag_events"] = await services.projector.lag()
        finally:
            metrics.flush()

    return flush


async def prepare_database(settings: Settings) -> None:
    """Creates the schema once, before workers start, so they never race to create it."""
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    engine = open_engine(
        settings.database_url or default_url(settings.data_dir), timeout_s=settings.db_timeout_s
    )
    try:
        await create_schema(engine)
    finally:
        await engine.dispose()
