"""Expiry is exact at the deadline whether or not a sweeper runs: it is data every script reads."""

from __future__ import annotations

import asyncio
import time

import pytest

from omnistock.domain.errors import IllegalTransition
from omnistock.domain.reservation import ReservationStatus
from omnistock.domain.stock import Line
from tests.integration.ledger_fixtures import (
    Harness,
    harness_fixture,  # noqa: F401
    timed_fixture,  # noqa: F401
)


async def test_reservation_stops_counting_the_moment_the_server_clock_reaches_its_deadline(
    harness: Harness,
):
    node, sku = harness.names.node(), harness.names.sku()
    await harness.stock(node, sku, 5)
    res = await harness.ledger.reserve(harness.names.op(), [Line(node, sku, 5)], ttl_ms=1500)

    still_reserved = await harness.ledger.position(node, sku)
    read_before = await harness.server_time_ms()
    assert read_before < res.expires_at_ms - 200, "setup too slow to observe the reservation"
    assert (still_reserved.reserved, still_reserved.available) == (5, 0)

    give_up = time.monotonic() + 5
    while await harness.server_time_ms() < res.expires_at_ms:
        assert time.monotonic() < give_up, "server clock never reached the deadline"
        await asyncio.sleep(0.02)
    after = await harness.ledger.position(node, sku)
    seen = await harness.ledger.get_reservation(res.reservation_id)

    assert (after.reserved, after.available) == (0, 5)
    assert seen.status is ReservationStatus.EXPIRED
    with pytest.raises(IllegalTransition) as err:
        await harness.ledger.commit(harness.names.op(), res.reservation_id)
    assert err.value.status == "expired"


async def test_one_millisecond_before_the_deadline_the_reservation_still_counts(timed: Harness):
    node, sku = timed.names.node(), timed.names.sku()
    await timed.stock(node, sku, 5)
    res = await timed.ledger.reserve(timed.names.op(), [Line(node, sku, 2)], ttl_ms=30_000)

    timed.clock.set(res.expires_at_ms - 1)

    assert (await timed.ledger.position(node, sku)).available == 3
    assert (await timed.ledger.get_reservation(res.reservation_id)).status == "active"
    done = await timed.ledger.commit(timed.names.op(), res.reservation_id)
    assert done.status is ReservationStatus.COMMITTED


async def test_at_the_deadline_the_reservation_is_expired(timed: Harness):
    node, sku = timed.names.node(), timed.names.sku()
    await timed.stock(node, sku, 5)
    res = await timed.ledger.reserve(timed.names.op(), [Line(node, sku, 2)], ttl_ms=30_000)
    assert res.expires_at_ms == timed.clock.now + 30_000

    timed.clock.set(res.expires_at_ms)

    assert (await timed.ledger.position(node, sku)).available == 5
    assert (await timed.ledger.get_reservation(res.reservation_id)).status == "expired"
    with pytest.raises(IllegalTransition):
        await timed.ledger.commit(timed.names.op(), res.reservation_id)


async def test_every_partition_of_a_reservation_sees_it_expire_at_the_deadline(timed: Harness):
    """Reads of any one SKU, not only of the reservation's first, see the deadline pass."""
    node = timed.names.node()
    skus = timed.names.skus_in_distinct_partitions(3)
    for sku in skus:
        await timed.stock(node, sku, 4)
    res = await timed.ledger.reserve(
        timed.names.op(), [Line(node, s, 4) for s in skus], ttl_ms=30_000
    )

    timed.clock.set(res.expires_at_ms)

    for sku in reversed(skus):  # the last partitions first: no read of the home runs before
        pos = await timed.ledger.position(node, sku)
        assert (pos.reserved, pos.available) == (0, 4), sku


async def test_a_reserve_at_the_deadline_can_take_the_expired_stock(timed: Harness):
    node, sku = timed.names.node(), timed.names.sku()
    await timed.stock(node, sku, 3)
    first = await timed.ledger.reserve(timed.names.op(), [Line(node, sku, 3)], ttl_ms=10_000)

    timed.clock.set(first.expires_at_ms)
    second = await timed.ledger.reserve(timed.names.op(), [Line(node, sku, 3)], ttl_ms=10_000)

    assert second.status is ReservationStatus.ACTIVE
    assert (await timed.ledger.get_reservation(first.reservation_id)).status == "expired"


async def test_expire_due_releases_due_reservations_counts_them_and_emits_expire_events(
    timed: Harness,
):
    assert timed.clock is not None
    node = timed.names.node()
    skus = timed.names.skus_in_distinct_partitions(4)
    for sku in skus:
        await timed.stock(node, sku, 10)
    await timed.ledger.expire_due()  # whatever earlier tests left is due at this clock
    due = [
        await timed.ledger.reserve(timed.names.op(), [Line(node, s, 1 + i)], ttl_ms=1_000)
        for i, s in enumerate(skus[:3])
    ]
    later = await timed.ledger.reserve(timed.names.op(), [Line(node, skus[3], 4)], ttl_ms=5_000)
    marks = await timed.stream_marks(skus)

    timed.clock.advance(1_000)
    assert await timed.ledger.expire_due() == 3

    events = await timed.events_since(marks, skus)
    assert sorted((e["k"], e["s"], e["drs"], e["ref"], e["op"]) for e in events) == sorted(
        ("expire", s, str(-(1 + i)), r.reservation_id, f"expire:{r.reservation_id}")
        for i, (s, r) in enumerate(zip(skus[:3], due, strict=True))
    )
    assert all(e["t"] == str(timed.clock.now) and e["rs"] == "0" for e in events)
    for r in due:
        assert (await timed.ledger.get_reservation(r.reservation_id)).status == "expired"
    assert (await timed.ledger.get_reservation(later.reservation_id)).status == "active"
    assert (await timed.ledger.position(node, skus[3])).reserved == 4
    assert await timed.ledger.expire_due() == 0


async def test_expire_due_releases_every_line_of_a_multi_partition_reservation(timed: Harness):
    assert timed.clock is not None
    node = timed.names.node()
    skus = timed.names.skus_in_distinct_partitions(3)
    for sku in skus:
        await timed.stock(node, sku, 10)
    await timed.ledger.expire_due()
    res = await timed.ledger.reserve(
        timed.names.op(), [Line(node, s, 2) for s in skus], ttl_ms=1_000
    )

    timed.clock.advance(1_000)

    assert await timed.ledger.expire_due() >= 1
    marks = await timed.stream_marks(skus)
    snapshot = await timed.snapshot(skus)  # reads run expiry too: nothing may be left for them
    assert await timed.events_since(marks, skus) == []
    assert [(p.reserved, p.available) for s in skus for p in snapshot[s]] == [(0, 10)] * 3
    assert (await timed.ledger.get_reservation(res.reservation_id)).status == "expired"
