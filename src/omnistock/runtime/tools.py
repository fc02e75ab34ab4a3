"""The operator's commands besides ``serve``: ``projector``, ``reconcile``, ``rebuild`` and
``prune-functions``.

Each opens the ledger and the database the service uses. With the embedded default, a running
``omnistock serve`` publishes its Valkey's URL in ``<data dir>/valkey.url``, so the tools reach
the same server; when the service is not running they start the embedded Valkey themselves.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import threading
from collections.abc import AsyncIterator
from pathlib import Path

import msgspec
from sqlalchemy.ext.asyncio import AsyncEngine

from omnistock.runtime.bootstrap import LedgerRuntime, ledger_runtime
from omnistock.runtime.settings import Settings
from omnistock.store.database import create_schema, default_url, open_engine

log = logging.getLogger("omnistock.projector")

URL_FILE = "valkey.url"
NICENESS = 10
"""How much lower than the workers the service's projector thread runs."""


def url_file(settings: Settings) -> Path:
    return settings.data_dir / URL_FILE


def with_running_valkey(settings: Settings) -> Settings:
    """The settings, pointed at the embedded Valkey of a running service when there is one."""
    path = url_file(settings)
    if settings.redis_url is None and path.exists():
        return msgspec.structs.replace(settings, redis_url=path.read_text().strip())
    return settings


def tool_ledger(settings: Settings) -> contextlib.AbstractAsyncContextManager[LedgerRuntime]:
    """The ledger as a tool opens it: on a running service's Valkey when there is one, and
    without a sweeper (the service sweeps; a tool only looks or restores)."""
    return ledger_runtime(with_running_valkey(settings), sweep=False)


@contextlib.asynccontextmanager
async def opened(settings: Settings) -> AsyncIterator[tuple[LedgerRuntime, AsyncEngine]]:
    engine = open_engine(
        settings.database_url or default_url(settings.data_dir), timeout_s=settings.db_timeout_s
    )
    try:
        await create_schema(engine)
        async with tool_ledger(settings) as runtime:
            yield runtime, engine
    finally:
        await engine.dispose()


async def projector(settings: Settings) -> int:
    """Runs a projector alone until SIGINT/SIGTERM (``OMNISTOCK_PROJECTOR=0`` on the service
    leaves all projecting to it)."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    async with opened(settings) as (runtime, engine):
        worker = runtime.projector(engine)
        task = asyncio.create_task(worker.run())
        print(f"omnistock projector running (consumer group 'journal', {runtime.redis_url})")
        await stop.wait()
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        print(f"omnistock projector stopped: {worker.projected} events journaled")
    return 0


async def reconcile(settings: Settings) -> int:
    """Replays the journal into positions and compares them with the live ledger; prints every
    difference; exit status 1 when there is any."""
    from omnistock.store.reconcile import reconcile as compare

    async with opened(settings) as (runtime, engine):
        report = await compare(runtime.ledger, engine, client=runtime.connection.client)
    print(report.render())
    return 1 if report.differences else 0


async def prune_functions(settings: Settings, *, dry_run: bool) -> int:
    """Deletes the ledger function libraries of other versions from Valkey (every primary of a
    cluster), printing each; this version's stay. Needs no database."""
    async with tool_ledger(settings) as runtime:
        names = await runtime.connection.runner.prune_other_versions(dry_run=dry_run)
    verb = "would delete" if dry_run else "deleted"
    for name in names:
        print(f"omnistock prune-functions: {verb} {name}")
    print(
        f"omnistock prune-functions: {len(names)} librar{'y' if len(names) == 1 else 'ies'} of "
        f"other versions {verb}; kept this version's"
    )
    return 0


async def rebuild(settings: Settings, *, force: bool) -> int:
    """Restores the live ledger from the database after Redis lost data."""
    from omnistock.store.rebuild import RebuildRefused
    from omnistock.store.rebuild import rebuild as restore

    async with opened(settings) as (runtime, engine):
        try:
            report = await restore(runtime.connection, engine, force=force)
        except RebuildRefused as exc:
            print(f"omnistock rebuild: {exc}")
            return 2
    print(report.render())
    return 0


class ProjectorThread:
    """The service's projector, in ``serve``'s main process, beside granian's workers rather
    than inside them: journaling never takes the request loop's time. It publishes what it
    journaled through the workers' shared metrics snapshots."""

    RESTART_AFTER_S = 5.0

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._main, name="projector", daemon=True)
        self.failures = 0

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout_s: float = 10.0) -> None:
        self._stopping.set()
        loop, stop = self._loop, self._stop
        if loop is not None and stop is not None:
            with contextlib.suppress(RuntimeError):  # its loop already ended
                loop.call_soon_threadsafe(stop.set)
        self._thread.join(timeout_s)

    def _main(self) -> None:
        """Runs the projector until ``stop``; one that fails (a dependency missing at start-up,
        a bug) is logged and started again, so the journal never silently stops while the
        service goes on answering."""
        # Requests first: the journal catches up on what the workers leave of the cores.
        with contextlib.suppress(OSError, AttributeError):
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), NICENESS)
        # One event loop for every attempt, where asyncio.run would close one per attempt: a
        # failed attempt can leave a database driver's thread finishing its work and reporting
        # back to the loop it started on (a failed SQLite connect stops its thread so).
        with asyncio.Runner() as runner:
            while not self._stopping.is_set():
                try:
                    runner.run(self._run())
                except Exception:
                    self.failures += 1
                    log.exception(
                        "the projector failed; starting it again in %.0f s", self.RESTART_AFTER_S
                    )
                    self._stopping.wait(self.RESTART_AFTER_S)
                else:
                    return

    async def _run(self) -> None:
        from omnistock.api.metrics import Metrics

        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        metrics = Metrics(self._settings.data_dir / "metrics")
        async with opened(self._settings) as (runtime, engine):
            worker = runtime.projector(engine)
            task = asyncio.create_task(worker.run())
            try:
                while not (self._stop.is_set() or self._stopping.is_set()):
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._stop.wait(), timeout=1.0)
                    metrics.outcomes["journaled"] = worker.projected
                    with contextlib.suppress(Exception):
                        metrics.gauges["omnistock_projector_lag_events"] = await worker.lag()
                    metrics.flush()
            finally:
                # The loop outlives this attempt: its projector must not.
                task.cancel()
                await asyncio.wait([task], timeout=5.0)
