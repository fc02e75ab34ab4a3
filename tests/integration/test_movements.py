"""Transfers and BOPIS holds on the Redis ledger, on a real server and a real cluster.

Every test works on SKUs in distinct partitions, so on the cluster each transfer or hold is a
document of several parts (a saga), and on the single server one script still touches several
partitions. Positions are read with their versions: each line of a step changes a position once
(ship: the source and the destination; receive: the destination, once more for a loss).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import pytest

from omnistock.domain.errors import (
    DomainError,
    IllegalTransition,
    InsufficientStock,
    InvalidInput,
    NotFound,
)
from omnistock.domain.movement import (
    MAX_PICKUP_WINDOW_S,
    Hold,
    HoldLine,
    HoldStatus,
    SkuQty,
    Transfer,
    TransferLine,
    TransferStatus,
)
from omnistock.domain.stock import Line, Position, Shortage
from omnistock.reservations import keys
from tests.integration.ledger_fixtures import (
    Harness,
    harness_fixture,  # noqa: F401
    partitions_of,
    quantities,
    timed_fixture,  # noqa: F401
)

WINDOW_MS = 3_600_000
READY_MS = 900_000


class Scene:
    """A warehouse (the source), a store (the destination) and SKUs in distinct partitions, the
    warehouse stocked with ``stock`` of each and the store with ``store_stock``."""

    def __init__(self, h: Harness, skus: list[str]) -> None:
        self.h = h
        self.wh = h.names.node("wh")
        self.store = h.names.node("store")
        self.skus = skus

    @classmethod
    async def make(cls, h: Harness, count: int = 2, stock: int = 10, store_stock: int = 0):
        scene = cls(h, h.names.skus_in_distinct_partitions(count))
        for sku in scene.skus:
            await h.stock(scene.wh, sku, stock)
            if store_stock:
                await h.stock(scene.store, sku, store_stock)
        return scene

    def lines(self, *qty: int) -> list[SkuQty]:
        return [SkuQty(sku, q) for sku, q in zip(self.skus, qty, strict=True)]

    async def at(self, node: str, sku: str) -> tuple[int, int, int, int, int]:
        """(on_hand, reserved, held, inbound, version) of one position."""
        p = await self.h.ledger.position(node, sku)
        return (p.on_hand, p.reserved, p.held, p.inbound, p.version)

    async def snapshot(self) -> dict[str, list[Position]]:
        return await self.h.snapshot(self.skus)

    async def request(self, *qty: int, op: str | None = None) -> Transfer:
        return await self.h.ledger.request_transfer(
            op or self.h.names.op(), self.wh, self.store, self.lines(*qty)
        )

    async def hold(self, *qty: int, source: bool = False, op: str | None = None, **kw: Any):
        kw = {"pickup_window_ms": WINDOW_MS, "ready_in_ms": READY_MS} | kw
        return await self.h.ledger.place_hold(
            op or self.h.names.op(),
            self.store,
            self.lines(*qty),
            customer_ref="cust-42",
            source_node_id=self.wh if source else None,
            **kw,
        )

    async def ship(self, tid: str) -> Transfer:
        return await self.h.ledger.ship_transfer(self.h.names.op(), tid)

    async def receive(self, tid: str, arrived: list[SkuQty] | None = None) -> Transfer:
        return await self.h.ledger.receive_transfer(self.h.names.op(), tid, arrived)


def is_multi_part(doc_id: str, kind: str) -> bool:
    parsed = keys.parse_doc_id(doc_id, kind)
    assert parsed is not None
    return parsed[1]


def would_be_id(h: Harness, kind: str, op: str, skus: Sequence[str]) -> str:
    """The id a transfer or hold created by ``op`` has (or would have had)."""
    parts = partitions_of(skus)
    if h.cluster and len(parts) > 1:
        return keys.doc_id(kind, op, min(parts), single=False)
    return keys.doc_id(kind, op, keys.partition_of(skus[0]), single=True)


async def refused_and_inert(
    scene: Scene,
    call: Callable[[], Awaitable[Any]],
    error: type[DomainError],
    *,
    creation: bool = False,
) -> DomainError:
    """``call`` raises ``error`` and changes no position (versions included) and no event. A
    refused ``creation`` on the cluster may have made parts in earlier partitions and undone them:
    the quantities come back, but versions and events show it."""
    before = await scene.snapshot()
    marks = await scene.h.stream_marks(scene.skus)
    with pytest.raises(error) as caught:
        await call()
    if creation and scene.h.cluster:
        assert quantities(await scene.snapshot()) == quantities(before)
    else:
        assert await scene.snapshot() == before
        assert await scene.h.events_since(marks, scene.skus) == []
    return caught.value


# -- transfers ------------------------------------------------------------------------------


async def test_a_request_reserves_every_line_at_the_source(timed: Harness):
    scene = await Scene.make(timed)
    a, b = scene.skus
    op = timed.names.op()

    t = await timed.ledger.request_transfer(
        op, scene.wh, scene.store, [SkuQty(a, 3), SkuQty(b, 1), SkuQty(a, 1)], reason="rebalance"
    )

    assert t == Transfer(
        transfer_id=would_be_id(timed, "t", op, scene.skus),
        from_node=scene.wh,
        to_node=scene.store,
        status=TransferStatus.REQUESTED,
        lines=[TransferLine(a, 4), TransferLine(b, 1)],
        created_at_ms=timed.clock.now,
        reason="rebalance",
    )
    assert is_multi_part(t.transfer_id, "t") is timed.cluster
    assert await scene.at(scene.wh, a) == (10, 4, 0, 0, 2)
    assert await scene.at(scene.wh, b) == (10, 1, 0, 0, 2)
    assert await scene.at(scene.store, a) == (0, 0, 0, 0, 0)
    assert await timed.ledger.get_transfer(t.transfer_id) == t


async def test_ship_moves_the_goods_out_of_the_source_and_into_inbound(harness: Harness):
    scene = await Scene.make(harness)
    a, b = scene.skus
    t = await scene.request(3, 2)

    shipped = await scene.ship(t.transfer_id)

    assert shipped.status is TransferStatus.IN_TRANSIT
    assert shipped.lines == [TransferLine(a, 3, 3), TransferLine(b, 2, 2)]
    assert await scene.at(scene.wh, a) == (7, 0, 0, 0, 3)
    assert await scene.at(scene.wh, b) == (8, 0, 0, 0, 3)
    assert await scene.at(scene.store, a) == (0, 0, 0, 3, 1)
    assert await scene.at(scene.store, b) == (0, 0, 0, 2, 1)
    assert await harness.ledger.get_transfer(t.transfer_id) == shipped


async def test_a_full_receipt_moves_inbound_into_on_hand(harness: Harness):
    scene = await Scene.make(harness, store_stock=1)
    a, b = scene.skus
    t = await scene.request(3, 2)
    await scene.ship(t.transfer_id)

    received = await scene.receive(t.transfer_id)

    assert received.status is TransferStatus.RECEIVED
    assert received.lines == [TransferLine(a, 3, 3, 3), TransferLine(b, 2, 2, 2)]
    assert await scene.at(scene.store, a) == (4, 0, 0, 0, 3)
    assert await scene.at(scene.store, b) == (3, 0, 0, 0, 3)
    assert await scene.at(scene.wh, a) == (7, 0, 0, 0, 3)
    assert await harness.ledger.get_transfer(t.transfer_id) == received


async def test_naming_every_line_of_a_receipt_is_a_full_receipt(harness: Harness):
    """Each named SKU counts, whatever partition it is in (on a single server too)."""
    scene = await Scene.make(harness, count=3)
    t = await scene.request(3, 2, 1)
    await scene.ship(t.transfer_id)

    received = await scene.receive(t.transfer_id, list(reversed(scene.lines(3, 2, 1))))

    assert [line.received for line in received.lines] == [3, 2, 1]
    for sku, q in zip(scene.skus, (3, 2, 1), strict=True):
        assert await scene.at(scene.store, sku) == (q, 0, 0, 0, 2)


async def test_a_partial_receipt_records_the_shortfall_as_a_loss(timed: Harness):
    scene = await Scene.make(timed, count=3)
    a, b, c = scene.skus
    t = await scene.request(4, 3, 2)
    await scene.ship(t.transfer_id)
    marks = await timed.stream_marks(scene.skus)
    op = timed.names.op()

    # b arrived in part, c not at all (not named), a in full
    received = await timed.ledger.receive_transfer(op, t.transfer_id, [SkuQty(b, 1), SkuQty(a, 4)])

    assert received.lines == [
        TransferLine(a, 4, 4, 4),
        TransferLine(b, 3, 3, 1),
        TransferLine(c, 2, 2, 0),
    ]
    assert await scene.at(scene.store, a) == (4, 0, 0, 0, 2)
    assert await scene.at(scene.store, b) == (1, 0, 0, 0, 3)
    assert await scene.at(scene.store, c) == (0, 0, 0, 0, 3)
    events = await timed.events_since(marks, scene.skus)
    assert sorted((e["k"], e["s"], int(e["doh"]), int(e["dib"])) for e in events) == sorted(
        [
            ("receive", a, 4, -4),
            ("receive", b, 1, -1),
            ("loss", b, 0, -2),
            ("receive", c, 0, 0),
            ("loss", c, 0, -2),
        ]
    )
    assert all(
        (e["op"], e["ref"], e["n"], e["t"])
        == (op, t.transfer_id, scene.store, str(timed.clock.now))
        for e in events
    )


async def test_an_empty_receipt_means_nothing_arrived(harness: Harness):
    scene = await Scene.make(harness)
    t = await scene.request(2, 1)
    await scene.ship(t.transfer_id)

    received = await scene.receive(t.transfer_id, [])

    assert [line.received for line in received.lines] == [0, 0]
    for sku in scene.skus:
        assert await scene.at(scene.store, sku) == (0, 0, 0, 0, 3)


@pytest.mark.parametrize(
    "bad",
    [
        pytest.param(lambda a, b, other: [SkuQty(a, 1), SkuQty(b, 3)], id="more-than-shipped"),
        pytest.param(lambda a, b, other: [SkuQty(b, 3), SkuQty(a, 1)], id="more-than-shipped-1st"),
        pytest.param(lambda a, b, other: [SkuQty(a, 1), SkuQty(other, 1)], id="sku-not-on-it"),
        pytest.param(lambda a, b, other: [SkuQty(a, 1), SkuQty(a, 1)], id="sku-named-twice"),
        pytest.param(lambda a, b, other: [SkuQty(a, -1)], id="negative"),
    ],
)
async def test_a_bad_receipt_is_refused_and_changes_nothing(
    harness: Harness, bad: Callable[[str, str, str], list[SkuQty]]
):
    scene = await Scene.make(harness)
    a, b = scene.skus
    other = harness.names.sku()  # its own partition, maybe one of no part of the transfer
    t = await scene.request(2, 2)
    shipped = await scene.ship(t.transfer_id)

    await refused_and_inert(
        scene, lambda: scene.receive(t.transfer_id, bad(a, b, other)), InvalidInput
    )

    assert await harness.ledger.get_transfer(t.transfer_id) == shipped
    received = await scene.receive(t.transfer_id, [SkuQty(a, 2), SkuQty(b, 2)])
    assert received.status is TransferStatus.RECEIVED


async def test_cancelling_a_requested_transfer_gives_the_reservation_back(harness: Harness):
    scene = await Scene.make(harness)
    t = await scene.request(3, 2)

    cancelled = await harness.ledger.cancel_transfer(harness.names.op(), t.transfer_id)

    assert cancelled.status is TransferStatus.CANCELLED
    assert cancelled.lines == t.lines
    for sku in scene.skus:
        assert await scene.at(scene.wh, sku) == (10, 0, 0, 0, 3)
    assert await harness.ledger.get_transfer(t.transfer_id) == cancelled


async def _transfer_in(scene: Scene, state: str) -> Transfer:
    t = await scene.request(2, 1)
    if state in ("in_transit", "received"):
        t = await scene.ship(t.transfer_id)
    if state == "received":
        t = await scene.receive(t.transfer_id)
    if state == "cancelled":
        t = await scene.h.ledger.cancel_transfer(scene.h.names.op(), t.transfer_id)
    return t


ILLEGAL_TRANSFER_STEPS = [
    ("requested", "receive"),
    ("in_transit", "ship"),
    ("in_transit", "cancel"),
    ("received", "ship"),
    ("received", "receive"),
    ("received", "cancel"),
    ("cancelled", "ship"),
    ("cancelled", "receive"),
    ("cancelled", "cancel"),
]


@pytest.mark.parametrize(("state", "action"), ILLEGAL_TRANSFER_STEPS)
async def test_an_illegal_transfer_step_is_refused_and_changes_nothing(
    harness: Harness, state: str, action: str
):
    scene = await Scene.make(harness)
    t = await _transfer_in(scene, state)
    method = getattr(harness.ledger, f"{action}_transfer")

    err = await refused_and_inert(
        scene, lambda: method(harness.names.op(), t.transfer_id), IllegalTransition
    )

    assert (err.kind, err.ident, err.status, err.action) == (
        "transfer",
        t.transfer_id,
        state,
        action,
    )
    assert await harness.ledger.get_transfer(t.transfer_id) == t


async def test_a_transfer_made_for_a_hold_cannot_be_cancelled_directly(harness: Harness):
    scene = await Scene.make(harness)
    hold = await scene.hold(1, 1, source=True)
    assert hold.transfer_id is not None

    err = await refused_and_inert(
        scene,
        lambda: harness.ledger.cancel_transfer(harness.names.op(), hold.transfer_id),
        IllegalTransition,
    )

    assert err.status == "made for a hold (cancel the hold instead)"
    assert (await harness.ledger.get_transfer(hold.transfer_id)).status == "requested"


async def test_a_short_source_refuses_the_whole_transfer_naming_every_short_line(harness: Harness):
    scene = await Scene.make(harness, count=3, stock=2)
    a, b, c = scene.skus
    op = harness.names.op()

    err = await refused_and_inert(
        scene,
        lambda: harness.ledger.request_transfer(
            op, scene.wh, scene.store, [SkuQty(c, 3), SkuQty(a, 1), SkuQty(b, 5)]
        ),
        InsufficientStock,
        creation=True,
    )

    assert err.shortages == [Shortage(scene.wh, c, 3, 2), Shortage(scene.wh, b, 5, 2)]
    with pytest.raises(NotFound):
        await harness.ledger.get_transfer(would_be_id(harness, "t", op, [c, a, b]))


@pytest.mark.parametrize("short", ["first", "last", "middle"])
async def test_a_transfer_over_partitions_is_all_or_none(harness: Harness, short: str):
    """On the cluster the parts are reserved in partition order: a short partition after the
    first undoes the parts before it; one before leaves nothing to undo. Nothing stays reserved
    anywhere either way."""
    scene = await Scene.make(harness, count=3, stock=5)
    by_partition = sorted(scene.skus, key=keys.partition_of)
    scarce = {"first": by_partition[0], "middle": by_partition[1], "last": by_partition[2]}[short]
    await harness.stock(scene.wh, scarce, 1)
    before = quantities(await scene.snapshot())
    op = harness.names.op()
    lines = [SkuQty(sku, 2) for sku in scene.skus]

    with pytest.raises(InsufficientStock) as err:
        await harness.ledger.request_transfer(op, scene.wh, scene.store, lines)

    assert err.value.shortages == [Shortage(scene.wh, scarce, 2, 1)]
    assert quantities(await scene.snapshot()) == before
    with pytest.raises(InsufficientStock) as again:  # the refusal is remembered
        await harness.ledger.request_transfer(op, scene.wh, scene.store, lines)
    assert again.value.shortages == err.value.shortages
    assert quantities(await scene.snapshot()) == before
    fitting = [SkuQty(sku, 1 if sku == scarce else 2) for sku in scene.skus]
    t = await harness.ledger.request_transfer(harness.names.op(), scene.wh, scene.store, fitting)
    assert t.status is TransferStatus.REQUESTED  # what is there can still be moved


async def test_transfer_input_is_checked_before_anything_runs(harness: Harness):
    scene = await Scene.make(harness)
    ledger = harness.ledger
    cases: list[tuple[Callable[[], Awaitable[Any]], str]] = [
        (lambda: ledger.request_transfer("op", scene.wh, scene.wh, scene.lines(1, 1)), "to_node"),
        (lambda: ledger.request_transfer("op", scene.wh, scene.store, []), "lines"),
        (lambda: ledger.request_transfer("op", scene.wh, "bad node", scene.lines(1, 1)), "to_node"),
        (lambda: ledger.request_transfer("", scene.wh, scene.store, scene.lines(1, 1)), "op_id"),
        (
            lambda: ledger.request_transfer("op", scene.wh, scene.store, scene.lines(1, 0)),
            "lines[1].qty",
        ),
    ]
    for call, field in cases:
        err = await refused_and_inert(scene, call, InvalidInput)
        assert err.field == field


@pytest.mark.parametrize(
    "ident",
    ["nope", keys.doc_id("t", "never-made", 3, single=True), keys.doc_id("h", "x", 3, single=True)],
)
async def test_an_unknown_transfer_is_not_found(harness: Harness, ident: str):
    ledger = harness.ledger
    for call in (
        lambda: ledger.get_transfer(ident),
        lambda: ledger.ship_transfer(harness.names.op(), ident),
        lambda: ledger.receive_transfer(harness.names.op(), ident),
        lambda: ledger.cancel_transfer(harness.names.op(), ident),
    ):
        with pytest.raises(NotFound) as err:
            await call()
        assert err.value.kind == "transfer"


# -- holds ----------------------------------------------------------------------------------


async def test_a_hold_takes_the_store_stock_into_held(timed: Harness):
    scene = await Scene.make(timed, store_stock=5)
    a, b = scene.skus
    op = timed.names.op()
    now = timed.clock.now

    hold = await scene.hold(2, 5, op=op)

    assert hold == Hold(
        hold_id=would_be_id(timed, "h", op, scene.skus),
        store_id=scene.store,
        status=HoldStatus.PLACED,
        lines=[HoldLine(a, 2, 2), HoldLine(b, 5, 5)],
        customer_ref="cust-42",
        created_at_ms=now,
        expires_at_ms=now + WINDOW_MS,
        ready_by_ms=now + READY_MS,
    )
    assert await scene.at(scene.store, a) == (5, 0, 2, 0, 2)
    assert (await timed.ledger.position(scene.store, b)).available == 0
    assert await scene.at(scene.wh, a) == (10, 0, 0, 0, 1)
    assert await timed.ledger.get_hold(hold.hold_id) == hold


async def test_ready_then_collect_takes_the_goods_out_of_the_store(harness: Harness):
    scene = await Scene.make(harness, store_stock=5)
    hold = await scene.hold(2, 1)
    before = await scene.snapshot()

    ready = await harness.ledger.ready_hold(harness.names.op(), hold.hold_id)

    assert ready.status is HoldStatus.READY
    assert await scene.snapshot() == before  # staging at the desk moves no stock
    collected = await harness.ledger.collect_hold(harness.names.op(), hold.hold_id)
    assert collected.status is HoldStatus.COLLECTED
    assert [line.held for line in collected.lines] == [0, 0]
    assert await scene.at(scene.store, scene.skus[0]) == (3, 0, 0, 0, 3)
    assert await scene.at(scene.store, scene.skus[1]) == (4, 0, 0, 0, 3)
    assert await harness.ledger.get_hold(hold.hold_id) == collected


@pytest.mark.parametrize("ready", [False, True])
async def test_cancelling_a_hold_puts_its_goods_back_on_the_shelf(harness: Harness, ready: bool):
    scene = await Scene.make(harness, store_stock=5)
    hold = await scene.hold(2, 1)
    if ready:
        await harness.ledger.ready_hold(harness.names.op(), hold.hold_id)

    cancelled = await harness.ledger.cancel_hold(harness.names.op(), hold.hold_id)

    assert cancelled.status is HoldStatus.CANCELLED
    assert [line.held for line in cancelled.lines] == [0, 0]
    for sku in scene.skus:
        assert await scene.at(scene.store, sku) == (5, 0, 0, 0, 3)


async def test_a_hold_with_a_source_reserves_at_the_source_and_holds_on_receipt(timed: Harness):
    scene = await Scene.make(timed, store_stock=1)
    a, b = scene.skus
    placed_at = timed.clock.now

    hold = await scene.hold(3, 2, source=True)

    assert hold.status is HoldStatus.PLACED
    assert (hold.source_node_id, hold.ready_by_ms) == (scene.wh, None)
    assert hold.expires_at_ms == placed_at + WINDOW_MS
    assert hold.lines == [HoldLine(a, 3, 0), HoldLine(b, 2, 0)]
    assert hold.transfer_id is not None
    t = await timed.ledger.get_transfer(hold.transfer_id)
    assert (t.status, t.from_node, t.to_node, t.reason, t.hold_id) == (
        TransferStatus.REQUESTED,
        scene.wh,
        scene.store,
        "hold",
        hold.hold_id,
    )
    assert await scene.at(scene.wh, a) == (10, 3, 0, 0, 2)
    assert await scene.at(scene.store, a) == (1, 0, 0, 0, 1)  # the store: unchanged
    with pytest.raises(IllegalTransition) as err:
        await timed.ledger.ready_hold(timed.names.op(), hold.hold_id)
    assert err.value.status == "waiting for its transfer to arrive"

    timed.clock.advance(60_000)
    await scene.ship(hold.transfer_id)
    assert await scene.at(scene.store, a) == (1, 0, 0, 3, 2)
    with pytest.raises(IllegalTransition):
        await timed.ledger.ready_hold(timed.names.op(), hold.hold_id)

    timed.clock.advance(60_000)
    received_at = timed.clock.now
    await scene.receive(hold.transfer_id)

    # on_hand and held rise in the same step: the goods are never available to anyone else
    assert await scene.at(scene.store, a) == (4, 0, 3, 0, 4)
    assert await scene.at(scene.store, b) == (3, 0, 2, 0, 4)
    assert (await timed.ledger.position(scene.store, a)).available == 1
    arrived = await timed.ledger.get_hold(hold.hold_id)
    assert arrived.status is HoldStatus.PLACED
    assert arrived.lines == [HoldLine(a, 3, 3), HoldLine(b, 2, 2)]
    assert (arrived.ready_by_ms, arrived.expires_at_ms, arrived.short) == (
        received_at + READY_MS,
        received_at + WINDOW_MS,
        False,
    )
    await timed.ledger.ready_hold(timed.names.op(), hold.hold_id)
    collected = await timed.ledger.collect_hold(timed.names.op(), hold.hold_id)
    assert collected.status is HoldStatus.COLLECTED
    assert await scene.at(scene.store, a) == (1, 0, 0, 0, 5)


@pytest.mark.parametrize("short_in", ["header", "other"])
async def test_a_hold_whose_goods_arrive_short_can_only_be_cancelled(
    harness: Harness, short_in: str
):
    """On the cluster the header part (lowest partition) decides for every part: it must know
    when another part came up short."""
    scene = await Scene.make(harness)
    low, high = sorted(scene.skus, key=keys.partition_of)
    hold = await harness.ledger.place_hold(
        harness.names.op(),
        scene.store,
        [SkuQty(low, 2), SkuQty(high, 2)],
        customer_ref="c",
        pickup_window_ms=WINDOW_MS,
        ready_in_ms=0,
        source_node_id=scene.wh,
    )
    assert hold.transfer_id is not None
    await scene.ship(hold.transfer_id)
    short, full = (low, high) if short_in == "header" else (high, low)

    await scene.receive(hold.transfer_id, [SkuQty(short, 1), SkuQty(full, 2)])

    got = await harness.ledger.get_hold(hold.hold_id)
    assert got.short
    assert {line.sku: line.held for line in got.lines} == {short: 1, full: 2}
    err = await refused_and_inert(
        scene,
        lambda: harness.ledger.ready_hold(harness.names.op(), hold.hold_id),
        IllegalTransition,
    )
    assert err.status == "short of what was ordered"
    assert (await harness.ledger.get_hold(hold.hold_id)).status is HoldStatus.PLACED
    await harness.ledger.cancel_hold(harness.names.op(), hold.hold_id)
    assert await scene.at(scene.store, short) == (1, 0, 0, 0, 5)  # what came is ordinary stock
    assert await scene.at(scene.store, full) == (2, 0, 0, 0, 4)


async def test_cancelling_a_hold_before_its_transfer_ships_cancels_the_transfer(
    harness: Harness,
):
    scene = await Scene.make(harness)
    hold = await scene.hold(3, 2, source=True)
    assert hold.transfer_id is not None

    await harness.ledger.cancel_hold(harness.names.op(), hold.hold_id)

    t = await harness.ledger.get_transfer(hold.transfer_id)
    assert t.status is TransferStatus.CANCELLED
    for sku in scene.skus:
        assert await scene.at(scene.wh, sku) == (10, 0, 0, 0, 3)
        assert await scene.at(scene.store, sku) == (0, 0, 0, 0, 0)


async def test_goods_of_a_hold_cancelled_in_transit_arrive_as_ordinary_stock(harness: Harness):
    scene = await Scene.make(harness)
    a, b = scene.skus
    hold = await scene.hold(3, 2, source=True)
    assert hold.transfer_id is not None
    await scene.ship(hold.transfer_id)

    cancelled = await harness.ledger.cancel_hold(harness.names.op(), hold.hold_id)

    assert cancelled.status is HoldStatus.CANCELLED
    t = await harness.ledger.get_transfer(hold.transfer_id)
    assert (t.status, t.hold_id) == (TransferStatus.IN_TRANSIT, None)
    assert await scene.at(scene.store, a) == (0, 0, 0, 3, 1)
    await scene.receive(hold.transfer_id)
    assert await scene.at(scene.store, a) == (3, 0, 0, 0, 2)
    assert (await harness.ledger.position(scene.store, b)).available == 2
    assert (await harness.ledger.get_hold(hold.hold_id)).lines == [
        HoldLine(a, 3, 0),
        HoldLine(b, 2, 0),
    ]


async def _hold_in(scene: Scene, state: str) -> Hold:
    h = scene.h
    hold = await scene.hold(1, 1, source=state == "awaiting")
    if state in ("ready", "collected"):
        hold = await h.ledger.ready_hold(h.names.op(), hold.hold_id)
    if state == "collected":
        hold = await h.ledger.collect_hold(h.names.op(), hold.hold_id)
    if state == "cancelled":
        hold = await h.ledger.cancel_hold(h.names.op(), hold.hold_id)
    return hold


ILLEGAL_HOLD_STEPS = [
    ("placed", "collect", "placed"),
    ("awaiting", "ready", "waiting for its transfer to arrive"),
    ("awaiting", "collect", "placed"),
    ("ready", "ready", "ready"),
    ("collected", "ready", "collected"),
    ("collected", "collect", "collected"),
    ("collected", "cancel", "collected"),
    ("cancelled", "ready", "cancelled"),
    ("cancelled", "collect", "cancelled"),
    ("cancelled", "cancel", "cancelled"),
]


@pytest.mark.parametrize(("state", "action", "status"), ILLEGAL_HOLD_STEPS)
async def test_an_illegal_hold_step_is_refused_and_changes_nothing(
    harness: Harness, state: str, action: str, status: str
):
    scene = await Scene.make(harness, store_stock=5)
    hold = await _hold_in(scene, state)
    method = getattr(harness.ledger, f"{action}_hold")

    err = await refused_and_inert(
        scene, lambda: method(harness.names.op(), hold.hold_id), IllegalTransition
    )

    assert (err.kind, err.ident, err.status, err.action) == ("hold", hold.hold_id, status, action)
    assert await harness.ledger.get_hold(hold.hold_id) == hold


@pytest.mark.parametrize("source", [False, True])
async def test_a_short_hold_is_refused_whole_naming_the_node_it_takes_from(
    harness: Harness, source: bool
):
    scene = await Scene.make(harness, count=3, stock=2, store_stock=2)
    _a, b, c = scene.skus
    op = harness.names.op()

    err = await refused_and_inert(
        scene,
        lambda: scene.hold(1, 3, 4, source=source, op=op),
        InsufficientStock,
        creation=True,
    )

    node = scene.wh if source else scene.store
    assert err.shortages == [Shortage(node, b, 3, 2), Shortage(node, c, 4, 2)]
    with pytest.raises(NotFound):
        await harness.ledger.get_hold(would_be_id(harness, "h", op, scene.skus))
    if source:
        with pytest.raises(NotFound):
            await harness.ledger.get_transfer(would_be_id(harness, "t", op, scene.skus))


@pytest.mark.parametrize("source", [False, True])
@pytest.mark.parametrize("short", ["first", "last"])
async def test_a_hold_over_partitions_is_all_or_none(harness: Harness, source: bool, short: str):
    scene = await Scene.make(harness, count=3, stock=5, store_stock=5)
    by_partition = sorted(scene.skus, key=keys.partition_of)
    scarce = by_partition[0] if short == "first" else by_partition[-1]
    node = scene.wh if source else scene.store
    await harness.stock(node, scarce, 1)
    before = quantities(await scene.snapshot())
    op = harness.names.op()

    with pytest.raises(InsufficientStock) as err:
        await scene.hold(2, 2, 2, source=source, op=op)

    assert err.value.shortages == [Shortage(node, scarce, 2, 1)]
    assert quantities(await scene.snapshot()) == before
    with pytest.raises(NotFound):
        await harness.ledger.get_hold(would_be_id(harness, "h", op, scene.skus))
    with pytest.raises(InsufficientStock):  # the refusal is remembered
        await scene.hold(2, 2, 2, source=source, op=op)
    assert quantities(await scene.snapshot()) == before


async def test_hold_input_is_checked_before_anything_runs(harness: Harness):
    scene = await Scene.make(harness, store_stock=5)

    async def place(**kw: Any) -> Hold:
        args: dict[str, Any] = {
            "customer_ref": "c",
            "pickup_window_ms": WINDOW_MS,
            "ready_in_ms": 0,
        } | kw
        return await harness.ledger.place_hold("op", scene.store, scene.lines(1, 1), **args)

    for kw, field in [
        ({"source_node_id": scene.store}, "source_node_id"),
        ({"customer_ref": ""}, "customer_ref"),
        ({"pickup_window_ms": 0}, "pickup_window_s"),
        ({"ready_in_ms": -1}, "ready_in"),
    ]:
        err = await refused_and_inert(scene, lambda kw=kw: place(**kw), InvalidInput)
        assert err.field == field


async def test_a_pickup_window_may_be_up_to_30_days(timed: Harness):
    scene = await Scene.make(timed, store_stock=5)
    longest = MAX_PICKUP_WINDOW_S * 1000

    hold = await scene.hold(1, 1, pickup_window_ms=longest)

    assert hold.expires_at_ms == timed.clock.now + longest
    timed.clock.set(hold.expires_at_ms - 1)
    assert (await timed.ledger.get_hold(hold.hold_id)).status is HoldStatus.PLACED
    timed.clock.set(hold.expires_at_ms)
    assert (await timed.ledger.get_hold(hold.hold_id)).status is HoldStatus.EXPIRED
    err = await refused_and_inert(
        scene, lambda: scene.hold(1, 1, pickup_window_ms=longest + 1), InvalidInput
    )
    assert err.field == "pickup_window_s"


@pytest.mark.parametrize(
    "ident",
    ["nope", keys.doc_id("h", "never-made", 3, single=True), keys.doc_id("t", "x", 3, single=True)],
)
async def test_an_unknown_hold_is_not_found(harness: Harness, ident: str):
    ledger = harness.ledger
    for call in (
        lambda: ledger.get_hold(ident),
        lambda: ledger.ready_hold(harness.names.op(), ident),
        lambda: ledger.collect_hold(harness.names.op(), ident),
        lambda: ledger.cancel_hold(harness.names.op(), ident),
    ):
        with pytest.raises(NotFound) as err:
            await call()
        assert err.value.kind == "hold"


async def test_an_op_id_used_for_a_transfer_cannot_make_a_hold_over_it(harness: Harness):
    """A hold's transfer id derives from the op id like a transfer's: reusing an op id must not
    overwrite the transfer (its reservation would stay forever)."""
    scene = await Scene.make(harness)
    op = harness.names.op()
    t = await scene.request(3, 1, op=op)

    with pytest.raises(IllegalTransition):
        await scene.hold(1, 1, source=True, op=op)

    assert await harness.ledger.get_transfer(t.transfer_id) == t
    await harness.ledger.cancel_transfer(harness.names.op(), t.transfer_id)
    for sku in scene.skus:
        assert (await harness.ledger.position(scene.wh, sku)).reserved == 0


# -- expiry ---------------------------------------------------------------------------------


@pytest.mark.parametrize("ready", [False, True])
async def test_a_hold_expires_exactly_at_its_deadline(timed: Harness, ready: bool):
    scene = await Scene.make(timed, store_stock=5)
    hold = await scene.hold(2, 1, pickup_window_ms=30_000)
    if ready:
        await timed.ledger.ready_hold(timed.names.op(), hold.hold_id)

    timed.clock.set(hold.expires_at_ms - 1)
    assert (await timed.ledger.position(scene.store, scene.skus[0])).held == 2
    assert (await timed.ledger.get_hold(hold.hold_id)).status == ("ready" if ready else "placed")

    timed.clock.set(hold.expires_at_ms)
    for sku in reversed(scene.skus):  # any partition of the hold sees it expire
        assert await scene.at(scene.store, sku) == (5, 0, 0, 0, 3)
    expired = await timed.ledger.get_hold(hold.hold_id)
    assert expired.status is HoldStatus.EXPIRED
    assert [line.held for line in expired.lines] == [0, 0]
    with pytest.raises(IllegalTransition) as err:
        await timed.ledger.collect_hold(timed.names.op(), hold.hold_id)
    assert err.value.status == "expired"


async def test_a_hold_collected_a_millisecond_before_its_deadline_is_collected(timed: Harness):
    scene = await Scene.make(timed, store_stock=5)
    hold = await scene.hold(2, 1, pickup_window_ms=30_000)
    await timed.ledger.ready_hold(timed.names.op(), hold.hold_id)

    timed.clock.set(hold.expires_at_ms - 1)
    collected = await timed.ledger.collect_hold(timed.names.op(), hold.hold_id)

    assert collected.status is HoldStatus.COLLECTED
    timed.clock.set(hold.expires_at_ms + 1)
    assert (await timed.ledger.get_hold(hold.hold_id)).status is HoldStatus.COLLECTED
    assert await scene.at(scene.store, scene.skus[0]) == (3, 0, 0, 0, 3)


async def test_an_expired_hold_cancels_its_unshipped_transfer(timed: Harness):
    scene = await Scene.make(timed)
    hold = await scene.hold(3, 2, source=True, pickup_window_ms=30_000)
    assert hold.transfer_id is not None

    timed.clock.set(hold.expires_at_ms)

    for sku in scene.skus:
        assert await scene.at(scene.wh, sku) == (10, 0, 0, 0, 3)
    assert (await timed.ledger.get_transfer(hold.transfer_id)).status is TransferStatus.CANCELLED
    assert (await timed.ledger.get_hold(hold.hold_id)).status is HoldStatus.EXPIRED
    with pytest.raises(IllegalTransition):
        await scene.ship(hold.transfer_id)


async def test_goods_of_a_hold_expired_in_transit_arrive_as_ordinary_stock(timed: Harness):
    scene = await Scene.make(timed)
    a, _b = scene.skus
    hold = await scene.hold(3, 2, source=True, pickup_window_ms=30_000)
    assert hold.transfer_id is not None
    await scene.ship(hold.transfer_id)

    timed.clock.set(hold.expires_at_ms)
    t = await timed.ledger.get_transfer(hold.transfer_id)
    assert (t.status, t.hold_id) == (TransferStatus.IN_TRANSIT, None)
    await scene.receive(hold.transfer_id)

    assert await scene.at(scene.store, a) == (3, 0, 0, 0, 2)
    assert (await timed.ledger.get_hold(hold.hold_id)).status is HoldStatus.EXPIRED


async def test_the_pickup_window_counts_from_the_arrival(timed: Harness):
    scene = await Scene.make(timed)
    hold = await scene.hold(1, 1, source=True, pickup_window_ms=30_000, ready_in_ms=5_000)
    assert hold.transfer_id is not None
    await scene.ship(hold.transfer_id)

    timed.clock.set(hold.expires_at_ms - 1)  # just in time
    await scene.receive(hold.transfer_id)

    timed.clock.set(hold.expires_at_ms)  # the first deadline: no longer one
    arrived = await timed.ledger.get_hold(hold.hold_id)
    assert arrived.status is HoldStatus.PLACED
    assert (arrived.ready_by_ms, arrived.expires_at_ms) == (
        hold.expires_at_ms - 1 + 5_000,
        hold.expires_at_ms - 1 + 30_000,
    )
    timed.clock.set(arrived.expires_at_ms)
    assert (await timed.ledger.get_hold(hold.hold_id)).status is HoldStatus.EXPIRED
    assert await scene.at(scene.store, scene.skus[0]) == (1, 0, 0, 0, 4)


async def test_expire_due_releases_due_holds_and_emits_hold_expire_events(timed: Harness):
    scene = await Scene.make(timed, store_stock=5)
    await timed.ledger.expire_due()  # whatever earlier tests left is due at this clock
    due = await scene.hold(2, 1, pickup_window_ms=1_000)
    later = await scene.hold(1, 1, pickup_window_ms=5_000)
    marks = await timed.stream_marks(scene.skus)

    timed.clock.advance(1_000)
    swept = await timed.ledger.expire_due()

    assert swept == (len(scene.skus) if timed.cluster else 1)  # one per part on a cluster
    events = await timed.events_since(marks, scene.skus)
    assert sorted((e["k"], e["s"], int(e["dhd"]), e["ref"], e["op"]) for e in events) == sorted(
        ("hold_expire", sku, -q, due.hold_id, f"expire:{due.hold_id}")
        for sku, q in zip(scene.skus, (2, 1), strict=True)
    )
    assert (await timed.ledger.get_hold(later.hold_id)).status is HoldStatus.PLACED
    assert await timed.ledger.expire_due() == 0


# -- replays --------------------------------------------------------------------------------


async def replayed(scene: Scene, first: Any, call: Callable[[], Awaitable[Any]]) -> None:
    """``call`` repeats an operation whose first outcome was ``first``: the same again, no
    position changed, no event."""
    before = await scene.snapshot()
    marks = await scene.h.stream_marks(scene.skus)
    try:
        again = await call()
    except DomainError as err:
        again = err
    if isinstance(first, DomainError):
        assert type(again) is type(first)
        assert (again.args, vars(again)) == (first.args, vars(first))
    else:
        assert again == first
    assert await scene.snapshot() == before
    assert await scene.h.events_since(marks, scene.skus) == []


async def test_every_transfer_step_replays_its_first_result_after_the_transfer_moved_on(
    harness: Harness,
):
    scene = await Scene.make(harness)
    ledger, op = harness.ledger, harness.names.op
    r_op, s_op, v_op = op(), op(), op()
    requested = await scene.request(2, 1, op=r_op)
    shipped = await ledger.ship_transfer(s_op, requested.transfer_id)
    arrived = [SkuQty(scene.skus[0], 1)]
    received = await ledger.receive_transfer(v_op, requested.transfer_id, arrived)

    await replayed(scene, requested, lambda: scene.request(2, 1, op=r_op))
    await replayed(scene, shipped, lambda: ledger.ship_transfer(s_op, requested.transfer_id))
    await replayed(
        scene, received, lambda: ledger.receive_transfer(v_op, requested.transfer_id, arrived)
    )

    c_op = op()
    other = await scene.request(1, 1)
    cancelled = await ledger.cancel_transfer(c_op, other.transfer_id)
    await replayed(scene, cancelled, lambda: ledger.cancel_transfer(c_op, other.transfer_id))


async def test_every_hold_step_replays_its_first_result_after_the_hold_moved_on(
    harness: Harness,
):
    scene = await Scene.make(harness, store_stock=5)
    ledger, op = harness.ledger, harness.names.op
    p_op, y_op, k_op = op(), op(), op()
    placed = await scene.hold(2, 1, op=p_op)
    ready = await ledger.ready_hold(y_op, placed.hold_id)
    collected = await ledger.collect_hold(k_op, placed.hold_id)

    await replayed(scene, placed, lambda: scene.hold(2, 1, op=p_op))
    await replayed(scene, ready, lambda: ledger.ready_hold(y_op, placed.hold_id))
    await replayed(scene, collected, lambda: ledger.collect_hold(k_op, placed.hold_id))

    c_op, s_op = op(), op()
    sourced = await scene.hold(1, 1, source=True, op=s_op)
    cancelled = await ledger.cancel_hold(c_op, sourced.hold_id)
    await replayed(scene, cancelled, lambda: ledger.cancel_hold(c_op, sourced.hold_id))
    await replayed(scene, sourced, lambda: scene.hold(1, 1, source=True, op=s_op))


async def test_a_refused_step_replays_its_refusal_even_once_it_would_succeed(harness: Harness):
    scene = await Scene.make(harness)
    ledger = harness.ledger
    hold = await scene.hold(1, 1, source=True)
    assert hold.transfer_id is not None
    y_op = harness.names.op()
    with pytest.raises(IllegalTransition) as waiting:
        await ledger.ready_hold(y_op, hold.hold_id)
    await scene.ship(hold.transfer_id)
    await scene.receive(hold.transfer_id)
    await replayed(scene, waiting.value, lambda: ledger.ready_hold(y_op, hold.hold_id))

    r_op = harness.names.op()
    with pytest.raises(InsufficientStock) as short:
        await scene.request(50, 1, op=r_op)
    for sku in scene.skus:
        await harness.stock(scene.wh, sku, 100)
    await replayed(scene, short.value, lambda: scene.request(50, 1, op=r_op))


# -- events ---------------------------------------------------------------------------------


async def test_every_step_appends_one_event_per_line_and_position(timed: Harness):
    scene = await Scene.make(timed, count=1, store_stock=2)
    [sku] = scene.skus
    marks = await timed.stream_marks(scene.skus)

    t = await scene.request(4)
    await scene.ship(t.transfer_id)
    await scene.receive(t.transfer_id, [SkuQty(sku, 3)])
    local = await scene.hold(2)
    await timed.ledger.ready_hold(timed.names.op(), local.hold_id)
    await timed.ledger.collect_hold(timed.names.op(), local.hold_id)
    sourced = await scene.hold(1, source=True)
    assert sourced.transfer_id is not None
    await scene.ship(sourced.transfer_id)
    await scene.receive(sourced.transfer_id)
    await timed.ledger.cancel_hold(timed.names.op(), sourced.hold_id)
    unshipped = await scene.request(1)
    await timed.ledger.cancel_transfer(timed.names.op(), unshipped.transfer_id)

    events = await timed.events_since(marks, scene.skus)
    wh, store = scene.wh, scene.store
    assert [
        (e["k"], e["n"], tuple(int(e[f]) for f in ("doh", "drs", "dhd", "dib"))) for e in events
    ] == [
        ("transfer_reserve", wh, (0, 4, 0, 0)),
        ("ship_out", wh, (-4, -4, 0, 0)),
        ("ship_in", store, (0, 0, 0, 4)),
        ("receive", store, (3, 0, 0, -3)),
        ("loss", store, (0, 0, 0, -1)),
        ("hold", store, (0, 0, 2, 0)),
        ("collect", store, (-2, 0, -2, 0)),
        ("transfer_reserve", wh, (0, 1, 0, 0)),
        ("ship_out", wh, (-1, -1, 0, 0)),
        ("ship_in", store, (0, 0, 0, 1)),
        ("receive", store, (1, 0, 0, -1)),
        ("hold_arrive", store, (0, 0, 1, 0)),
        ("hold_cancel", store, (0, 0, -1, 0)),
        ("transfer_reserve", wh, (0, 1, 0, 0)),
        ("transfer_cancel", wh, (0, -1, 0, 0)),
    ]
    refs = [e["ref"] for e in events]
    assert refs[:5] == [t.transfer_id] * 5
    assert refs[5:7] == [local.hold_id] * 2
    assert refs[11:13] == [sourced.hold_id] * 2
    last = {(e["n"], e["s"]): e for e in events}
    for (node, s), e in last.items():
        p = await timed.ledger.position(node, s)
        assert tuple(int(e[f]) for f in ("oh", "rs", "hd", "ib", "v")) == (
            p.on_hand,
            p.reserved,
            p.held,
            p.inbound,
            p.version,
        )


async def test_a_reservation_cannot_take_what_a_hold_or_a_transfer_holds(harness: Harness):
    scene = await Scene.make(harness, count=1, stock=5, store_stock=5)
    [sku] = scene.skus
    await scene.hold(4)
    await scene.request(4)

    with pytest.raises(InsufficientStock) as err:
        await harness.ledger.reserve(
            harness.names.op(),
            [Line(scene.store, sku, 2), Line(scene.wh, sku, 2)],
            ttl_ms=60_000,
        )

    assert err.value.shortages == [Shortage(scene.store, sku, 2, 1), Shortage(scene.wh, sku, 2, 1)]
