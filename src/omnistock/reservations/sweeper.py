"""The background sweeper: releases due reservations and resolves abandoned commit pins.

Expiry is exact without it (every script releases what is due first); it keeps the deadline sets
short and makes expiry events appear promptly in the stream even for idle partitions.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from omnistock.reservations.interface import StockLedger

log = logging.getLogger("omnistock.ledger.sweeper")


class Sweeper:
    def __init__(self, ledger: StockLedger, *, interval_s: float = 1.0) -> None:
        self._ledger = ledger
        self._interval_s = interval_s
        self._task: asyncio.Task | None = None
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
            except Exception as exc:  # Redis down: keep trying, readiness reports it
                self.failures += 1
                log.warning("sweep failed: %s", exc)
            await asyncio.sleep(self._interval_s)
