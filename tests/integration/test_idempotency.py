"""Repeating an operation id replays the first outcome: same result or same error, no change.

Each test runs an operation, then runs it again with the same operation id and checks that the
second call answers exactly as the first, changes no position (versions included) and appends no
event about the test's SKUs.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import pytest

from omnistock.domain.errors import (
    BelowCommitted,
    DomainError,
    IllegalTransition,
    InsufficientStock,
    VersionConflict,
)
from omnistock.domain.stock import Line
from omnistock.reservations import keys
from tests.integration.ledger_fixtures import (
    LONG_TTL_MS,
    Harness,
    harness_fixture,  # noqa: F401
    receipt,
)


async def _outcome(call: Callable[[], Awaitable[Any]]) -> Any:
    try:
        return await call()
    except DomainError as err:
        return err


def _same(first: Any, again: Any) -> None:
    if isinstance(first, DomainError):
        assert type(again) is type(first), again
        assert (again.args, vars(again)) == (first.args, vars(first))
    else:
        assert again == first


async def replay_is_inert(
    h: Harness, skus: Sequence[str], call: Callable[[], Awaitable[Any]]
) -> Any:
    """Runs ``call`` twice; the second run must replay the first and change nothing."""
    first = await _outcome(call)
    before = await h.snapshot(skus)
    marks = await h.stream_marks(skus)
    again = await _outcome(call)
    _same(first, again)
    assert await h.snapshot(skus) == before
    assert await h.events_since(marks, skus) == []
    return first


async def _stocked(h: Harness, count: int, on_hand: int = 10) -> tuple[str, list[str]]:
    node = h.names.node()
    skus = h.names.skus_in_distinct_partitions(count)
    for sku in skus:
        await h.stock(node, sku, on_hand)
    return node, skus


async def test_replayed_set_stock_returns_the_first_position(harness: Harness):
    node, [sku] = await _stocked(harness, 1)
    op = harness.names.op()
    first = await replay_is_inert(
        harness, [sku], lambda: harness.ledger.set_stock(op, node, sku, 12, safety_stock=1)
    )
    assert (first.on_hand, first.safety_stock, first.version) == (12, 1, 2)


async def test_replayed_set_stock_after_a_later_change_returns_the_first_position(
    harness: Harness,
):
    node, [sku] = await _stocked(harness, 1)
    op = harness.names.op()
    first = await harness.ledger.set_stock(op, node, sku, 12)
    latest = await harness.ledger.set_stock(harness.names.op(), node, sku, 30)

    again = await replay_is_inert(
        harness, [sku], lambda: harness.ledger.set_stock(op, node, sku, 12)
    )

    assert again == first
    assert await harness.ledger.position(node, sku) == latest


async def test_replayed_adjust_returns_the_first_positions(harness: Harness):
    node, skus = await _stocked(harness, 3)
    op = harness.names.op()
    lines = [receipt(node, skus[0], 4), receipt(node, skus[1], -2), receipt(node, skus[2], 1)]
    first = await replay_is_inert(harness, skus, lambda: harness.ledger.adjust(op, lines))
    assert [p.on_hand for p in first] == [14, 8, 11]


async def test_replayed_reserve_returns_the_same_reservation(harness: Harness):
    node, skus = await _stocked(harness, 3)
    op = harness.names.op()
    lines = [Line(node, s, 2) for s in skus]
    first = await replay_is_inert(
        harness, skus, lambda: harness.ledger.reserve(op, lines, ttl_ms=LONG_TTL_MS)
    )
    assert first.status == "active"
    assert [p.reserved for s in skus for p in await harness.ledger.sku_positions(s)] == [2, 2, 2]


@pytest.mark.parametrize("quirk", ['"quoted"', "back\\slash", "a/b", "ünïcødé €"])
@pytest.mark.parametrize("order_ref", [None, "ORD-7"])
async def test_a_reservation_under_an_op_id_that_needs_escaping_reads_replays_and_ends(
    harness: Harness, quirk: str, order_ref: str | None
):
    """The operation id is kept in the reservation's record: quotes, backslashes and non-ASCII
    text in it must not break the record, which must still read, replay and release."""
    node, first_sku = harness.names.node(), harness.names.sku()
    skus = [first_sku, harness.names.sku(partition=keys.partition_of(first_sku))]
    for sku in skus:
        await harness.stock(node, sku, 10)
    op = harness.names.op() + quirk
    lines = [Line(node, skus[0], 3), Line(node, skus[1], 1)]
    first = await replay_is_inert(
        harness,
        skus,
        lambda: harness.ledger.reserve(op, lines, ttl_ms=LONG_TTL_MS, order_ref=order_ref),
    )
    assert (first.status, first.lines, first.order_ref) == ("active", lines, order_ref)
    assert await harness.ledger.get_reservation(first.reservation_id) == first
    released = await harness.ledger.release(harness.names.op(), first.reservation_id)
    assert (released.status, released.lines, released.order_ref) == ("released", lines, order_ref)
    assert released.expires_at_ms == first.expires_at_ms
    assert released.created_at_ms == first.created_at_ms
    assert await harness.ledger.get_reservation(first.reservation_id) == released
    assert [p.reserved for s in skus for p in await harness.ledger.sku_positions(s)] == [0, 0]


async def test_retried_reserve_after_the_stock_changed_returns_the_first_reservation(
    harness: Harness,
):
    node, skus = await _stocked(harness, 2)
    op = harness.names.op()
    lines = [Line(node, s, 6) for s in skus]
    first = await harness.ledger.reserve(op, lines, ttl_ms=LONG_TTL_MS)
    await harness.ledger.adjust(harness.names.op(), [receipt(node, s, -4) for s in skus])

    again = await replay_is_inert(
        harness, skus, lambda: harness.ledger.reserve(op, lines, ttl_ms=LONG_TTL_MS)
    )

    assert again == first
    assert again.reservation_id == first.reservation_id
    after = await harness.snapshot(skus)
    assert [(p.on_hand, p.reserved) for s in skus for p in after[s]] == [(6, 6), (6, 6)]


async def test_replayed_short_reserve_raises_the_same_shortages(harness: Harness):
    node, [sku] = await _stocked(harness, 1, on_hand=3)
    op = harness.names.op()
    err = await replay_is_inert(
        harness,
        [sku],
        lambda: harness.ledger.reserve(op, [Line(node, sku, 4)], ttl_ms=LONG_TTL_MS),
    )
    assert isinstance(err, InsufficientStock)


async def test_replayed_short_multi_partition_reserve_raises_the_same_shortages(
    harness: Harness,
):
    node, skus = await _stocked(harness, 3, on_hand=3)
    op = harness.names.op()
    lines = [Line(node, skus[0], 1), Line(node, skus[1], 4), Line(node, skus[2], 5)]
    err = await replay_is_inert(
        harness, skus, lambda: harness.ledger.reserve(op, lines, ttl_ms=LONG_TTL_MS)
    )
    assert isinstance(err, InsufficientStock)
    assert sorted((s.sku, s.requested, s.available) for s in err.shortages) == sorted(
        [(skus[1], 4, 3), (skus[2], 5, 3)]
    )


async def test_retried_short_reserve_stays_refused_after_stock_arrives(harness: Harness):
    node, skus = await _stocked(harness, 2, on_hand=1)
    op = harness.names.op()
    lines = [Line(node, s, 2) for s in skus]
    first = await _outcome(lambda: harness.ledger.reserve(op, lines, ttl_ms=LONG_TTL_MS))
    await harness.ledger.adjust(harness.names.op(), [receipt(node, s, 5) for s in skus])

    again = await replay_is_inert(
        harness, skus, lambda: harness.ledger.reserve(op, lines, ttl_ms=LONG_TTL_MS)
    )

    assert isinstance(first, InsufficientStock)
    _same(first, again)
    assert [p.reserved for s in skus for p in await harness.ledger.sku_positions(s)] == [0, 0]


@pytest.mark.parametrize("action", ["commit", "release"])
async def test_replayed_commit_or_release_returns_the_first_result(harness: Harness, action: str):
    node, skus = await _stocked(harness, 2)
    res = await harness.ledger.reserve(
        harness.names.op(), [Line(node, s, 3) for s in skus], ttl_ms=LONG_TTL_MS
    )
    op = harness.names.op()
    done = await replay_is_inert(
        harness, skus, lambda: getattr(harness.ledger, action)(op, res.reservation_id)
    )
    assert done.status == {"commit": "committed", "release": "released"}[action]
    assert done.reservation_id == res.reservation_id


async def test_replayed_version_conflict_raises_the_same_conflict(harness: Harness):
    node, [sku] = await _stocked(harness, 1)
    op = harness.names.op()
    err = await replay_is_inert(
        harness, [sku], lambda: harness.ledger.set_stock(op, node, sku, 3, if_version=7)
    )
    assert isinstance(err, VersionConflict)
    assert (err.expected, err.actual) == (7, 1)


async def test_replayed_version_conflict_is_remembered_even_once_the_version_matches(
    harness: Harness,
):
    node, [sku] = await _stocked(harness, 1)
    op = harness.names.op()
    first = await _outcome(lambda: harness.ledger.set_stock(op, node, sku, 3, if_version=2))
    await harness.stock(node, sku, 10)  # now at version 2

    again = await replay_is_inert(
        harness, [sku], lambda: harness.ledger.set_stock(op, node, sku, 3, if_version=2)
    )

    assert isinstance(first, VersionConflict)
    _same(first, again)
    assert (await harness.ledger.position(node, sku)).on_hand == 10


async def test_replayed_set_below_committed_raises_the_same_error(harness: Harness):
    node, [sku] = await _stocked(harness, 1)
    await harness.ledger.reserve(harness.names.op(), [Line(node, sku, 8)], ttl_ms=LONG_TTL_MS)
    op = harness.names.op()
    err = await replay_is_inert(harness, [sku], lambda: harness.ledger.set_stock(op, node, sku, 7))
    assert isinstance(err, BelowCommitted)


async def test_replayed_adjust_below_committed_raises_the_same_error(harness: Harness):
    node, skus = await _stocked(harness, 3)
    await harness.ledger.reserve(harness.names.op(), [Line(node, skus[2], 8)], ttl_ms=LONG_TTL_MS)
    op = harness.names.op()
    lines = [receipt(node, skus[0], -1), receipt(node, skus[1], 5), receipt(node, skus[2], -3)]
    err = await replay_is_inert(harness, skus, lambda: harness.ledger.adjust(op, lines))
    assert isinstance(err, BelowCommitted)
    assert [(s.sku, s.requested, s.available) for s in err.shortages] == [(skus[2], 3, 2)]


async def test_retried_refused_adjust_reports_the_first_shortage_after_stock_arrives(
    harness: Harness,
):
    node, skus = await _stocked(harness, 2, on_hand=1)
    await harness.ledger.reserve(harness.names.op(), [Line(node, skus[0], 1)], ttl_ms=LONG_TTL_MS)
    op = harness.names.op()
    lines = [receipt(node, skus[0], -4), receipt(node, skus[1], 1)]
    first = await _outcome(lambda: harness.ledger.adjust(op, lines))
    await harness.ledger.adjust(harness.names.op(), [receipt(node, skus[0], 2)])

    again = await replay_is_inert(harness, skus, lambda: harness.ledger.adjust(op, lines))

    assert isinstance(first, BelowCommitted)
    _same(first, again)
    assert [(s.sku, s.requested, s.available) for s in again.shortages] == [(skus[0], 4, 0)]


async def test_retried_refusal_keeps_short_lines_that_read_the_same(harness: Harness):
    """Two lines short by the same amount on one position are two short lines, on the retry too,
    when the stock has arrived meanwhile and the refusal is replayed partition by partition."""
    node, skus = await _stocked(harness, 2, on_hand=10)
    op = harness.names.op()
    lines = [
        receipt(node, skus[0], -40),
        receipt(node, skus[0], 40),
        receipt(node, skus[1], -2),
        receipt(node, skus[0], -40),
    ]
    first = await _outcome(lambda: harness.ledger.adjust(op, lines))
    await harness.ledger.adjust(harness.names.op(), [receipt(node, skus[0], 100)])

    again = await replay_is_inert(harness, skus, lambda: harness.ledger.adjust(op, lines))

    assert isinstance(first, BelowCommitted)
    _same(first, again)
    assert [(s.sku, s.requested, s.available) for s in again.shortages] == [
        (skus[0], 40, 10),
        (skus[0], 40, 10),
    ]


@pytest.mark.parametrize("ended", ["commit", "release"])
@pytest.mark.parametrize("action", ["commit", "release"])
async def test_replayed_illegal_transition_raises_the_same_error(
    harness: Harness, ended: str, action: str
):
    node, skus = await _stocked(harness, 2)
    res = await harness.ledger.reserve(
        harness.names.op(), [Line(node, s, 1) for s in skus], ttl_ms=LONG_TTL_MS
    )
    await getattr(harness.ledger, ended)(harness.names.op(), res.reservation_id)
    op = harness.names.op()
    err = await replay_is_inert(
        harness, skus, lambda: getattr(harness.ledger, action)(op, res.reservation_id)
    )
    assert isinstance(err, IllegalTransition)
    assert err.status == {"commit": "committed", "release": "released"}[ended]
