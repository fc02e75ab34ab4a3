"""A worker process for the concurrency tests: its own ledger connection, many asyncio tasks.

Run from the repository root as ``python -m tests.integration.concurrent_workers URL [--cluster]``.
The worker opens its ledger, prints one ``{"ready": pid}`` line, then reads one JSON command per
line of stdin and answers each with one JSON line on stdout, until stdin closes. The process and
its connection live across rounds, so a round starts in every worker at once: the parent writes
the command to all of them before it reads any answer.

Commands (``cmd``):

* ``reserve``: ``ops`` operation ids, each a reserve of ``lines`` ([[node, sku, qty], ...]) run
  by ``tasks`` concurrent tasks. Answer: ``reserved`` (reservation ids), ``short`` (op ids
  refused with InsufficientStock), ``errors`` (anything else).
* ``release``: release every id of ``rids``, ``tasks`` at a time, op ids ``<prefix>:<rid>``.
  Answer: ``released`` (count) and ``errors``.
* ``mixed``: ``count`` random operations (reserve, commit, release, commit racing release,
  receipt, sale, compare-and-set stock count) on ``skus`` at ``node``, ``tasks`` at a time,
  seeded by ``seed``. Answer: what succeeded (see ``Mixed.report``), ``violations`` (positions
  returned with a negative quantity or reserved + held above on_hand) and ``errors``.
"""

from __future__ import annotations

import asyncio
import json
import random
import sys
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

from omnistock.domain.errors import (
    BelowCommitted,
    IllegalTransition,
    InsufficientStock,
    VersionConflict,
)
from omnistock.domain.stock import Adjustment, Line, Position, Reason
from omnistock.reservations.connect import open_ledger
from omnistock.reservations.redis_ledger import RedisLedger

TTL_MS = 600_000
"""Long enough that nothing expires during a test: expiry is not what these tests race."""
CAS_ATTEMPTS = 1000


async def run_tasks(items: Iterable[Any], tasks: int, work: Callable[[Any], Awaitable[None]]):
    """Runs ``work`` on every item with ``tasks`` coroutines pulling from one shared iterator."""
    source = iter(items)

    async def puller() -> None:
        for item in source:
            await work(item)

    await asyncio.gather(*(puller() for _ in range(tasks)))


def describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"


async def reserve(ledger: RedisLedger, cmd: dict[str, Any]) -> dict[str, Any]:
    lines = [Line(node, sku, qty) for node, sku, qty in cmd["lines"]]
    reserved: list[str] = []
    short: list[str] = []
    errors: list[str] = []

    async def one(op: str) -> None:
        try:
            reservation = await ledger.reserve(op, lines, ttl_ms=TTL_MS)
        except InsufficientStock:
            short.append(op)
        except Exception as exc:
            errors.append(describe(exc))
        else:
            reserved.append(reservation.reservation_id)

    await run_tasks(cmd["ops"], cmd["tasks"], one)
    return {"reserved": reserved, "short": short, "errors": errors}


async def release(ledger: RedisLedger, cmd: dict[str, Any]) -> dict[str, Any]:
    released = 0
    errors: list[str] = []

    async def one(rid: str) -> None:
        nonlocal released
        try:
            await ledger.release(f"{cmd['prefix']}:{rid}", rid)
        except Exception as exc:
            errors.append(describe(exc))
        else:
            released += 1

    await run_tasks(cmd["rids"], cmd["tasks"], one)
    return {"released": released, "errors": errors}


class Mixed:
    """Random concurrent traffic on a few positions, keeping count of every effect that
    succeeded so the parent can check conservation against the ledger."""

    KINDS = ("reserve", "commit", "release", "race", "receipt", "sale", "count")
    WEIGHTS = (6, 2, 1, 1, 2, 3, 1)

    def __init__(self, ledger: RedisLedger, cmd: dict[str, Any]) -> None:
        self.ledger = ledger
        self.node: str = cmd["node"]
        self.skus: list[str] = cmd["skus"]
        self.prefix: str = cmd["prefix"]
        self.rng = random.Random(cmd["seed"])
        self.active: dict[str, list[Line]] = {}
        self.receipts = Counter({sku: 0 for sku in self.skus})
        self.sales = Counter({sku: 0 for sku in self.skus})
        self.committed = Counter({sku: 0 for sku in self.skus})
        self.counted = Counter({sku: 0 for sku in self.skus})
        self.outcomes: Counter[str] = Counter()
        self.violations: list[str] = []
        self.errors: list[str] = []

    async def run(self, count: int, tasks: int) -> dict[str, Any]:
        await run_tasks(range(count), tasks, self.one)
        return self.report()

    def report(self) -> dict[str, Any]:
        return {
            "receipts": self.receipts,
            "sales": self.sales,
            "committed": self.committed,
            "counted": self.counted,
            "active": {
                rid: [[line.sku, line.qty] for line in lines] for rid, lines in self.active.items()
            },
            "outcomes": self.outcomes,
            "violations": self.violations,
            "errors": self.errors,
        }

    def check(self, positions: Iterable[Position]) -> None:
        for p in positions:
            if min(p.on_hand, p.reserved, p.held) < 0 or p.reserved + p.held > p.on_hand:
                self.violations.append(repr(p))

    async def one(self, i: int) -> None:
        kind = self.rng.choices(self.KINDS, self.WEIGHTS)[0]
        op = f"{self.prefix}:{i}"
        if kind in ("commit", "release", "race"):
            if not self.active:
                kind = "reserve"
        try:
            await getattr(self, kind)(op)
        except (InsufficientStock, BelowCommitted, VersionConflict) as exc:
            self.outcomes[f"{kind}:{type(exc).__name__}"] += 1
        except Exception as exc:
            self.errors.append(f"{kind} {op}: {describe(exc)}")
        else:
            self.outcomes[kind] += 1

    def take(self) -> tuple[str, list[Line]]:
        """Takes one of this worker's active reservations, so no other task finishes it."""
        rid = self.rng.choice(list(self.active))
        return rid, self.active.pop(rid)

    async def reserve(self, op: str) -> None:
        skus = self.rng.sample(self.skus, self.rng.choice((1, 1, 2)))
        lines = [Line(self.node, sku, self.rng.randint(1, 3)) for sku in skus]
        reservation = await self.ledger.reserve(op, lines, ttl_ms=TTL_MS)
        self.active[reservation.reservation_id] = lines

    async def commit(self, op: str) -> None:
        rid, lines = self.take()
        await self.ledger.commit(op, rid)
        for line in lines:
            self.committed[line.sku] += line.qty

    async def release(self, op: str) -> None:
        rid, _ = self.take()
        await self.ledger.release(op, rid)

    async def race(self, op: str) -> None:
        """Commit and release the same reservation at once: exactly one of them may win."""
        rid, lines = self.take()
        committed, released = await asyncio.gather(
            self.ledger.commit(f"{op}:c", rid),
            self.ledger.release(f"{op}:r", rid),
            return_exceptions=True,
        )
        winners = [r for r in (committed, released) if not isinstance(r, BaseException)]
        losers = [r for r in (committed, released) if isinstance(r, IllegalTransition)]
        if len(winners) != 1 or len(losers) != 1:
            raise AssertionError(f"commit/release race on {rid}: {committed!r}, {released!r}")
        if not isinstance(committed, BaseException):
            for line in lines:
                self.committed[line.sku] += line.qty

    async def receipt(self, op: str) -> None:
        sku, qty = self.rng.choice(self.skus), self.rng.randint(1, 5)
        self.check(await self.ledger.adjust(op, [Adjustment(self.node, sku, qty, Reason.RECEIPT)]))
        self.receipts[sku] += qty

    async def sale(self, op: str) -> None:
        sku, qty = self.rng.choice(self.skus), self.rng.randint(1, 4)
        self.check(await self.ledger.adjust(op, [Adjustment(self.node, sku, -qty, Reason.SALE)]))
        self.sales[sku] += qty

    async def count(self, op: str) -> None:
        """A stock count as compare-and-set, retried on a version conflict: its delta is known
        exactly once it succeeds."""
        sku, delta = self.rng.choice(self.skus), self.rng.randint(-3, 3)
        for attempt in range(CAS_ATTEMPTS):
            seen = await self.ledger.position(self.node, sku)
            try:
                after = await self.ledger.set_stock(
                    f"{op}:{attempt}",
                    self.node,
                    sku,
                    max(0, seen.on_hand + delta),
                    if_version=seen.version,
                )
            except VersionConflict:
                self.outcomes["count:VersionConflict"] += 1
                continue
            self.check([after])
            self.counted[sku] += after.on_hand - seen.on_hand
            return
        raise AssertionError(f"{CAS_ATTEMPTS} version conflicts in a row on {sku}")


async def mixed(ledger: RedisLedger, cmd: dict[str, Any]) -> dict[str, Any]:
    return await Mixed(ledger, cmd).run(cmd["count"], cmd["tasks"])


COMMANDS = {"reserve": reserve, "release": release, "mixed": mixed}


def answer(payload: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(payload) + "\n")
    sys.stdout.flush()


async def serve(url: str, cluster: bool) -> None:
    conn = await open_ledger(url, cluster=cluster)
    try:
        answer({"ready": True})
        while line := await asyncio.to_thread(sys.stdin.readline):
            cmd = json.loads(line)
            answer(await COMMANDS[cmd["cmd"]](conn.ledger, cmd))
    finally:
        await conn.aclose()


def main(argv: list[str]) -> None:
    asyncio.run(serve(argv[0], "--cluster" in argv[1:]))


if __name__ == "__main__":
    main(sys.argv[1:])
