"""The background sweeper: releases due reservations and resolves abandoned commit pins.

Expiry is exact without it (every script releases what is due first); it keeps the deadline sets
short and makes expiry events appear promptly in the stream even for idle partitions.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from omnistock.outage_log import OutageLog
from omnistock.reservations.interface import StockLedger

log = logging.getLogger("omnistock.ledger.sweeper")


class Sweeper:
    """Sweeps every ``interval_s``. Sweeps that keep failing (Valkey down, or full and refusing
    writes) are logged as an outage (see OutageLog), at most once per
    ``failure_log_interval_s``."""

    def __init__(
        self,
        ledger: StockLedger,
        *,
        interval_s: float = 1.0,
        failure_log_interval_s: float = 60.0,
    ) -> None:
        self._ledger = ledger
        self._interval_s = interval_s
        self._task: asyncio.Task | None = None
        self._outage = OutageLog(log, "sweep", interval_s=failure_log_interval_s)
        self.expired_total = 0
        self.failures = 0

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
                self.failures += 1
                self._outage.failed(exc)
            else:
                self._outage.succeeded()
            await asyncio.sleep(self._interval_s)
