"""Running many ledger calls concurrently, with a progress bar on stderr for the operator.

The ledger's client batches concurrent operations into one script call, so a bulk command gets
its speed from keeping many calls in flight, not from batching rows itself.
"""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import TextIO, TypeVar

T = TypeVar("T")
R = TypeVar("R")

BAR_WIDTH = 30
REDRAW_S = 0.1


class Progress:
    """``label [#########.........]  4,200/10,000  3,512/s`` redrawn in place on a terminal,
    at most ten times a second; silent when the stream is not a terminal (unless forced)."""

    def __init__(
        self, label: str, total: int, *, stream: TextIO | None = None, enabled: bool | None = None
    ) -> None:
        self.stream = stream if stream is not None else sys.stderr
        self.enabled = self.stream.isatty() if enabled is None else enabled
        self.label = label
        self.total = total
        self.done = 0
        self._started = time.monotonic()
        self._drawn = 0.0

    def advance(self, n: int = 1) -> None:
        self.done += n
        now = time.monotonic()
        if self.enabled and (now - self._drawn >= REDRAW_S or self.done >= self.total):
            self._drawn = now
            self._draw(now)

    def close(self) -> None:
        if self.enabled and self.total:
            self._draw(time.monotonic())
            self.stream.write("\n")
            self.stream.flush()

    def _draw(self, now: float) -> None:
        share = self.done / self.total if self.total else 1.0
        filled = int(BAR_WIDTH * share)
        rate = self.done / max(now - self._started, 1e-6)
        self.stream.write(
            f"\r{self.label} [{'#' * filled}{'.' * (BAR_WIDTH - filled)}] "
            f"{self.done:,}/{self.total:,}  {rate:,.0f}/s"
        )
        self.stream.flush()


async def bounded_map(
    items: Sequence[T],
    call: Callable[[T], Awaitable[R]],
    *,
    concurrency: int,
    progress: Progress | None = None,
) -> list[R]:
    """``call`` on every item, at most ``concurrency`` at once; results in the items' order.
    The first exception cancels the rest and is raised."""
    results: list[R | None] = [None] * len(items)
    cursor = iter(range(len(items)))

    async def worker() -> None:
        for i in cursor:
            results[i] = await call(items[i])
            if progress is not None:
                progress.advance()

    workers = [asyncio.create_task(worker()) for _ in range(min(concurrency, len(items)))]
    try:
        await asyncio.gather(*workers)
    finally:
        for task in workers:
            task.cancel()
        await asyncio.gather(*workers, return_exceptions=True)
    return results  # type: ignore[return-value]


async def map_showing_progress(
    label: str,
    items: Sequence[T],
    call: Callable[[T], Awaitable[R]],
    *,
    concurrency: int,
    enabled: bool | None = None,
) -> list[R]:
    """``bounded_map`` with a progress bar named ``label``, closed however the map ends."""
    bar = Progress(label, len(items), enabled=enabled)
    try:
        return await bounded_map(items, call, concurrency=concurrency, progress=bar)
    finally:
        bar.close()
