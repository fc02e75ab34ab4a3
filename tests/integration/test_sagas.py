"""Operations across partitions on the cluster: sagas of per-partition scripts.

A multi-partition reservation has one part per partition; the part in its home partition (named by
its id) is the header, which knows the others. A crashed coordinator is simulated by calling the
saga's steps directly and then stopping.
"""

from __future__ import annotations

import pytest

from omnistock.domain.errors import IllegalTransition, InsufficientStock
from omnistock.domain.reservation import Reservation, ReservationStatus
from omnistock.domain.stock import Line
from omnistock.reservations import keys, sagas
from tests.integration.ledger_fixtures import (
    Harness,
    timed_cluster_fixture,  # noqa: F401
)

pytestmark = pytest.mark.cluster

PIN_GRACE_MS = 60_000


async def _multi_part(h: Harness, parts: int = 3, ttl_ms: int = 600_000, qty: int = 2):
    """A reservation over ``parts`` partitions of a fresh node, 10 on hand of every SKU."""
    node = h.names.node()
    # In partition order: the first SKU's partition holds the header, as parts are reserved in
    # partition order.
    skus = sorted(h.names.skus_in_distinct_partitions(parts), key=keys.partition_of)
    for sku in skus:
        await h.stock(node, sku, 10)
    res = await h.ledger.reserve(h.names.op(), [Line(node, s, qty) for s in skus], ttl_ms=ttl_ms)
    home = keys.home_of(res.reservation_id)
    # Parts are reserved in partition order, so the header is the lowest partition.
    partitions = [keys.partition_of(s) for s in skus]
    assert res.reservation_id.startswith("m") and home == min(partitions)
    others = [p for p in partitions if p != home]
    return node, skus, res, home, others


async def _positions(h: Harness, node: str, skus: list[str]) -> list[tuple[int, int]]:
    return [(p.on_hand, p.reserved) for p in [await h.ledger.position(node, s) for s in skus]]


async def test_short_partition_leaves_nothing_reserved_in_any_partition(timed_cluster: Harness):
    h = timed_cluster
    node = h.names.node()
    skus = h.names.skus_in_distinct_partitions(4)
    for sku in skus:
        await h.stock(node, sku, 5)
    op = h.names.op()
    lines = [
        Line(node, skus[0], 5),
        Line(node, skus[1], 1),
        Line(node, skus[2], 6),
        Line(node, skus[3], 2),
    ]

    with pytest.raises(InsufficientStock) as err:
        await h.ledger.reserve(op, lines, ttl_ms=600_000)

    assert [(s.sku, s.requested, s.available) for s in err.value.shortages] == [(skus[2], 6, 5)]
    assert await _positions(h, node, skus) == [(5, 0)] * 4
    rid = keys.reservation_id(op, min(keys.partition_of(s) for s in skus), single=False)
    for sku in skus:
        assert await h.part_status(keys.partition_of(sku), rid) not in ("a", "p")


async def test_replayed_short_multi_partition_reserve_raises_the_same_shortages(
    timed_cluster: Harness,
):
    h = timed_cluster
    node = h.names.node()
    skus = h.names.skus_in_distinct_partitions(3)
    for sku in skus:
        await h.stock(node, sku, 5)
    op = h.names.op()
    lines = [Line(node, skus[0], 1), Line(node, skus[1], 7), Line(node, skus[2], 2)]
    with pytest.raises(InsufficientStock) as first:
        await h.ledger.reserve(op, lines, ttl_ms=600_000)

    assert [(s.sku, s.requested, s.available) for s in first.value.shortages] == [(skus[1], 7, 5)]

    for _ in range(2):  # a replay must not feed the next one
        with pytest.raises(InsufficientStock) as again:
            await h.ledger.reserve(op, lines, ttl_ms=600_000)
        assert again.value.shortages == first.value.shortages
    assert await _positions(h, node, skus) == [(5, 0)] * 3


async def test_multi_partition_commit_commits_every_part(timed_cluster: Harness):
    h = timed_cluster
    node, skus, res, home, others = await _multi_part(h)

    done = await h.ledger.commit(h.names.op(), res.reservation_id)

    assert done.status is ReservationStatus.COMMITTED
    assert sorted(done.lines, key=lambda line: line.sku) == sorted(
        res.lines, key=lambda line: line.sku
    )
    assert await _positions(h, node, skus) == [(8, 0)] * 3
    for p in [home, *others]:
        assert await h.part_status(p, res.reservation_id) == "c"


async def test_multi_partition_release_releases_every_part(timed_cluster: Harness):
    h = timed_cluster
    node, skus, res, home, others = await _multi_part(h)

    done = await h.ledger.release(h.names.op(), res.reservation_id)

    assert done.status is ReservationStatus.RELEASED
    assert await _positions(h, node, skus) == [(10, 0)] * 3
    for p in [home, *others]:
        assert await h.part_status(p, res.reservation_id) == "r"


async def test_commit_is_refused_when_a_part_is_no_longer_active_and_others_stay_active(
    timed_cluster: Harness,
):
    h = timed_cluster
    node, skus, res, home, others = await _multi_part(h, ttl_ms=30_000)
    gone, kept = others
    await h.ledger._finish_part("release", gone, "x", res.reservation_id)

    with pytest.raises(IllegalTransition) as err:
        await h.ledger.commit(h.names.op(), res.reservation_id)

    assert (err.value.status, err.value.action) == ("released", "commit")
    assert await h.part_status(home, res.reservation_id) == "a"
    assert await h.part_status(kept, res.reservation_id) == "a"
    assert await h.part_status(gone, res.reservation_id) == "r"
    assert await _positions(h, node, skus) == [(10, 2), (10, 0), (10, 2)]
    # un-pinned: the parts left active still expire at their own deadline
    h.clock.set(res.expires_at_ms)
    assert await _positions(h, node, skus) == [(10, 0)] * 3
    assert await h.part_status(kept, res.reservation_id) == "x"


async def _crash_after_pinning(h: Harness, res: Reservation, others: list[int]) -> None:
    for p in others:
        assert (await sagas._pin(h.ledger, p, res.reservation_id))["st"] == "p"


async def test_pins_are_kept_until_their_grace_has_passed(timed_cluster: Harness):
    h = timed_cluster
    node, skus, res, home, others = await _multi_part(h, ttl_ms=30_000)
    await _crash_after_pinning(h, res, others)

    h.clock.advance(PIN_GRACE_MS - 1)
    await h.ledger.expire_due()

    assert [await h.part_status(p, res.reservation_id) for p in others] == ["p", "p"]
    assert await h.part_status(home, res.reservation_id) == "x"  # the header has no pin
    assert await _positions(h, node, skus) == [(10, 0), (10, 2), (10, 2)]


async def test_stuck_pins_are_committed_when_the_header_committed(timed_cluster: Harness):
    h = timed_cluster
    node, skus, res, home, others = await _multi_part(h)
    await _crash_after_pinning(h, res, others)
    await h.ledger._finish_part("commit", home, h.names.op(), res.reservation_id)
    assert await _positions(h, node, skus) == [(8, 0), (10, 2), (10, 2)]

    h.clock.advance(PIN_GRACE_MS + 1)
    await h.ledger.expire_due()

    assert [await h.part_status(p, res.reservation_id) for p in others] == ["c", "c"]
    assert await _positions(h, node, skus) == [(8, 0)] * 3
    assert (await h.ledger.get_reservation(res.reservation_id)).status == "committed"


async def test_stuck_pins_of_an_uncommitted_header_become_active_again(timed_cluster: Harness):
    h = timed_cluster
    node, skus, res, home, others = await _multi_part(h, ttl_ms=600_000)
    await _crash_after_pinning(h, res, others)

    h.clock.advance(PIN_GRACE_MS + 1)
    await h.ledger.expire_due()

    assert [await h.part_status(p, res.reservation_id) for p in [home, *others]] == ["a"] * 3
    assert await _positions(h, node, skus) == [(10, 2)] * 3
    done = await h.ledger.commit(h.names.op(), res.reservation_id)  # a new coordinator may finish
    assert done.status is ReservationStatus.COMMITTED
    assert await _positions(h, node, skus) == [(8, 0)] * 3


async def test_stuck_pins_past_their_deadline_expire_with_the_header(timed_cluster: Harness):
    h = timed_cluster
    node, skus, res, home, others = await _multi_part(h, ttl_ms=30_000)
    await _crash_after_pinning(h, res, others)

    h.clock.advance(PIN_GRACE_MS + 1)
    await h.ledger.expire_due()

    assert [await h.part_status(p, res.reservation_id) for p in [home, *others]] == ["x"] * 3
    assert await _positions(h, node, skus) == [(10, 0)] * 3
    assert (await h.ledger.get_reservation(res.reservation_id)).status == "expired"


async def test_stuck_pins_are_released_when_the_header_was_released(timed_cluster: Harness):
    h = timed_cluster
    node, skus, res, home, others = await _multi_part(h, ttl_ms=600_000)
    await _crash_after_pinning(h, res, others)
    await h.ledger._finish_part("release", home, h.names.op(), res.reservation_id)

    h.clock.advance(PIN_GRACE_MS + 1)
    await h.ledger.expire_due()

    assert [await h.part_status(p, res.reservation_id) for p in others] == ["r", "r"]
    assert await _positions(h, node, skus) == [(10, 0)] * 3
