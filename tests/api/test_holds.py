"""BOPIS holds: placed (held at the store) -> ready -> collected, or placed/ready -> cancelled or
expired (held back to available). Holds with a source start with a transfer to the store and
arrive straight into held. Every step's effect on positions, every illegal step (409, nothing
changed), choosing a source, expiry without a sweeper, idempotent replays and concurrency."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from tests.api.conftest import Ids, auth, position, set_stock
from tests.api.movement_support import (
    HAMBURG,
    MUNICH,
    POTSDAM,
    REPLAYED,
    concurrently_to,
    get_hold,
    get_transfer,
    hold_ok,
    make_store,
    make_warehouse,
    ms_of,
    post_hold,
    q,
    quantities_of,
    same_partition_skus,
    sku_line,
    spread_skus,
    step,
    step_ok,
)
from tests.api.support import assert_problem, concurrently, idem, snapshot

MINUTE_MS = 60_000
DAY_MS = 86_400_000
HOLD_FIELDS = {
    "hold_id",
    "status",
    "store_id",
    "lines",
    "customer_ref",
    "ready_by",
    "expires_at",
    "created_at",
    "short",
}


async def stocked_store(client: Any, ids: Ids, **stock: int) -> tuple[str, list[str]]:
    """A pickup store with ``stock`` of fresh SKUs (keyword order), each in a partition of its
    own; returns (store, skus)."""
    skus = spread_skus(ids, list(stock))
    store = await make_store(client, ids)
    for sku, on_hand in zip(skus, stock.values(), strict=True):
        await set_stock(client, store, sku, on_hand)
    return store, skus


# -- local holds ---------------------------------------------------------------------------------


async def test_a_local_hold_moves_available_into_held(client, ids: Ids) -> None:
    store, (a, b) = await stocked_store(client, ids, a=10, b=3)
    before = time.time() * 1000
    made = await hold_ok(
        client, ids.key(), store, [sku_line(a, 4), sku_line(b, 3)], customer_ref="cust-42"
    )
    after = time.time() * 1000

    assert set(made) == HOLD_FIELDS, made
    assert made["status"] == "placed"
    assert (made["store_id"], made["customer_ref"], made["short"]) == (store, "cust-42", False)
    assert made["lines"] == [{"sku": a, "qty": 4, "held": 4}, {"sku": b, "qty": 3, "held": 3}]
    created = ms_of(made["created_at"])
    assert before - 1000 <= created <= after + 1000
    # Node default pickup_ready_minutes is 30; default pickup window a day.
    assert ms_of(made["ready_by"]) - created == 30 * MINUTE_MS
    assert ms_of(made["expires_at"]) - created == DAY_MS
    assert await get_hold(client, made["hold_id"]) == made

    assert await quantities_of(client, store, a) == q(10, 0, 4, 0, 6)
    assert await quantities_of(client, store, b) == q(3, 0, 3, 0, 0)


@pytest.mark.parametrize(("ready_minutes", "window_s"), [(15, 3600), (0, 1), (90, 1_000_000)])
async def test_ready_by_follows_the_store_and_expiry_the_window(
    client, ids: Ids, ready_minutes: int, window_s: int
) -> None:
    store = await make_store(client, ids, pickup_ready_minutes=ready_minutes)
    sku = ids.sku()
    await set_stock(client, store, sku, 5)
    made = await hold_ok(client, ids.key(), store, [sku_line(sku, 1)], pickup_window_s=window_s)

    created = ms_of(made["created_at"])
    assert ms_of(made["ready_by"]) - created == ready_minutes * MINUTE_MS
    assert ms_of(made["expires_at"]) - created == window_s * 1000


@pytest.mark.parametrize("window_s", [1_000_001, 30 * 86_400], ids=["just-over-1e6-s", "30-days"])
async def test_pickup_windows_up_to_30_days_are_accepted(client, ids: Ids, window_s: int) -> None:
    """HoldIn allows pickup_window_s up to 30 days (MAX_PICKUP_WINDOW_S)."""
    store = await make_store(client, ids)
    sku = ids.sku()
    await set_stock(client, store, sku, 5)
    response = await post_hold(
        client, ids.key(), store, [sku_line(sku, 1)], pickup_window_s=window_s
    )

    assert response.status_code == 201, response.text
    made = response.json()
    assert ms_of(made["expires_at"]) - ms_of(made["created_at"]) == window_s * 1000
    assert await quantities_of(client, store, sku) == q(5, 0, 1, 0, 4)


async def test_ready_changes_no_stock_and_collect_takes_the_goods(client, ids: Ids) -> None:
    store, (a, b) = await stocked_store(client, ids, a=10, b=3)
    hid = (await hold_ok(client, ids.key(), store, [sku_line(a, 4), sku_line(b, 3)]))["hold_id"]
    placed = await snapshot(client, [(store, a), (store, b)])

    ready = await step_ok(client, "holds", hid, "ready")

    assert ready["status"] == "ready"
    assert await get_hold(client, hid) == ready
    assert await snapshot(client, [(store, a), (store, b)]) == placed

    collected = await step_ok(client, "holds", hid, "collect")

    assert collected["status"] == "collected"
    assert await get_hold(client, hid) == collected
    assert await quantities_of(client, store, a) == q(6, 0, 0, 0, 6)
    assert await quantities_of(client, store, b) == q(0, 0, 0, 0, 0)


@pytest.mark.parametrize("first_ready", [False, True], ids=["placed", "ready"])
async def test_cancel_puts_the_goods_back_on_the_shelf(client, ids: Ids, first_ready: bool) -> None:
    store, (a, b) = await stocked_store(client, ids, a=10, b=3)
    hid = (await hold_ok(client, ids.key(), store, [sku_line(a, 4), sku_line(b, 3)]))["hold_id"]
    if first_ready:
        await step_ok(client, "holds", hid, "ready")

    cancelled = await step_ok(client, "holds", hid, "cancel")

    assert cancelled["status"] == "cancelled"
    assert await get_hold(client, hid) == cancelled
    assert await quantities_of(client, store, a) == q(10, 0, 0, 0, 10)
    assert await quantities_of(client, store, b) == q(3, 0, 0, 0, 3)


async def test_a_local_shortage_holds_nothing(client, ids: Ids) -> None:
    store, (a, b) = await stocked_store(client, ids, a=10, b=2)
    reserved = await client.post(
        "/v1/reservations",
        json={"lines": [{"node_id": store, "sku": a, "qty": 3}]},
        headers=idem(ids.key()),
    )
    assert reserved.status_code == 201, reserved.text
    before = await snapshot(client, [(store, a), (store, b)])

    response = await post_hold(client, ids.key(), store, [sku_line(a, 8), sku_line(b, 2)])

    problem = assert_problem(response, 409)
    assert problem["shortages"] == [{"node_id": store, "sku": a, "requested": 8, "available": 7}]
    assert await snapshot(client, [(store, a), (store, b)]) == before


ILLEGAL = {
    "placed": ["collect"],
    "ready": ["ready"],
    "collected": ["ready", "collect", "cancel"],
    "cancelled": ["ready", "collect", "cancel"],
}


@pytest.mark.parametrize("state", list(ILLEGAL))
async def test_an_illegal_step_is_409_and_changes_nothing(client, ids: Ids, state: str) -> None:
    store, (a,) = await stocked_store(client, ids, a=10)
    hid = (await hold_ok(client, ids.key(), store, [sku_line(a, 4)]))["hold_id"]
    path = {"placed": [], "ready": ["ready"], "collected": ["ready", "collect"]}
    for earlier in path.get(state, ["cancel"]):
        await step_ok(client, "holds", hid, earlier)
    before = (await snapshot(client, [(store, a)]), await get_hold(client, hid))
    assert before[1]["status"] == state

    for action in ILLEGAL[state]:
        response = await step(client, "holds", hid, action)

        problem = assert_problem(response, 409)
        assert "shortages" not in problem, action
        assert (await snapshot(client, [(store, a)]), await get_hold(client, hid)) == before


async def test_an_unknown_hold_is_404(client) -> None:
    for hold_id in ("not-a-hold", "h0-000000000000000000000000"):
        assert_problem(await client.get(f"/v1/holds/{hold_id}", headers=auth("oms")), 404)
        for action in ("ready", "collect", "cancel"):
            assert_problem(await step(client, "holds", hold_id, action), 404)


# -- holds with a source -------------------------------------------------------------------------


async def test_a_hold_with_a_source_arrives_into_held_and_counts_from_the_receipt(
    client, ids: Ids
) -> None:
    a, b = spread_skus(ids, ["a", "b"])
    source = await make_warehouse(client, ids, {a: 10, b: 5})
    store = await make_store(client, ids, pickup_ready_minutes=20)
    await set_stock(client, store, a, 2)  # the store's own stock is not touched
    made = await hold_ok(
        client,
        ids.key(),
        store,
        [sku_line(a, 3), sku_line(b, 5)],
        source_node_id=source,
        pickup_window_s=3600,
    )

    assert set(made) == HOLD_FIELDS | {"transfer_id", "source_node_id"}, made
    assert made["status"] == "placed" and made["short"] is False
    assert (made["source_node_id"], made["ready_by"]) == (source, None)
    assert made["lines"] == [{"sku": a, "qty": 3, "held": 0}, {"sku": b, "qty": 5, "held": 0}]
    created = ms_of(made["created_at"])
    assert ms_of(made["expires_at"]) - created == 3600 * 1000
    hid, tid = made["hold_id"], made["transfer_id"]
    transfer = await get_transfer(client, tid)
    assert (transfer["status"], transfer["from_node"], transfer["to_node"]) == (
        "requested",
        source,
        store,
    )
    assert [(x["sku"], x["qty"]) for x in transfer["lines"]] == [(a, 3), (b, 5)]
    assert await quantities_of(client, source, a) == q(10, 3, 0, 0, 7)
    assert await quantities_of(client, source, b) == q(5, 5, 0, 0, 0)
    assert await quantities_of(client, store, a) == q(2, 0, 0, 0, 2)
    assert await quantities_of(client, store, b) == q(0, 0, 0, 0, 0)

    # Not ready before the goods are there.
    pairs = [(source, a), (source, b), (store, a), (store, b)]
    before = (await snapshot(client, pairs), await get_hold(client, hid))
    assert_problem(await step(client, "holds", hid, "ready"), 409)
    assert (await snapshot(client, pairs), await get_hold(client, hid)) == before

    await step_ok(client, "transfers", tid, "ship")
    assert await quantities_of(client, store, a) == q(2, 0, 0, 3, 2)
    assert await quantities_of(client, store, b) == q(0, 0, 0, 5, 0)
    before = (await snapshot(client, pairs), await get_hold(client, hid))
    assert_problem(await step(client, "holds", hid, "ready"), 409)
    assert (await snapshot(client, pairs), await get_hold(client, hid)) == before

    await asyncio.sleep(0.25)  # the receipt is measurably later than the placing
    received_from = time.time() * 1000
    await step_ok(client, "transfers", tid, "receive")
    received_by = time.time() * 1000

    # Straight into held: the store's available does not rise.
    assert await quantities_of(client, store, a) == q(5, 0, 3, 0, 2)
    assert await quantities_of(client, store, b) == q(5, 0, 5, 0, 0)
    arrived = await get_hold(client, hid)
    assert arrived["status"] == "placed" and arrived["short"] is False
    assert arrived["lines"] == [{"sku": a, "qty": 3, "held": 3}, {"sku": b, "qty": 5, "held": 5}]
    assert arrived["created_at"] == made["created_at"]
    ready_by, expires = ms_of(arrived["ready_by"]), ms_of(arrived["expires_at"])
    assert received_from - 1000 <= ready_by - 20 * MINUTE_MS <= received_by + 1000
    assert expires - ready_by == 3600 * 1000 - 20 * MINUTE_MS
    assert expires - created >= 3600 * 1000 + 200

    assert (await step_ok(client, "holds", hid, "ready"))["status"] == "ready"
    assert (await step_ok(client, "holds", hid, "collect"))["status"] == "collected"
    assert await quantities_of(client, store, a) == q(2, 0, 0, 0, 2)
    assert await quantities_of(client, store, b) == q(0, 0, 0, 0, 0)
    assert await quantities_of(client, source, a) == q(7, 0, 0, 0, 7)


@pytest.mark.parametrize("layout", ["spread", "one partition"])
async def test_a_short_arrival_makes_the_hold_short_and_only_cancellable(
    client, ids: Ids, layout: str
) -> None:
    labels = ["a", "b"]
    a, b = (spread_skus if layout == "spread" else same_partition_skus)(ids, labels)
    source = await make_warehouse(client, ids, {a: 10, b: 5})
    store = await make_store(client, ids)
    made = await hold_ok(
        client, ids.key(), store, [sku_line(a, 3), sku_line(b, 2)], source_node_id=source
    )
    hid, tid = made["hold_id"], made["transfer_id"]
    await step_ok(client, "transfers", tid, "ship")

    await step_ok(
        client, "transfers", tid, "receive", json={"lines": [sku_line(a, 1), sku_line(b, 2)]}
    )

    short = await get_hold(client, hid)
    assert short["status"] == "placed" and short["short"] is True
    assert short["lines"] == [{"sku": a, "qty": 3, "held": 1}, {"sku": b, "qty": 2, "held": 2}]
    assert short["ready_by"] is not None
    assert await quantities_of(client, store, a) == q(1, 0, 1, 0, 0)
    assert await quantities_of(client, store, b) == q(2, 0, 2, 0, 0)

    pairs = [(store, a), (store, b)]
    before = (await snapshot(client, pairs), short)
    for action in ("ready", "collect"):
        assert_problem(await step(client, "holds", hid, action), 409)
    assert (await snapshot(client, pairs), await get_hold(client, hid)) == before

    assert (await step_ok(client, "holds", hid, "cancel"))["status"] == "cancelled"
    assert await quantities_of(client, store, a) == q(1, 0, 0, 0, 1)
    assert await quantities_of(client, store, b) == q(2, 0, 0, 0, 2)


async def test_cancelling_before_ship_cancels_the_transfer(client, ids: Ids) -> None:
    a, b = spread_skus(ids, ["a", "b"])
    source = await make_warehouse(client, ids, {a: 10, b: 5})
    store = await make_store(client, ids)
    made = await hold_ok(
        client, ids.key(), store, [sku_line(a, 3), sku_line(b, 5)], source_node_id=source
    )
    store_before = await snapshot(client, [(store, a), (store, b)])

    cancelled = await step_ok(client, "holds", made["hold_id"], "cancel")

    assert cancelled["status"] == "cancelled"
    assert (await get_transfer(client, made["transfer_id"]))["status"] == "cancelled"
    assert await quantities_of(client, source, a) == q(10, 0, 0, 0, 10)
    assert await quantities_of(client, source, b) == q(5, 0, 0, 0, 5)
    assert await snapshot(client, [(store, a), (store, b)]) == store_before


async def test_cancelling_in_transit_lets_the_goods_arrive_as_ordinary_stock(
    client, ids: Ids
) -> None:
    (a,) = spread_skus(ids, ["a"])
    source = await make_warehouse(client, ids, {a: 10})
    store = await make_store(client, ids)
    made = await hold_ok(client, ids.key(), store, [sku_line(a, 3)], source_node_id=source)
    hid, tid = made["hold_id"], made["transfer_id"]
    await step_ok(client, "transfers", tid, "ship")

    cancelled = await step_ok(client, "holds", hid, "cancel")

    assert cancelled["status"] == "cancelled"
    assert (await get_transfer(client, tid))["status"] == "in_transit"
    assert await quantities_of(client, store, a) == q(0, 0, 0, 3, 0)

    await step_ok(client, "transfers", tid, "receive")

    assert await quantities_of(client, store, a) == q(3, 0, 0, 0, 3)
    assert await quantities_of(client, source, a) == q(7, 0, 0, 0, 7)
    assert (await get_hold(client, hid))["status"] == "cancelled"


@pytest.mark.parametrize("shipped", [False, True], ids=["requested", "in_transit"])
async def test_the_transfer_of_a_hold_cannot_be_cancelled_on_its_own(
    client, ids: Ids, shipped: bool
) -> None:
    (a,) = spread_skus(ids, ["a"])
    source = await make_warehouse(client, ids, {a: 10})
    store = await make_store(client, ids)
    made = await hold_ok(client, ids.key(), store, [sku_line(a, 3)], source_node_id=source)
    hid, tid = made["hold_id"], made["transfer_id"]
    if shipped:
        await step_ok(client, "transfers", tid, "ship")
    pairs = [(source, a), (store, a)]
    before = (
        await snapshot(client, pairs),
        await get_hold(client, hid),
        await get_transfer(client, tid),
    )

    response = await step(client, "transfers", tid, "cancel")

    assert_problem(response, 409)
    after = (
        await snapshot(client, pairs),
        await get_hold(client, hid),
        await get_transfer(client, tid),
    )
    assert after == before


async def test_a_shortage_at_the_source_names_the_source_and_changes_nothing(
    client, ids: Ids
) -> None:
    a, b = spread_skus(ids, ["a", "b"])
    source = await make_warehouse(client, ids, {a: 10, b: 1})
    store = await make_store(client, ids)
    await set_stock(client, store, b, 9)  # the store's own stock does not count
    pairs = [(source, a), (source, b), (store, a), (store, b)]
    before = await snapshot(client, pairs)

    response = await post_hold(
        client, ids.key(), store, [sku_line(a, 3), sku_line(b, 2)], source_node_id=source
    )

    problem = assert_problem(response, 409)
    assert problem["shortages"] == [{"node_id": source, "sku": b, "requested": 2, "available": 1}]
    assert await snapshot(client, pairs) == before


# -- allow_transfer: the service chooses the source ----------------------------------------------


async def test_allow_transfer_holds_locally_when_the_store_has_everything(client, ids: Ids) -> None:
    a, b = spread_skus(ids, ["a", "b"])
    near = await make_warehouse(client, ids, {a: 10, b: 10}, at=POTSDAM)
    store = await make_store(client, ids)
    await set_stock(client, store, a, 3)
    await set_stock(client, store, b, 1)

    made = await hold_ok(
        client, ids.key(), store, [sku_line(a, 3), sku_line(b, 1)], allow_transfer=True
    )

    assert set(made) == HOLD_FIELDS, made
    assert made["ready_by"] is not None
    assert made["lines"] == [{"sku": a, "qty": 3, "held": 3}, {"sku": b, "qty": 1, "held": 1}]
    assert await quantities_of(client, store, a) == q(3, 0, 3, 0, 0)
    assert await quantities_of(client, near, a) == q(10, 0, 0, 0, 10)


async def test_allow_transfer_takes_everything_from_the_nearest_node_that_has_it_all(
    client, ids: Ids
) -> None:
    a, b = spread_skus(ids, ["a", "b"])
    store = await make_store(client, ids)  # in Berlin
    await set_stock(client, store, a, 5)  # has a, lacks b
    nearest_partial = await make_warehouse(client, ids, {a: 9, b: 0}, at=POTSDAM)
    far = await make_warehouse(client, ids, {a: 9, b: 9}, at=MUNICH)
    chosen = await make_warehouse(client, ids, {a: 9, b: 9}, at=HAMBURG)
    untouched = [(store, a), (store, b), (nearest_partial, a), (far, a), (far, b)]
    before = await snapshot(client, untouched)

    made = await hold_ok(
        client, ids.key(), store, [sku_line(a, 2), sku_line(b, 1)], allow_transfer=True
    )

    assert made["source_node_id"] == chosen, made
    assert made["ready_by"] is None and made["transfer_id"]
    transfer = await get_transfer(client, made["transfer_id"])
    assert (transfer["from_node"], transfer["to_node"]) == (chosen, store)
    assert await quantities_of(client, chosen, a) == q(9, 2, 0, 0, 7)
    assert await quantities_of(client, chosen, b) == q(9, 1, 0, 0, 8)
    assert await snapshot(client, untouched) == before


async def test_allow_transfer_with_no_node_having_it_all_names_the_store(client, ids: Ids) -> None:
    a, b = spread_skus(ids, ["a", "b"])
    store = await make_store(client, ids)
    await set_stock(client, store, a, 1)
    only_a = await make_warehouse(client, ids, {a: 9}, at=POTSDAM)
    only_b = await make_warehouse(client, ids, {b: 9}, at=HAMBURG)
    pairs = [(store, a), (store, b), (only_a, a), (only_b, b)]
    before = await snapshot(client, pairs)

    response = await post_hold(
        client, ids.key(), store, [sku_line(a, 2), sku_line(b, 1)], allow_transfer=True
    )

    problem = assert_problem(response, 409)
    assert sorted(problem["shortages"], key=lambda s: s["sku"]) == sorted(
        [
            {"node_id": store, "sku": a, "requested": 2, "available": 1},
            {"node_id": store, "sku": b, "requested": 1, "available": 0},
        ],
        key=lambda s: s["sku"],
    )
    assert await snapshot(client, pairs) == before


# -- expiry --------------------------------------------------------------------------------------


async def test_holds_expire_at_expires_at_without_a_sweeper(client, ids: Ids) -> None:
    """Four holds with a one-second window: local, with its transfer arrived, with its transfer
    unshipped, and with its transfer on the way. Once expires_at has passed each reads as
    expired and gives back what it had: held to available, the unshipped transfer cancelled;
    the shipped one arrives later as ordinary stock."""
    a, b, c, d = spread_skus(ids, ["a", "b", "c", "d"])
    store = await make_store(client, ids)
    await set_stock(client, store, a, 10)
    source = await make_warehouse(client, ids, {b: 10, c: 10, d: 10})
    # First, so that it arrives well within its first second; its window restarts on arrival.
    arrived = await hold_ok(
        client, ids.key(), store, [sku_line(d, 5)], source_node_id=source, pickup_window_s=1
    )
    await step_ok(client, "transfers", arrived["transfer_id"], "ship")
    await step_ok(client, "transfers", arrived["transfer_id"], "receive")
    arrived = await get_hold(client, arrived["hold_id"])
    assert arrived["status"] == "placed" and arrived["lines"][0]["held"] == 5, arrived
    assert await quantities_of(client, store, d) == q(5, 0, 5, 0, 0)
    local = await hold_ok(client, ids.key(), store, [sku_line(a, 4)], pickup_window_s=1)
    unshipped = await hold_ok(
        client, ids.key(), store, [sku_line(b, 3)], source_node_id=source, pickup_window_s=1
    )
    on_the_way = await hold_ok(
        client, ids.key(), store, [sku_line(c, 2)], source_node_id=source, pickup_window_s=1
    )
    await step_ok(client, "transfers", on_the_way["transfer_id"], "ship")
    assert await quantities_of(client, store, a) == q(10, 0, 4, 0, 6)
    assert await quantities_of(client, source, b) == q(10, 3, 0, 0, 7)
    assert (await get_hold(client, local["hold_id"]))["status"] == "placed"

    # Waiting for the deadline to pass is what is under test; the margin covers the ms
    # rounding of expires_at.
    holds = (arrived, local, unshipped, on_the_way)
    deadline = max(ms_of(h["expires_at"]) for h in holds) / 1000
    await asyncio.sleep(max(0.0, deadline - time.time()) + 0.05)

    for made in holds:
        assert (await get_hold(client, made["hold_id"]))["status"] == "expired"
    assert await quantities_of(client, store, a) == q(10, 0, 0, 0, 10)
    assert await quantities_of(client, store, d) == q(5, 0, 0, 0, 5)
    assert (await get_transfer(client, unshipped["transfer_id"]))["status"] == "cancelled"
    assert await quantities_of(client, source, b) == q(10, 0, 0, 0, 10)
    assert await quantities_of(client, store, c) == q(0, 0, 0, 2, 0)

    pairs = [(store, a), (store, b), (store, c), (source, b), (source, c)]
    before = (await snapshot(client, pairs), await get_hold(client, local["hold_id"]))
    for action in ("ready", "collect", "cancel"):
        assert_problem(await step(client, "holds", local["hold_id"], action), 409)
    assert (await snapshot(client, pairs), await get_hold(client, local["hold_id"])) == before

    await step_ok(client, "transfers", on_the_way["transfer_id"], "receive")
    assert await quantities_of(client, store, c) == q(2, 0, 0, 0, 2)
    assert (await get_hold(client, on_the_way["hold_id"]))["status"] == "expired"


# -- idempotency ---------------------------------------------------------------------------------


@pytest.mark.parametrize("sourced", [False, True], ids=["local", "with-source"])
async def test_place_replays_with_the_same_key_and_body(client, ids: Ids, sourced: bool) -> None:
    store, (a,) = await stocked_store(client, ids, a=10)
    source = await make_warehouse(client, ids, {a: 10})
    fields = {"source_node_id": source} if sourced else {}
    key = ids.key()
    first = await post_hold(client, key, store, [sku_line(a, 3)], **fields)
    second = await post_hold(client, key, store, [sku_line(a, 3)], **fields)

    assert first.status_code == 201, first.text
    assert REPLAYED not in first.headers
    assert second.status_code == 201, second.text
    assert second.headers.get(REPLAYED) == "true"
    assert second.content == first.content
    if sourced:
        assert await quantities_of(client, source, a) == q(10, 3, 0, 0, 7)
        assert await quantities_of(client, store, a) == q(10, 0, 0, 0, 10)
    else:
        assert await quantities_of(client, store, a) == q(10, 0, 3, 0, 7)
        assert await quantities_of(client, source, a) == q(10, 0, 0, 0, 10)


async def test_replay_of_a_place_after_the_hold_moved_on_is_the_first_response(
    client, ids: Ids
) -> None:
    store, (a,) = await stocked_store(client, ids, a=10)
    key = ids.key()
    first = await post_hold(client, key, store, [sku_line(a, 3)])
    assert first.status_code == 201, first.text
    hid = first.json()["hold_id"]
    await step_ok(client, "holds", hid, "ready")
    await step_ok(client, "holds", hid, "collect")
    collected = await snapshot(client, [(store, a)])

    again = await post_hold(client, key, store, [sku_line(a, 3)])

    assert again.status_code == 201 and again.content == first.content, again.text
    assert again.headers.get(REPLAYED) == "true"
    assert await snapshot(client, [(store, a)]) == collected


async def test_replay_of_an_allow_transfer_place_is_the_first_response(client, ids: Ids) -> None:
    """The replay does not choose again, even though the store now has the goods itself."""
    (a,) = spread_skus(ids, ["a"])
    store = await make_store(client, ids)
    source = await make_warehouse(client, ids, {a: 10}, at=HAMBURG)
    key = ids.key()
    body = {"lines": [sku_line(a, 3)], "allow_transfer": True}
    first = await post_hold(client, key, store, **body)
    assert first.status_code == 201, first.text
    assert first.json()["source_node_id"] == source
    await set_stock(client, store, a, 10)
    before = await snapshot(client, [(store, a), (source, a)])

    again = await post_hold(client, key, store, **body)

    assert again.status_code == 201 and again.content == first.content, again.text
    assert again.headers.get(REPLAYED) == "true"
    assert await snapshot(client, [(store, a), (source, a)]) == before


async def test_place_under_a_used_key_with_another_body_is_refused(client, ids: Ids) -> None:
    store, (a,) = await stocked_store(client, ids, a=10)
    key = ids.key()
    await hold_ok(client, key, store, [sku_line(a, 3)])
    before = await snapshot(client, [(store, a)])

    for other in (
        {"lines": [sku_line(a, 4)]},
        {"lines": [sku_line(a, 3)], "customer_ref": "someone-else"},
        {"lines": [sku_line(a, 3)], "pickup_window_s": 60},
    ):
        response = await post_hold(client, key, store, **other)
        assert_problem(response, 422, "Idempotency-Key")
    assert await snapshot(client, [(store, a)]) == before


async def test_replay_of_a_shortage_is_the_same_409_even_once_stock_arrives(
    client, ids: Ids
) -> None:
    store, (a,) = await stocked_store(client, ids, a=2)
    key = ids.key()
    first = await post_hold(client, key, store, [sku_line(a, 5)])
    assert_problem(first, 409)
    await set_stock(client, store, a, 50)

    second = await post_hold(client, key, store, [sku_line(a, 5)])

    assert second.status_code == 409 and second.content == first.content
    assert second.headers.get(REPLAYED) == "true"
    assert (await position(client, store, a))["held"] == 0


async def test_steps_with_keys_replay_and_change_stock_once(client, ids: Ids) -> None:
    store, (a,) = await stocked_store(client, ids, a=10)
    hid = (await hold_ok(client, ids.key(), store, [sku_line(a, 4)]))["hold_id"]
    for action, expected in (("ready", q(10, 0, 4, 0, 6)), ("collect", q(6, 0, 0, 0, 6))):
        key = ids.key()
        first = await step(client, "holds", hid, action, key)
        second = await step(client, "holds", hid, action, key)
        assert first.status_code == 200, first.text
        assert REPLAYED not in first.headers
        assert second.status_code == 200 and second.content == first.content, second.text
        assert second.headers.get(REPLAYED) == "true"
        assert await quantities_of(client, store, a) == expected

    other = (await hold_ok(client, ids.key(), store, [sku_line(a, 2)]))["hold_id"]
    key = ids.key()
    first = await step(client, "holds", other, "cancel", key)
    second = await step(client, "holds", other, "cancel", key)
    assert first.status_code == 200 and first.json()["status"] == "cancelled", first.text
    assert second.status_code == 200 and second.content == first.content
    assert second.headers.get(REPLAYED) == "true"
    assert await quantities_of(client, store, a) == q(6, 0, 0, 0, 6)

    # The key of one step is not reusable for another.
    reused = await step(client, "holds", hid, "cancel", key)
    assert_problem(reused, 422, "Idempotency-Key")


async def test_replay_of_ready_after_collect_is_still_the_first_response(client, ids: Ids) -> None:
    """Idempotency: the same key and request again gets the stored first response, whatever
    happened to the hold since."""
    store, (a,) = await stocked_store(client, ids, a=10)
    hid = (await hold_ok(client, ids.key(), store, [sku_line(a, 4)]))["hold_id"]
    key = ids.key()
    ready = await step(client, "holds", hid, "ready", key)
    assert ready.status_code == 200, ready.text
    await step_ok(client, "holds", hid, "collect")
    collected = await snapshot(client, [(store, a)])

    again = await step(client, "holds", hid, "ready", key)

    assert again.status_code == 200, again.text
    assert again.content == ready.content
    assert again.headers.get(REPLAYED) == "true"
    assert await snapshot(client, [(store, a)]) == collected
    assert (await get_hold(client, hid))["status"] == "collected"


async def test_replay_of_a_refused_ready_is_the_same_409_after_arrival(client, ids: Ids) -> None:
    """A refused step under a key is answered the same way when repeated under that key, even
    once the step would succeed: the key's stored first response is the 409."""
    (a,) = spread_skus(ids, ["a"])
    source = await make_warehouse(client, ids, {a: 10})
    store = await make_store(client, ids)
    made = await hold_ok(client, ids.key(), store, [sku_line(a, 3)], source_node_id=source)
    hid, tid = made["hold_id"], made["transfer_id"]
    key = ids.key()
    refused = await step(client, "holds", hid, "ready", key)
    assert_problem(refused, 409)
    await step_ok(client, "transfers", tid, "ship")
    await step_ok(client, "transfers", tid, "receive")

    again = await step(client, "holds", hid, "ready", key)

    assert again.status_code == 409, again.text
    assert again.content == refused.content
    assert again.headers.get(REPLAYED) == "true"
    assert (await get_hold(client, hid))["status"] == "placed"


# -- concurrency ---------------------------------------------------------------------------------


async def test_concurrent_holds_for_the_last_units_never_oversell(client, ids: Ids) -> None:
    store, (a,) = await stocked_store(client, ids, a=4)
    requests = [
        {
            "json": {"store_id": store, "lines": [sku_line(a, 1)], "customer_ref": f"c-{i}"},
            "headers": idem(ids.key()),
        }
        for i in range(10)
    ]

    answers = await concurrently(client, "POST", "/v1/holds", requests)

    created = [a for a in answers if a.status_code == 201]
    refused = [a for a in answers if a.status_code == 409]
    assert len(created) == 4 and len(refused) == 6, [x.text for x in answers]
    assert len({x.json()["hold_id"] for x in created}) == 4
    for answer in refused:
        problem = assert_problem(answer, 409)
        assert problem["shortages"] == [
            {"node_id": store, "sku": a, "requested": 1, "available": 0}
        ]
    assert await quantities_of(client, store, a) == q(4, 0, 4, 0, 0)
    for answer in created:
        assert (await get_hold(client, answer.json()["hold_id"]))["lines"][0]["held"] == 1


async def test_concurrent_holds_of_several_units_hold_no_more_than_there_is(
    client, ids: Ids
) -> None:
    store, (a,) = await stocked_store(client, ids, a=7)
    requests = [
        {
            "json": {"store_id": store, "lines": [sku_line(a, 2)], "customer_ref": f"c-{i}"},
            "headers": idem(ids.key()),
        }
        for i in range(10)
    ]

    answers = await concurrently(client, "POST", "/v1/holds", requests)

    created = [a for a in answers if a.status_code == 201]
    assert len(created) == 3, [x.text for x in answers]
    assert all(x.status_code in (201, 409) for x in answers), [x.text for x in answers]
    assert await quantities_of(client, store, a) == q(7, 0, 6, 0, 1)


async def test_concurrent_allow_transfer_holds_look_again_when_the_nearest_source_runs_out(
    client, ids: Ids
) -> None:
    """The nearest source has one unit, a farther one plenty: every hold can be placed, from one
    or the other. A hold that lost the nearest source's last unit to another between looking
    and holding looks again (holds.py: "Stock can move between the look and the hold: then
    look again") instead of being refused."""
    (a,) = spread_skus(ids, ["a"])
    store = await make_store(client, ids)
    near = await make_warehouse(client, ids, {a: 1}, at=POTSDAM)
    far = await make_warehouse(client, ids, {a: 20}, at=MUNICH)
    requests = [
        {
            "json": {
                "store_id": store,
                "lines": [sku_line(a, 1)],
                "customer_ref": f"c-{i}",
                "allow_transfer": True,
            },
            "headers": idem(ids.key()),
        }
        for i in range(10)
    ]

    answers = await concurrently(client, "POST", "/v1/holds", requests)

    assert [x.status_code for x in answers] == [201] * 10, [x.text for x in answers]
    assert all(REPLAYED not in x.headers for x in answers)
    sources = sorted(x.json()["source_node_id"] for x in answers)
    assert sources.count(near) == 1 and sources.count(far) == 9, sources
    assert await quantities_of(client, near, a) == q(1, 1, 0, 0, 0)
    assert await quantities_of(client, far, a) == q(20, 9, 0, 0, 11)


async def test_concurrent_collects_and_cancels_of_one_hold_settle_it_once(client, ids: Ids) -> None:
    store, (a,) = await stocked_store(client, ids, a=10)
    hid = (await hold_ok(client, ids.key(), store, [sku_line(a, 4)]))["hold_id"]
    await step_ok(client, "holds", hid, "ready")
    actions = ["collect", "cancel"] * 5

    answers = await concurrently_to(
        client,
        "POST",
        [(f"/v1/holds/{hid}/{action}", {"headers": auth("oms")}) for action in actions],
    )

    outcomes = list(zip(actions, answers, strict=True))
    won = [action for action, answer in outcomes if answer.status_code == 200]
    assert len(won) == 1, [(action, answer.text) for action, answer in outcomes]
    for _action, answer in outcomes:
        if answer.status_code != 200:
            assert_problem(answer, 409)
    final = await get_hold(client, hid)
    if won[0] == "collect":
        assert final["status"] == "collected"
        assert await quantities_of(client, store, a) == q(6, 0, 0, 0, 6)
    else:
        assert final["status"] == "cancelled"
        assert await quantities_of(client, store, a) == q(10, 0, 0, 0, 10)
