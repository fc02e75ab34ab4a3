"""The in-memory model ledger, the oracle the property test compares the Redis ledger with."""

from __future__ import annotations

import pytest

from omnistock.domain.errors import (
    BelowCommitted,
    IllegalTransition,
    InsufficientStock,
    InvalidInput,
    NotFound,
    VersionConflict,
)
from omnistock.domain.reservation import ReservationStatus
from omnistock.domain.stock import Adjustment, Line, Position, Reason, Shortage
from omnistock.reservations import keys
from omnistock.reservations.model import ModelLedger


class Clock:
    def __init__(self, now: int = 1_000) -> None:
        self.now = now

    def __call__(self) -> int:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
async def ledger(clock: Clock) -> ModelLedger:
    model = ModelLedger(clock)
    await model.set_stock("seed-a", "n1", "a", 10)
    await model.set_stock("seed-b", "n1", "b", 4, safety_stock=1)
    return model


async def test_reserve_takes_stock_out_of_available(ledger: ModelLedger, clock: Clock) -> None:
    r = await ledger.reserve("op1", [Line("n1", "a", 2), Line("n1", "a", 1)], ttl_ms=500)
    assert r.status is ReservationStatus.ACTIVE
    assert r.lines == [Line("n1", "a", 3)]
    assert (r.created_at_ms, r.expires_at_ms) == (clock.now, clock.now + 500)
    assert r.reservation_id == keys.reservation_id("op1", keys.partition_of("a"), single=True)
    p = await ledger.position("n1", "a")
    assert (p.on_hand, p.reserved, p.available, p.version) == (10, 3, 7, 2)


async def test_reserve_reports_every_short_line_and_takes_nothing(ledger: ModelLedger) -> None:
    with pytest.raises(InsufficientStock) as err:
        await ledger.reserve(
            "op1", [Line("n1", "b", 4), Line("n1", "a", 1), Line("n2", "a", 1)], ttl_ms=500
        )
    assert err.value.shortages == [Shortage("n1", "b", 4, 3), Shortage("n2", "a", 1, 0)]
    assert (await ledger.position("n1", "a")).reserved == 0
    assert await ledger.sku_positions("a") == [Position("n1", "a", 10, version=1)]


async def test_reservation_stops_counting_the_moment_it_expires(
    ledger: ModelLedger, clock: Clock
) -> None:
    r = await ledger.reserve("op1", [Line("n1", "a", 10)], ttl_ms=500)
    clock.now = r.expires_at_ms - 1
    assert (await ledger.position("n1", "a")).available == 0
    clock.now = r.expires_at_ms
    assert (await ledger.position("n1", "a")).available == 10
    assert (await ledger.get_reservation(r.reservation_id)).status is ReservationStatus.EXPIRED
    with pytest.raises(IllegalTransition) as err:
        await ledger.commit("op2", r.reservation_id)
    assert err.value.status == "expired"


async def test_expire_due_counts_only_what_fell_due_since_the_last_call(
    ledger: ModelLedger, clock: Clock
) -> None:
    await ledger.reserve("op1", [Line("n1", "a", 1)], ttl_ms=100)
    await ledger.reserve("op2", [Line("n1", "a", 1)], ttl_ms=200)
    clock.now += 100
    assert await ledger.expire_due() == 1
    clock.now += 100
    await ledger.position("n1", "a")
    assert await ledger.expire_due() == 0
    assert (await ledger.position("n1", "a")).reserved == 0


async def test_commit_drops_on_hand_and_reserved(ledger: ModelLedger) -> None:
    r = await ledger.reserve("op1", [Line("n1", "a", 3), Line("n1", "b", 1)], ttl_ms=500)
    done = await ledger.commit("op2", r.reservation_id)
    assert done.status is ReservationStatus.COMMITTED
    assert await ledger.position("n1", "a") == Position("n1", "a", 7, 0, version=3)
    assert await ledger.position("n1", "b") == Position("n1", "b", 3, 0, 0, 1, version=3)


async def test_release_returns_stock_once(ledger: ModelLedger) -> None:
    r = await ledger.reserve("op1", [Line("n1", "a", 3)], ttl_ms=500)
    assert (await ledger.release("op2", r.reservation_id)).status is ReservationStatus.RELEASED
    assert await ledger.position("n1", "a") == Position("n1", "a", 10, 0, version=3)
    with pytest.raises(IllegalTransition) as err:
        await ledger.release("op3", r.reservation_id)
    assert (err.value.status, err.value.action) == ("released", "release")


async def test_adjust_lines_on_one_position_are_running_totals(ledger: ModelLedger) -> None:
    out = await ledger.adjust(
        "op1",
        [
            Adjustment("n1", "a", -10, Reason.SALE),
            Adjustment("n1", "b", 1, Reason.RETURN),
            Adjustment("n1", "a", 4, Reason.RECEIPT),
        ],
    )
    assert out == [Position("n1", "a", 4, version=3), Position("n1", "b", 5, 0, 0, 1, version=2)]


async def test_adjust_reports_every_line_below_reserved_and_held(ledger: ModelLedger) -> None:
    await ledger.reserve("op1", [Line("n1", "a", 6)], ttl_ms=500)
    with pytest.raises(BelowCommitted) as err:
        await ledger.adjust(
            "op2",
            [
                Adjustment("n1", "a", -3, Reason.DAMAGE),
                Adjustment("n1", "b", -5, Reason.SALE),
                Adjustment("n1", "a", -2, Reason.DAMAGE),
            ],
        )
    assert err.value.shortages == [Shortage("n1", "b", 5, 4), Shortage("n1", "a", 2, 1)]
    assert (await ledger.position("n1", "a")).on_hand == 10


async def test_set_stock_refuses_less_than_reserved(ledger: ModelLedger) -> None:
    await ledger.reserve("op1", [Line("n1", "a", 6)], ttl_ms=500)
    with pytest.raises(BelowCommitted) as err:
        await ledger.set_stock("op2", "n1", "a", 5)
    assert err.value.shortages == [Shortage("n1", "a", 6, 5)]


async def test_set_stock_with_a_stale_version_conflicts(ledger: ModelLedger) -> None:
    with pytest.raises(VersionConflict) as err:
        await ledger.set_stock("op1", "n1", "a", 5, if_version=0)
    assert (err.value.expected, err.value.actual) == (0, 1)
    p = await ledger.set_stock("op2", "n1", "a", 5, if_version=1, safety_stock=2)
    assert p == Position("n1", "a", 5, safety_stock=2, version=2)


async def test_repeated_op_id_returns_the_first_result_and_changes_nothing(
    ledger: ModelLedger,
) -> None:
    first = await ledger.adjust("op1", [Adjustment("n1", "a", 5, Reason.RECEIPT)])
    again = await ledger.adjust("op1", [Adjustment("n1", "a", 5, Reason.RECEIPT)])
    assert again == first
    assert (await ledger.position("n1", "a")).on_hand == 15


async def test_repeated_op_id_raises_the_first_error_even_when_it_would_now_pass(
    ledger: ModelLedger,
) -> None:
    with pytest.raises(InsufficientStock):
        await ledger.reserve("op1", [Line("n1", "a", 11)], ttl_ms=500)
    await ledger.set_stock("op2", "n1", "a", 20)
    with pytest.raises(InsufficientStock) as err:
        await ledger.reserve("op1", [Line("n1", "a", 11)], ttl_ms=500)
    assert err.value.shortages == [Shortage("n1", "a", 11, 10)]
    assert (await ledger.position("n1", "a")).reserved == 0


async def test_unknown_reservation_is_not_found(ledger: ModelLedger) -> None:
    ghost = keys.reservation_id("never", 3, single=True)
    for call in (ledger.get_reservation(ghost), ledger.commit("op1", ghost)):
        with pytest.raises(NotFound):
            await call
    with pytest.raises(NotFound):
        await ledger.release("op2", "not-an-id")


async def test_invalid_input_is_refused_before_anything_changes(ledger: ModelLedger) -> None:
    with pytest.raises(InvalidInput):
        await ledger.reserve("op1", [], ttl_ms=500)
    with pytest.raises(InvalidInput):
        await ledger.reserve("op1", [Line("n1", "a", 1)], ttl_ms=0)
    r = await ledger.reserve("op1", [Line("n1", "a", 1)], ttl_ms=500)
    assert r.status is ReservationStatus.ACTIVE
