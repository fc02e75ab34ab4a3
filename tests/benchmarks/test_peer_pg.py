"""The PostgreSQL row-lock peer keeps the ledger's promises on a real PostgreSQL: a release gives
back what a reserve took, a shortage changes nothing, an operation id applies once, and
concurrent reserves on scarce stock never sell a unit twice. A peer that broke them would make
the benchmark's comparison meaningless."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from benchmarks.peer_pg import PgLedger

from omnistock.domain.errors import IllegalTransition, InsufficientStock, NotFound
from omnistock.domain.reservation import ReservationStatus
from omnistock.domain.stock import Line, Shortage
from tests.fixtures_postgres import PostgresServer

NODE = "dc-1"
CONCURRENCY = 32


@pytest.fixture
async def peer(postgres_server: PostgresServer, postgres_url: str) -> AsyncIterator[PgLedger]:
    database = postgres_url.split("@/", 1)[1].split("?", 1)[0]
    ledger = await PgLedger.open(CONCURRENCY, **postgres_server.connect_kwargs(database))
    try:
        yield ledger
    finally:
        await ledger.aclose()


async def test_reserve_then_release_restores_stock(peer: PgLedger) -> None:
    await peer.load_stock(NODE, {"a": 10, "b": 5})

    r = await peer.reserve("op-1", [Line(NODE, "a", 3), Line(NODE, "b", 2), Line(NODE, "a", 1)])

    assert r.status is ReservationStatus.ACTIVE
    assert r.lines == [Line(NODE, "a", 4), Line(NODE, "b", 2)]  # merged, as omnistock does
    assert (await peer.position(NODE, "a")).reserved == 4
    assert (await peer.position(NODE, "b")).reserved == 2
    assert (await peer.position(NODE, "a")).available == 6

    released = await peer.release("op-1.rel", r.reservation_id)

    assert released.status is ReservationStatus.RELEASED
    assert (await peer.get_reservation(r.reservation_id)).status is ReservationStatus.RELEASED
    for sku, on_hand in (("a", 10), ("b", 5)):
        position = await peer.position(NODE, sku)
        assert (position.on_hand, position.reserved) == (on_hand, 0)


async def test_short_stock_is_refused_whole_and_changes_nothing(peer: PgLedger) -> None:
    await peer.load_stock(NODE, {"a": 10, "b": 1})

    with pytest.raises(InsufficientStock) as refused:
        await peer.reserve(
            "op-short", [Line(NODE, "a", 2), Line(NODE, "b", 2), Line(NODE, "unknown", 1)]
        )

    assert refused.value.shortages == [
        Shortage(NODE, "b", 2, 1),
        Shortage(NODE, "unknown", 1, 0),
    ]
    assert (await peer.position(NODE, "a")).reserved == 0
    assert (await peer.position(NODE, "b")).reserved == 0
    assert await peer.totals(NODE, ["a", "b", "unknown"]) == (2, 11, 0)


async def test_a_repeated_reserve_returns_its_first_result_whatever_the_stock(
    peer: PgLedger,
) -> None:
    await peer.load_stock(NODE, {"a": 2})
    first = await peer.reserve("op-1", [Line(NODE, "a", 2)])

    again = await peer.reserve("op-1", [Line(NODE, "a", 2)])  # stock is now short

    assert again == first
    assert (await peer.position(NODE, "a")).reserved == 2

    with pytest.raises(InsufficientStock) as refused:
        await peer.reserve("op-2", [Line(NODE, "a", 1)])
    await peer.release("op-1.rel", first.reservation_id)
    with pytest.raises(InsufficientStock) as replayed:  # stock is back, the refusal stands
        await peer.reserve("op-2", [Line(NODE, "a", 1)])

    assert replayed.value.shortages == refused.value.shortages == [Shortage(NODE, "a", 1, 0)]
    assert (await peer.position(NODE, "a")).reserved == 0


async def test_release_replays_its_own_op_and_refuses_any_other(peer: PgLedger) -> None:
    await peer.load_stock(NODE, {"a": 5})
    r = await peer.reserve("op-1", [Line(NODE, "a", 1)])
    first = await peer.release("rel-1", r.reservation_id)

    assert await peer.release("rel-1", r.reservation_id) == first
    with pytest.raises(IllegalTransition):
        await peer.release("rel-2", r.reservation_id)
    with pytest.raises(NotFound):
        await peer.release("rel-3", "pg-000000000000000000000000")
    assert (await peer.position(NODE, "a")).reserved == 0


async def test_concurrent_reserves_on_scarce_stock_never_oversell(peer: PgLedger) -> None:
    on_hand = 20
    await peer.load_stock(NODE, {"scarce": on_hand})
    won: list[str] = []
    refusals = 0

    async def until_refused(i: int) -> None:
        nonlocal refusals
        n = 0
        while True:
            n += 1
            try:
                r = await peer.reserve(f"t{i}.{n}", [Line(NODE, "scarce", 1)])
            except InsufficientStock:
                refusals += 1
                return
            won.append(r.reservation_id)

    await asyncio.gather(*(until_refused(i) for i in range(CONCURRENCY)))

    position = await peer.position(NODE, "scarce")
    assert len(won) == len(set(won)) == on_hand
    assert refusals == CONCURRENCY
    assert (position.on_hand, position.reserved) == (on_hand, on_hand)


async def test_concurrent_multi_line_reserves_in_opposite_orders_do_not_deadlock(
    peer: PgLedger,
) -> None:
    """Locks are taken in (node, SKU) order whatever the order of the lines."""
    await peer.load_stock(NODE, {"x": 1000, "y": 1000})

    async def loop(i: int) -> None:
        lines = [Line(NODE, "x", 1), Line(NODE, "y", 1)]
        for n in range(10):
            r = await peer.reserve(f"m{i}.{n}", lines if i % 2 else lines[::-1])
            await peer.release(f"m{i}.{n}.rel", r.reservation_id)

    await asyncio.wait_for(asyncio.gather(*(loop(i) for i in range(CONCURRENCY))), 60)

    assert await peer.totals(NODE, ["x", "y"]) == (2, 2000, 0)
