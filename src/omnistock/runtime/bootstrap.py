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

from redis import exceptions as redis_errors
from sqlalchemy import exc as sa_errors
from sqlalchemy.ext.asyncio import AsyncEngine

from omnistock.api.auth import ApiKeys, resolve_keys
from omnistock.api.live import EventFollower, LiveAvailability, availability_renderer
from omnistock.api.metrics import Metrics
from omnistock.outage_log import OutageLog
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
# What redis-py reports as a connection error but no wait mends: the server answered and refused
# the credentials. A misconfiguration, which ends the start instead of being waited out.
REFUSED = (redis_errors.AuthenticationError, redis_errors.AuthorizationError)


def worth_waiting_for(exc: BaseException) -> bool:
    """Whether ``exc`` says a dependency cannot be reached for now, which waiting may mend."""
    return isinstance(exc, UNREACHABLE) and not isinstance(exc, REFUSED)


T = TypeVar("T")


class Startup:
    """A worker's services while they are being built. Until ``services`` is set, requests are
    refused with 503, and ``waiting`` names each dependency the worker is waiting for, with the
    error it last met (readiness reports it)."""

    def __init__(self) -> None:
        self.services: Services | None = None
        self.waiting: dict[str, str] = {}
        self.reached_once: set[str] = set()
        self.news = asyncio.Event()

    def unreachable(self, dependency: str, exc: BaseException) -> None:
        self.waiting[dependency] = f"unreachable: {type(exc).__name__}"
        self.news.set()

    def reached(self, dependency: str) -> None:
        self.waiting.pop(dependency, None)
        self.reached_once.add(dependency)

    def checks(self) -> dict[str, str]:
        """Each dependency as readiness reports it while the services are not up yet."""
        checks = {
            dependency: "ok" if dependency in self.reached_once else "not tried yet"
            for dependency in ("redis", "database")
        }
        checks.update(self.waiting)
        return checks


async def when_reachable(
    what: str,
    open_: Callable[[], Awaitable[T]],
    *,
    timeout_s: float = STARTUP_TIMEOUT_S,
    startup: Startup | None = None,
) -> T:
    """``open_()``, tried again while its dependency (``what``: "redis" or "database") cannot be
    reached, for up to ``timeout_s``; credentials it refuses end the wait at once. A worker
    starting while Valkey or the database is briefly away (a restart, a failover) waits for it:
    a worker that gave up would end, and granian stops the whole service when a worker ends.
    Given a ``startup`` (a worker that answers 503 meanwhile), it waits as long as it takes
    and reports the wait there."""
    loop = asyncio.get_running_loop()
    deadline = None if startup is not None else loop.time() + timeout_s
    pause = 0.1
    outage = OutageLog(log, f"reaching {what} at start-up")
    while True:
        try:
            opened = await open_()
        except UNREACHABLE as exc:
            if not worth_waiting_for(exc):
                raise
            if deadline is not None and loop.time() + pause > deadline:
                raise
            outage.failed(exc)
            if startup is not None:
                startup.unreachable(what, exc)
            await asyncio.sleep(pause)
            pause = min(1.0, pause * 2)
        else:
            outage.succeeded()
            if startup is not None:
                startup.reached(what)
            return opened


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

    def projector(self, engine: AsyncEngine) -> Projector:
        """A projector of this ledger's events into the journal on ``engine``."""
        return Projector(
            self.connection.client,
            engine,
            cluster=self.settings.redis_cluster,
            db_timeout_s=self.settings.db_timeout_s,
        )


def start_embedded_valkey(settings: Settings) -> EmbeddedValkey:
    server = EmbeddedValkey(
        settings.data_dir / "valkey",
        durability=settings.durability,
        allocator=settings.valkey_allocator,
    )
    # Replaying a large AOF takes a while; the service is not ready before it is done.
    server.start(timeout=STARTUP_TIMEOUT_S)
    return server


@contextlib.asynccontextmanager
async def ledger_runtime(
    settings: Settings,
    *,
    embedded: EmbeddedValkey | None = None,
    startup: Startup | None = None,
    sweep: bool = True,
) -> AsyncIterator[LedgerRuntime]:
    """Starts the embedded Valkey when no Redis URL is set, opens the ledger and its sweeper;
    on exit stops them in reverse order, the embedded Valkey last. Given a ``startup``, it waits
    for an unreachable Valkey for as long as it takes, and reports the wait there. Without
    ``sweep`` the sweeper is made but never started (the operator's tools: the service sweeps)."""
    owned = None
    if settings.redis_url is None and embedded is None:
        owned = embedded = start_embedded_valkey(settings)
    url = settings.redis_url or embedded.url  # type: ignore[union-attr]
    try:
        connection = await when_reachable(
            "redis",
            lambda: open_ledger(
                url,
                cluster=settings.redis_cluster,
                durability=settings.durability,
                timeout_s=settings.redis_timeout_s,
            ),
            startup=startup,
        )
        try:
            sweeper = Sweeper(connection.ledger, interval_s=settings.sweep_interval_ms / 1000)
            if sweep:
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

    def count_ledger_outcomes(self) -> None:
        """Copies into this worker's metrics the outcomes the ledger's parts count themselves."""
        self.metrics.outcomes["expired"] = self.runtime.sweeper.expired_total
        self.metrics.outcomes["dry_read"] = self.ledger.dry_read_fallbacks


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
async def service_runtime(
    settings: Settings, metrics: Metrics, *, startup: Startup | None = None
) -> AsyncIterator[Services]:
    """The ledger runtime, the database and the catalog, the API keys, and the background
    tasks that keep the catalog cache and the shared metrics fresh and feed the live
    availability streams."""
    keys = resolve_keys(settings.api_keys, settings.data_dir)
    url = settings.database_url or default_url(settings.data_dir)
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    engine = open_engine(url, timeout_s=settings.db_timeout_s)
    try:
        await when_reachable("database", lambda: create_schema(engine), startup=startup)
        catalog = NodeCatalog(engine)
        await when_reachable("database", catalog.refresh, startup=startup)
        async with ledger_runtime(settings, startup=startup) as runtime:
            projector = runtime.projector(engine)
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


@contextlib.asynccontextmanager
async def services_in_background(
    settings: Settings,
    metrics: Metrics,
    on_ready: Callable[[Services], None],
    on_failure: Callable[[BaseException], None] | None = None,
) -> AsyncIterator[Startup]:
    """Builds a worker's services while the worker already answers, so that a worker started
    while Valkey or the database is down answers 503 at once instead of holding its requests.

    Returns once the services are up (``on_ready`` has run) or a dependency has been found
    unreachable; then they come up, and ``on_ready`` runs, as soon as it can be reached. Any
    other failure before that is raised, so a misconfigured worker still fails to start; one
    after it (the dependency came back but refused the ledger) is logged, shown by readiness,
    and handed to ``on_failure``. On exit the services are taken down, or their building is
    abandoned."""
    startup = Startup()
    stop = asyncio.Event()

    async def build() -> None:
        async with service_runtime(settings, metrics, startup=startup) as services:
            startup.services = services
            on_ready(services)
            startup.news.set()
            await stop.wait()

    building = asyncio.create_task(build(), name="start-up")
    news = asyncio.create_task(startup.news.wait())
    try:
        await asyncio.wait({building, news}, return_when=asyncio.FIRST_COMPLETED)
    except BaseException:  # the worker is told to stop while it starts
        building.cancel()
        raise
    finally:
        news.cancel()
    if building.done():
        building.result()
    building.add_done_callback(_report_failure(startup, on_failure))
    try:
        yield startup
    finally:
        if startup.services is None:
            building.cancel()
        stop.set()
        try:
            await building
        except asyncio.CancelledError:
            pass
        except Exception:
            if startup.services is not None:
                raise  # a failure taking the services down; one before they were up is logged


def _report_failure(
    startup: Startup, on_failure: Callable[[BaseException], None] | None
) -> Callable[[asyncio.Task], None]:
    def report(task: asyncio.Task) -> None:
        if task.cancelled() or startup.services is not None:
            return
        exc = task.exception()
        if exc is None:
            return
        startup.waiting["start-up"] = f"failed: {type(exc).__name__}"
        log.error("the worker's services failed to start", exc_info=exc)
        if on_failure is not None:
            on_failure(exc)

    return report


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
        services.count_ledger_outcomes()
        try:
            # Whoever runs the projector reports it (under `serve`, its main process).
            if services.settings.projector:
                metrics.outcomes["journaled"] = services.projector.projected
                metrics.gauges["omnistock_projector_lag_events"] = await services.projector.lag()
        finally:
            metrics.flush()

    return flush


async def redis_misconfiguration(settings: Settings) -> Exception | None:
    """What keeps the Redis named by the settings from ever serving the ledger (credentials it
    refuses, a URL that cannot be used, a server that refuses the ledger's functions), found by
    opening the ledger once; None when it opens, when no URL is set (the embedded Valkey), and
    when it cannot be reached for now (the workers wait for it). ``serve`` checks this before
    it starts its workers, so a misconfigured service stops at once with the reason."""
    if settings.redis_url is None:
        return None
    try:
        connection = await open_ledger(
            settings.redis_url,
            cluster=settings.redis_cluster,
            durability=settings.durability,
            timeout_s=settings.redis_timeout_s,
        )
    except Exception as exc:
        return None if worth_waiting_for(exc) else exc
    await connection.aclose()
    return None


async def prepare_database(settings: Settings) -> None:
    """Creates the schema once, before workers start, so they never race to create it. A
    database that cannot be reached yet (restarting, or locked by another process) is waited
    for, up to ``STARTUP_TIMEOUT_S``."""
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    engine = open_engine(
        settings.database_url or default_url(settings.data_dir), timeout_s=settings.db_timeout_s
    )
    try:
        await when_reachable("database", lambda: create_schema(engine))
    finally:
        await engine.dispose()
