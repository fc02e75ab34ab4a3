"""A worker process for the conservation tests: transfers, holds, reservations, sales and receipts.

Run from the repository root as ``python -m tests.integration.movement_workers URL [--cluster]``,
driven like ``concurrent_workers`` (one ``{"ready": true}`` line, then one JSON command per line
of stdin, one JSON answer per command).

Commands (``cmd``):

* ``traffic``: ``count`` random operations on ``nodes`` x ``skus``, ``tasks`` at a time, seeded by
  ``seed``: transfers requested, shipped, received in full or in part, cancelled; holds placed
  at a store from its own stock or with a source, made ready, collected, cancelled; sales and
  receipts (``adjust``); reservations committed (sales too) or released. Each transfer and hold is
  driven by the worker that made it, one task at a time (a hold and its transfer together), so
  the worker knows what every one of them holds. Answer: per SKU what changed the total
  (``receipts``, ``sales``, ``commits``, ``collects``, ``losses``), per position what the
  worker's live documents should hold (``reserved``, ``held``, ``inbound``), the ids of its live
  transfers and holds with their status, ``ops``, ``outcomes``, ``violations`` (positions returned
  with a negative quantity, or reserved + held above on_hand) and ``errors``.
* ``watch``: snapshots of every position of ``skus`` (``availability_many``), one after another,
  until the next line arrives on stdin. Each SKU is read in one script (every position of a SKU
  lives in one hash of one partition), so its on_hand + inbound summed over the nodes is exact at
  that moment, on a cluster too; on a single server the whole snapshot is. Answer:
  ``snapshots``, ``violations`` (negative quantities, reserved + held above on_hand), and per SKU
  the lowest and highest total seen (``low``, ``high``).
"""

from __future__ import annotations

import asyncio
import json
import random
import sys
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from omnistock.domain.errors import BelowCommitted, InsufficientStock
from omnistock.domain.movement import SkuQty
from omnistock.domain.stock import Adjustment, Line, Position, Reason
from omnistock.reservations.connect import open_ledger
from omnistock.reservations.redis_ledger import RedisLedger
from tests.integration.concurrent_workers import answer, describe, run_tasks

TTL_MS = 600_000
WINDOW_MS = 600_000
"""Nothing expires during a test: the ledger's accounting is what these tests race."""
EXPECTED = (InsufficientStock, BelowCommitted)
"""Refusals the traffic runs into by design: stock taken by someone else first."""


@dataclass
class Doc:
    """A transfer (``hold`` its hold's id, if any) or a hold (``transfer`` its transfer's id), as
    the worker that drives it knows it."""

    ident: str
    state: str
    lines: dict[str, int]
    node: str  # a transfer's source, a hold's store
    to: str = ""  # a transfer's destination
    held: dict[str, int] = field(default_factory=dict)
    hold: str | None = None
    transfer: str | None = None
    short: bool = False


class Traffic:
    KINDS = (
        "request",
        "ship",
        "receive",
        "cancel_transfer",
        "hold_local",
        "hold_sourced",
        "ready",
        "collect",
        "cancel_hold",
        "sale",
        "receipt",
        "reserve",
        "commit",
        "release",
    )
    WEIGHTS = (5, 5, 5, 1, 3, 3, 3, 3, 1, 3, 5, 3, 2, 1)
    """Receipts about make up for what leaves (sales, commits, collects, losses)."""

    def __init__(self, ledger: RedisLedger, cmd: dict[str, Any]) -> None:
        self.ledger = ledger
        self.nodes: list[str] = cmd["nodes"]
        self.skus: list[str] = cmd["skus"]
        self.prefix: str = cmd["prefix"]
        self.rng = random.Random(cmd["seed"])
        self.transfers: dict[str, Doc] = {}
        self.holds: dict[str, Doc] = {}
        self.busy: set[str] = set()
        self.active: dict[str, list[Line]] = {}
        self.sums = {
            name: Counter(dict.fromkeys(self.skus, 0))
            for name in ("receipts", "sales", "commits", "collects", "losses")
        }
        self.outcomes: Counter[str] = Counter()
        self.violations: list[str] = []
        self.errors: list[str] = []
        self.ops = 0

    async def run(self, count: int, tasks: int) -> dict[str, Any]:
        await run_tasks(range(count), tasks, self.one)
        return self.report()

    # -- bookkeeping ----------------------------------------------------------------------------

    def report(self) -> dict[str, Any]:
        expected: dict[str, Counter[str]] = {f: Counter() for f in ("reserved", "held", "inbound")}
        for t in self.transfers.values():
            for sku, qty in t.lines.items():
                if t.state == "requested":
                    expected["reserved"][f"{t.node}|{sku}"] += qty
                elif t.state == "in_transit":
                    expected["inbound"][f"{t.to}|{sku}"] += qty
        for h in self.holds.values():
            if h.state in ("awaiting", "placed", "ready"):
                for sku, qty in h.held.items():
                    expected["held"][f"{h.node}|{sku}"] += qty
        for lines in self.active.values():
            for line in lines:
                expected["reserved"][f"{line.node_id}|{line.sku}"] += line.qty
        return {
            **self.sums,
            **expected,
            "transfers": {t.ident: t.state for t in self.transfers.values()},
            "holds": {h.ident: h.state for h in self.holds.values()},
            "reservations": list(self.active),
            "ops": self.ops,
            "outcomes": self.outcomes,
            "violations": self.violations,
            "errors": self.errors,
        }

    def check(self, positions: list[Position]) -> None:
        for p in positions:
            if min(p.on_hand, p.reserved, p.held, p.inbound) < 0 or p.reserved + p.held > p.on_hand:
                self.violations.append(repr(p))

    def lines(self, most: int) -> list[SkuQty]:
        skus = self.rng.sample(self.skus, self.rng.choice((1, 1, 2)))
        return [SkuQty(sku, self.rng.randint(1, most)) for sku in skus]

    def take(self, docs: dict[str, Doc], ok: Any) -> Doc | None:
        """One of the worker's documents that ``ok`` accepts and no other task is driving, taken
        (with its hold or transfer) until the operation ends."""
        free = [
            d
            for d in docs.values()
            if d.ident not in self.busy and (d.hold or d.transfer) not in self.busy and ok(d)
        ]
        if not free:
            return None
        doc = self.rng.choice(free)
        self.busy.update(x for x in (doc.ident, doc.hold, doc.transfer) if x)
        return doc

    def give_back(self, doc: Doc) -> None:
        self.busy.difference_update(x for x in (doc.ident, doc.hold, doc.transfer) if x)

    # Each operation returns None, or the kind it ran instead when it had nothing to work on.

    async def one(self, i: int) -> None:
        kind = self.rng.choices(self.KINDS, self.WEIGHTS)[0]
        op = f"{self.prefix}:{i}"
        try:
            ran = await getattr(self, kind)(op)
        except EXPECTED as exc:
            self.outcomes[f"{kind}:{type(exc).__name__}"] += 1
            self.ops += 1
        except Exception as exc:
            self.errors.append(f"{kind} {op}: {describe(exc)}")
        else:
            if ran is not False:  # False: nothing to do
                self.outcomes[ran or kind] += 1
                self.ops += 1

    # -- transfers ------------------------------------------------------------------------------

    async def request(self, op: str) -> str | None:
        src, dst = self.rng.sample(self.nodes, 2)
        t = await self.ledger.request_transfer(op, src, dst, self.lines(4))
        lines = {line.sku: line.qty for line in t.lines}
        self.transfers[t.transfer_id] = Doc(t.transfer_id, "requested", lines, src, dst)

    async def ship(self, op: str) -> str | bool | None:
        t = self.take(self.transfers, lambda d: d.state == "requested")
        if t is None:
            return await self.request(op) or "request"
        try:
            await self.ledger.ship_transfer(op, t.ident)
            t.state = "in_transit"
        finally:
            self.give_back(t)
        return None

    async def receive(self, op: str) -> str | bool | None:
        t = self.take(self.transfers, lambda d: d.state == "in_transit")
        if t is None:
            return await self.ship(op) or "ship"
        try:
            arrived = None
            if self.rng.random() < 0.4:  # in part: a line short, or left out (none arrived)
                arrived = [
                    SkuQty(sku, self.rng.randint(0, qty))
                    for sku, qty in t.lines.items()
                    if self.rng.random() < 0.8
                ]
            done = await self.ledger.receive_transfer(op, t.ident, arrived)
            t.state = "received"
            got = {line.sku: line.received for line in done.lines}
            for sku, qty in t.lines.items():
                self.sums["losses"][sku] += qty - got[sku]
            hold = self.holds.get(t.hold) if t.hold else None
            if hold is not None:
                hold.held = dict(got)
                hold.short = any(got[sku] < qty for sku, qty in hold.lines.items())
                hold.state = "placed"
        finally:
            self.give_back(t)
        return None

    async def cancel_transfer(self, op: str) -> str | bool | None:
        t = self.take(self.transfers, lambda d: d.state == "requested" and d.hold is None)
        if t is None:
            return await self.request(op) or "request"
        try:
            await self.ledger.cancel_transfer(op, t.ident)
            t.state = "cancelled"
        finally:
            self.give_back(t)
        return None

    # -- holds ----------------------------------------------------------------------------------

    async def hold_local(self, op: str) -> str | None:
        store = self.rng.choice(self.nodes[1:])
        hold = await self.ledger.place_hold(
            op,
            store,
            self.lines(2),
            customer_ref="cust",
            pickup_window_ms=WINDOW_MS,
            ready_in_ms=0,
        )
        lines = {line.sku: line.qty for line in hold.lines}
        self.holds[hold.hold_id] = Doc(hold.hold_id, "placed", lines, store, held=dict(lines))

    async def hold_sourced(self, op: str) -> None:
        store, source = self.rng.sample(self.nodes, 2)
        hold = await self.ledger.place_hold(
            op,
            store,
            self.lines(3),
            customer_ref="cust",
            pickup_window_ms=WINDOW_MS,
            ready_in_ms=0,
            source_node_id=source,
        )
        assert hold.transfer_id is not None
        lines = {line.sku: line.qty for line in hold.lines}
        tid, hid = hold.transfer_id, hold.hold_id
        self.holds[hid] = Doc(hid, "awaiting", lines, store, held={}, transfer=tid)
        self.transfers[tid] = Doc(tid, "requested", dict(lines), source, store, hold=hid)

    async def ready(self, op: str) -> str | bool | None:
        h = self.take(self.holds, lambda d: d.state == "placed" and not d.short)
        if h is None:
            return await self.hold_local(op) or "hold_local"
        try:
            await self.ledger.ready_hold(op, h.ident)
            h.state = "ready"
        finally:
            self.give_back(h)
        return None

    async def collect(self, op: str) -> str | bool | None:
        h = self.take(self.holds, lambda d: d.state == "ready")
        if h is None:
            return await self.ready(op) or "ready"
        try:
            await self.ledger.collect_hold(op, h.ident)
            h.state = "collected"
            for sku, qty in h.held.items():
                self.sums["collects"][sku] += qty
        finally:
            self.give_back(h)
        return None

    async def cancel_hold(self, op: str) -> str | bool | None:
        h = self.take(self.holds, lambda d: d.state in ("awaiting", "placed", "ready"))
        if h is None:
            return False
        try:
            await self.ledger.cancel_hold(op, h.ident)
            h.state = "cancelled"
            t = self.transfers.get(h.transfer) if h.transfer else None
            if t is not None and t.state == "requested":
                t.state = "cancelled"
            elif t is not None and t.state == "in_transit":
                t.hold = None  # its goods arrive as ordinary stock
        finally:
            self.give_back(h)
        return None

    # -- stock and reservations -----------------------------------------------------------------

    async def sale(self, op: str) -> None:
        node, sku, qty = (
            self.rng.choice(self.nodes),
            self.rng.choice(self.skus),
            self.rng.randint(1, 3),
        )
        self.check(await self.ledger.adjust(op, [Adjustment(node, sku, -qty, Reason.SALE)]))
        self.sums["sales"][sku] += qty

    async def receipt(self, op: str) -> None:
        node, sku, qty = (
            self.rng.choice(self.nodes),
            self.rng.choice(self.skus),
            self.rng.randint(1, 6),
        )
        self.check(await self.ledger.adjust(op, [Adjustment(node, sku, qty, Reason.RECEIPT)]))
        self.sums["receipts"][sku] += qty

    async def reserve(self, op: str) -> str | None:
        node = self.rng.choice(self.nodes)
        lines = [Line(node, line.sku, line.qty) for line in self.lines(2)]
        reservation = await self.ledger.reserve(op, lines, ttl_ms=TTL_MS)
        self.active[reservation.reservation_id] = lines

    async def commit(self, op: str) -> str | bool | None:
        if not self.active:
            return await self.reserve(op) or "reserve"
        rid = self.rng.choice(list(self.active))
        lines = self.active.pop(rid)
        await self.ledger.commit(op, rid)
        for line in lines:
            self.sums["commits"][line.sku] += line.qty
        return None

    async def release(self, op: str) -> str | bool | None:
        if not self.active:
            return await self.reserve(op) or "reserve"
        rid = self.rng.choice(list(self.active))
        del self.active[rid]
        await self.ledger.release(op, rid)
        return None


async def traffic(ledger: RedisLedger, cmd: dict[str, Any]) -> dict[str, Any]:
    return await Traffic(ledger, cmd).run(cmd["count"], cmd["tasks"])


async def watch(ledger: RedisLedger, cmd: dict[str, Any]) -> dict[str, Any]:
    skus: list[str] = cmd["skus"]
    stop = asyncio.ensure_future(asyncio.to_thread(sys.stdin.readline))
    snapshots = 0
    violations: list[str] = []
    low: dict[str, int] = {}
    high: dict[str, int] = {}
    while not stop.done():
        positions = await ledger.availability_many(skus)
        snapshots += 1
        for sku in skus:
            total = 0
            for p in positions[sku]:
                total += p.on_hand + p.inbound
                if min(p.on_hand, p.reserved, p.held, p.safety_stock, p.inbound) < 0:
                    violations.append(f"negative: {p!r}")
                elif p.reserved + p.held > p.on_hand:
                    violations.append(f"reserved + held above on_hand: {p!r}")
            low[sku] = min(low.get(sku, total), total)
            high[sku] = max(high.get(sku, total), total)
        await asyncio.sleep(0)
    await stop
    return {"snapshots": snapshots, "violations": violations[:50], "low": low, "high": high}


COMMANDS = {"traffic": traffic, "watch": watch}


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
