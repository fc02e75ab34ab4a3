"""The background sweeper: releases due reservations and resolves abandoned commit pins.

Expiry is exact without it (every script releases what is due first); it keeps the deadline sets
short and makes expiry events appear promptly in the stream even for idle partitions.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time

from omnistock.reservations.interface import StockLedger

log = logging.getLogger("omnistock.ledger.sweeper")


class Sweeper:
    """Sweeps every ``interval_s``. While sweeps keep failing (Valkey down, or full and refusing
    writes) it says so once, then once every ``failure_log_interval_s`` with the count so far,
    and once more when a sweep succeeds again: a log line per sweep would be one a second per
    worker for as long as the outage lasts."""

    def __init__(
        self,
        ledger: StockLedger,
        *,
        interval_s: float = 1.0,
        failure_log_interval_s: float = 60.0,
    ) -> None:
        self._ledger = ledger
        self._interval_s = interval_s
        self._failure_log_interval_s = failure_log_interval_s
        self._task: asyncio.Task | None = None
        self.expired_total = 0
        self.failures = 0
        self._failing = 0  # sweeps failed in a row
        self._failure_logged_at = 0.0

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run(), name="sweeper")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def sweep_once(self) -> int:
        expired = await self._ledger.expire_due()
        self.expired_total += expired
        return expired

    async def _run(self) -> None:
        while True:
            try:
                await self.sweep_once()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # Redis down or full: keep trying, readiness reports it
                self._failed(exc)
            else:
                if self._failing:
                    log.warning("sweeps resumed after %d failed in a row", self._failing)
                    self._failing = 0
            await asyncio.sleep(self._interval_s)

    def _failed(self, exc: Exception) -> None:
        self.failures += 1
        self._failing += 1
        now = time.monotonic()
        if self._failing == 1 or now - self._failure_logged_at >= self._failure_log_interval_s:
            self._failure_logged_at = now
            log.warning("sweep failed (%d in a row so far): %s", self._failing, exc)
