"""The bulk commands' concurrency and progress bar: every item once, in order, never more in
flight than allowed, the first failure stopping the rest; a bar that ends at the total."""

from __future__ import annotations

import asyncio
import io

import pytest

from omnistock.runtime.progress import Progress, bounded_map


async def test_bounded_map_keeps_order_and_its_bound() -> None:
    in_flight = peak = 0

    async def double(n: int) -> int:
        nonlocal in_flight, peak
        in_flight += 1
        peak = max(peak, in_flight)
        await asyncio.sleep(0.001 * (n % 3))
        in_flight -= 1
        return 2 * n

    bar = Progress("test", 100, stream=io.StringIO(), enabled=False)
    assert await bounded_map(range(100), double, concurrency=8, progress=bar) == [
        2 * n for n in range(100)
    ]
    assert peak == 8 and bar.done == 100


async def test_bounded_map_stops_at_the_first_failure() -> None:
    started: list[int] = []

    async def fail_at_five(n: int) -> int:
        started.append(n)
        await asyncio.sleep(0)
        if n == 5:
            raise ValueError("row 5")
        return n

    with pytest.raises(ValueError, match="row 5"):
        await bounded_map(range(1000), fail_at_five, concurrency=4)
    assert len(started) < 20


def test_the_bar_is_drawn_on_a_terminal_and_ends_at_the_total() -> None:
    out = io.StringIO()
    bar = Progress("importing", 3, stream=out, enabled=True)
    for _ in range(3):
        bar.advance()
    bar.close()
    last = out.getvalue().rstrip("\n").split("\r")[-1]
    assert last.startswith("importing [" + "#" * 30 + "] 3/3")
    silent = io.StringIO()
    quiet = Progress("importing", 3, stream=silent)  # not a terminal: nothing drawn
    quiet.advance(3)
    quiet.close()
    assert silent.getvalue() == ""
