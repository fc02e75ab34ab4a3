"""Stock positions and reservations of the Redis ledger, on a real server and a real cluster."""

from __future__ import annotations

import pytest

from omnistock.domain.errors import (
    BelowCommitted,
    IllegalTransition,
    InsufficientStock,
    NotFound,
    VersionConflict,
)
from omnistock.domain.reservation import ReservationStatus
from omnistock.domain.stock import Line, Shortage
from omnistock.reservations import keys
from tests.integration.ledger_fixtures import (
    LONG_TTL_MS,
    Harness,
    harness_fixture,  # noqa: F401
    partitions_of,
    quantities,
    receipt,
    timed_fixture,  # noqa: F401
)

# -- stock ----------------------------------------------------------------------------------


async def test_set_stock_sets_on_hand_and_safety_stock_and_bumps_version(harness: Harness):
    node, sku = harness.names.node(), harness.names.sku()
    first = await harness.ledger.set_stock("set-1-" + sku, node, sku, 10, safety_stock=2)
    assert (first.on_hand, first.safety_stock, first.version, first.available) == (10, 2, 1, 8)

    second = await harness.ledger.set_stock("set-2-" + sku, node, sku, 14)
    assert (second.on_hand, second.safety_stock, second.version) == (14, 2, 2)
    assert await harness.ledger.position(node, sku) == second


async def test_compare_and_set_applies_on_the_current_version(harness: Harness):
    node, sku = harness.names.node(), harness.names.sku()
    await harness.stock(node, sku, 5)
    pos = await harness.ledger.set_stock(harness.names.op(), node, sku, 9, if_version=1)
    assert (pos.on_hand, pos.version) == (9, 2)


async def test_compare_and_set_on_version_zero_creates_a_new_position(harness: Harness):
    node, sku = harness.names.node(), harness.names.sku()
    pos = await harness.ledger.set_stock(harness.names.op(), node, sku, 3, if_version=0)
    assert (pos.on_hand, pos.version) == (3, 1)
    with pytest.raises(VersionConflict):
        await harness.ledger.set_stock(harness.names.op(), node, sku, 4, if_version=0)


async def test_compare_and_set_on_a_stale_version_conflicts_and_changes_nothing(harness: Harness):
    node, sku = harness.names.node(), harness.names.sku()
    await harness.stock(node, sku, 5)
    await harness.stock(node, sku, 6)
    before = await harness.snapshot([sku])

    with pytest.raises(VersionConflict) as err:
        await harness.ledger.set_stock(harness.names.op(), node, sku, 99, if_version=1)

    assert (err.value.expected, err.value.actual) == (1, 2)
    assert await harness.snapshot([sku]) == before


async def test_set_below_reserved_plus_held_is_refused(harness: Harness):
    node, sku = harness.names.node(), harness.names.sku()
    await harness.stock(node, sku, 10)
    await harness.ledger.reserve(harness.names.op(), [Line(node, sku, 6)], ttl_ms=LONG_TTL_MS)
    before = await harness.snapshot([sku])

    with pytest.raises(BelowCommitted) as err:
        await harness.ledger.set_stock(harness.names.op(), node, sku, 5)

    assert [(s.node_id, s.sku) for s in err.value.shortages] == [(node, sku)]
    assert await harness.snapshot([sku]) == before
    exact = await harness.ledger.set_stock(harness.names.op(), node, sku, 6)
    assert (exact.on_hand, exact.reserved, exact.available) == (6, 6, 0)


async def test_adjust_applies_every_line_across_partitions(harness: Harness):
    node = harness.names.node()
    a, b, c = harness.names.skus_in_distinct_partitions(3)
    for sku in (a, b, c):
        await harness.stock(node, sku, 10)

    out = await harness.ledger.adjust(
        harness.names.op(), [receipt(node, a, 5), receipt(node, b, -3), receipt(node, c, -10)]
    )

    assert [(p.sku, p.on_hand, p.version) for p in out] == [(a, 15, 2), (b, 7, 2), (c, 0, 2)]
    assert [await harness.ledger.position(node, s) for s in (a, b, c)] == out


async def test_adjust_lines_on_one_position_see_the_running_total(harness: Harness):
    node, sku = harness.names.node(), harness.names.sku()
    await harness.stock(node, sku, 5)
    out = await harness.ledger.adjust(
        harness.names.op(), [receipt(node, sku, 5), receipt(node, sku, -8)]
    )
    assert [(p.on_hand, p.version) for p in out] == [(2, 3)]


async def test_adjust_lines_on_one_position_see_the_running_total_beside_other_partitions(
    harness: Harness, request: pytest.FixtureRequest
):
    node = harness.names.node()
    sku, other = harness.names.skus_in_distinct_partitions(2)
    await harness.stock(node, sku, 5)
    await harness.stock(node, other, 1)

    out = await harness.ledger.adjust(
        harness.names.op(),
        [receipt(node, sku, 5), receipt(node, sku, -8), receipt(node, other, 1)],
    )

    assert [(p.sku, p.on_hand) for p in out] == [(sku, 2), (other, 2)]


async def test_refused_adjust_lists_every_offending_line_and_moves_no_quantity(harness: Harness):
    node = harness.names.node()
    skus = harness.names.skus_in_distinct_partitions(4)
    for sku in skus:
        await harness.stock(node, sku, 10)
    before = await harness.snapshot(skus)
    good_in, good_out, bad_a, bad_b = skus

    with pytest.raises(BelowCommitted) as err:
        await harness.ledger.adjust(
            harness.names.op(),
            [
                receipt(node, good_in, 4),
                receipt(node, bad_a, -11),
                receipt(node, good_out, -3),
                receipt(node, bad_b, -25),
            ],
        )

    assert sorted(err.value.shortages, key=lambda s: s.sku) == sorted(
        [Shortage(node, bad_a, 11, 10), Shortage(node, bad_b, 25, 10)], key=lambda s: s.sku
    )
    assert quantities(await harness.snapshot(skus)) == quantities(before)


async def test_refused_adjust_leaves_every_position_version_unchanged_on_a_single_server(
    harness: Harness,
):
    """On a cluster the refusal is a compensated saga: quantities are restored, versions move."""
    node = harness.names.node()
    good, bad = harness.names.skus_in_distinct_partitions(2)
    for sku in (good, bad):
        await harness.stock(node, sku, 10)
    before = await harness.snapshot([good, bad])

    with pytest.raises(BelowCommitted):
        await harness.ledger.adjust(
            harness.names.op(), [receipt(node, good, -1), receipt(node, bad, -11)]
        )

    if harness.cluster:
        assert quantities(await harness.snapshot([good, bad])) == quantities(before)
    else:
        assert await harness.snapshot([good, bad]) == before


async def test_delta_below_reserved_plus_held_is_refused(harness: Harness):
    node, sku = harness.names.node(), harness.names.sku()
    await harness.stock(node, sku, 10)
    await harness.ledger.reserve(harness.names.op(), [Line(node, sku, 7)], ttl_ms=LONG_TTL_MS)
    before = await harness.snapshot([sku])

    with pytest.raises(BelowCommitted) as err:
        await harness.ledger.adjust(harness.names.op(), [receipt(node, sku, -4)])

    assert err.value.shortages == [Shortage(node, sku, 4, 3)]
    assert await harness.snapshot([sku]) == before
    [pos] = await harness.ledger.adjust(harness.names.op(), [receipt(node, sku, -3)])
    assert (pos.on_hand, pos.reserved, pos.available) == (7, 7, 0)


async def test_safety_stock_does_not_block_taking_stock_out(harness: Harness):
    node, sku = harness.names.node(), harness.names.sku()
    await harness.stock(node, sku, 10, safety_stock=5)
    [pos] = await harness.ledger.adjust(harness.names.op(), [receipt(node, sku, -8)])
    assert (pos.on_hand, pos.safety_stock, pos.available) == (2, 5, 0)


async def test_availability_is_on_hand_less_reserved_held_and_safety_floored_at_zero(
    harness: Harness,
):
    node, sku = harness.names.node(), harness.names.sku()
    await harness.stock(node, sku, 10, safety_stock=3)
    await harness.ledger.reserve(harness.names.op(), [Line(node, sku, 5)], ttl_ms=LONG_TTL_MS)
    assert (await harness.ledger.position(node, sku)).available == 2

    await harness.ledger.set_stock(harness.names.op(), node, sku, 10, safety_stock=8)
    pos = await harness.ledger.position(node, sku)
    assert (pos.on_hand, pos.reserved, pos.safety_stock, pos.available) == (10, 5, 8, 0)
    with pytest.raises(InsufficientStock) as err:
        await harness.ledger.reserve(harness.names.op(), [Line(node, sku, 1)], ttl_ms=LONG_TTL_MS)
    assert err.value.shortages == [Shortage(node, sku, 1, 0)]


async def test_safety_stock_is_not_reservable(harness: Harness):
    node, sku = harness.names.node(), harness.names.sku()
    await harness.stock(node, sku, 10, safety_stock=4)
    with pytest.raises(InsufficientStock) as err:
        await harness.ledger.reserve(harness.names.op(), [Line(node, sku, 7)], ttl_ms=LONG_TTL_MS)
    assert err.value.shortages == [Shortage(node, sku, 7, 6)]
    res = await harness.ledger.reserve(harness.names.op(), [Line(node, sku, 6)], ttl_ms=LONG_TTL_MS)
    assert res.status is ReservationStatus.ACTIVE


async def test_sku_positions_lists_every_node_of_a_sku_sorted_by_node(harness: Harness):
    sku = harness.names.sku()
    nodes = [harness.names.node(label) for label in ("store-b", "dc-a", "store-a")]
    for i, node in enumerate(nodes):
        await harness.stock(node, sku, 10 + i, safety_stock=i)

    positions = await harness.ledger.sku_positions(sku)

    assert [p.node_id for p in positions] == sorted(nodes)
    assert {p.node_id: (p.on_hand, p.safety_stock) for p in positions} == {
        nodes[0]: (10, 0),
        nodes[1]: (11, 1),
        nodes[2]: (12, 2),
    }
    assert await harness.ledger.sku_positions(harness.names.sku()) == []


async def test_every_position_of_a_sku_held_at_many_nodes_is_read_exactly(harness: Harness):
    """Past about 21 nodes a SKU's hash leaves the compact encoding and its fields come back in
    no particular order; the availability script groups them per node whatever the order."""
    sku = harness.names.sku()
    nodes = sorted(harness.names.node(label=f"n{i}") for i in range(40))
    for i, node in enumerate(nodes):
        await harness.ledger.set_stock(
            harness.names.op("seed"), node, sku, 100 + i, safety_stock=i % 3
        )
    reserved = await harness.ledger.reserve(
        harness.names.op("reserve"), [Line(nodes[7], sku, 5)], ttl_ms=LONG_TTL_MS
    )
    assert reserved.reservation_id

    positions = await harness.ledger.sku_positions(sku)

    assert [p.node_id for p in positions] == nodes
    expected = {
        node: (100 + i, 5 if i == 7 else 0, 0, i % 3, 0, 2 if i == 7 else 1)
        for i, node in enumerate(nodes)
    }
    assert {
        p.node_id: (p.on_hand, p.reserved, p.held, p.safety_stock, p.inbound, p.version)
        for p in positions
    } == expected
    for p in positions:
        assert p == await harness.ledger.position(p.node_id, sku)


async def test_availability_many_reads_hundreds_of_skus_in_few_script_calls(harness: Harness):
    """One call on a single server; on a cluster at most one per partition, and fewer once the
    runner batches the partitions one node owns."""
    node = harness.names.node()
    skus = [harness.names.sku() for _ in range(300)]
    for i, sku in enumerate(skus):  # sequential: many partitions, a few ms each
        await harness.stock(node, sku, i + 1)
    unknown = harness.names.sku(label="unknown")
    calls_before = harness.ledger_calls()

    result = await harness.ledger.availability_many([*skus, unknown, skus[0]])

    calls = harness.ledger_calls() - calls_before
    assert list(result) == [*skus, unknown]
    assert {s: [(p.node_id, p.on_hand) for p in result[s]] for s in skus} == {
        s: [(node, i + 1)] for i, s in enumerate(skus)
    }
    assert result[unknown] == []
    if harness.cluster:
        partitions = len(partitions_of([*skus, unknown]))
        assert partitions > 100
        assert 1 <= calls < partitions
    else:
        assert calls == 1


# -- reservations ---------------------------------------------------------------------------


async def test_reserve_takes_every_line_across_nodes_and_skus(harness: Harness):
    dc, store = harness.names.node("dc"), harness.names.node("store")
    a, b = harness.names.skus_in_distinct_partitions(2)
    for node in (dc, store):
        for sku in (a, b):
            await harness.stock(node, sku, 10)
    lines = [Line(dc, a, 3), Line(store, a, 4), Line(dc, b, 10), Line(store, b, 1)]

    res = await harness.ledger.reserve(harness.names.op(), lines, ttl_ms=LONG_TTL_MS)

    assert res.status is ReservationStatus.ACTIVE
    assert res.lines == lines
    assert res.expires_at_ms == res.created_at_ms + LONG_TTL_MS
    for line in lines:
        pos = await harness.ledger.position(line.node_id, line.sku)
        assert (pos.reserved, pos.available) == (line.qty, 10 - line.qty)


async def test_reserve_short_reports_every_short_line_and_reserves_nothing(harness: Harness):
    dc, store = harness.names.node("dc"), harness.names.node("store")
    a, b, c = harness.names.skus_in_distinct_partitions(3)
    for sku in (a, b, c):
        await harness.stock(dc, sku, 5)
    await harness.stock(store, a, 2, safety_stock=1)
    before = await harness.snapshot([a, b, c])
    lines = [Line(dc, a, 5), Line(store, a, 2), Line(dc, b, 6), Line(dc, c, 1), Line(store, c, 1)]

    with pytest.raises(InsufficientStock) as err:
        await harness.ledger.reserve(harness.names.op(), lines, ttl_ms=LONG_TTL_MS)

    assert sorted(err.value.shortages, key=lambda s: (s.sku, s.node_id)) == sorted(
        [Shortage(store, a, 2, 1), Shortage(dc, b, 6, 5), Shortage(store, c, 1, 0)],
        key=lambda s: (s.sku, s.node_id),
    )
    assert quantities(await harness.snapshot([a, b, c])) == quantities(before)


async def test_commit_takes_the_goods_out_of_on_hand_and_reserved(harness: Harness):
    node = harness.names.node()
    a, b = harness.names.skus_in_distinct_partitions(2)
    await harness.stock(node, a, 10)
    await harness.stock(node, b, 4)
    res = await harness.ledger.reserve(
        harness.names.op(), [Line(node, a, 3), Line(node, b, 4)], ttl_ms=LONG_TTL_MS
    )

    done = await harness.ledger.commit(harness.names.op(), res.reservation_id)

    assert done.status is ReservationStatus.COMMITTED
    assert done.lines == res.lines
    pa, pb = [await harness.ledger.position(node, s) for s in (a, b)]
    assert (pa.on_hand, pa.reserved, pa.available) == (7, 0, 7)
    assert (pb.on_hand, pb.reserved, pb.available) == (0, 0, 0)
    assert (await harness.ledger.get_reservation(res.reservation_id)).status == "committed"


async def test_release_returns_the_stock_to_available(harness: Harness):
    node = harness.names.node()
    a, b = harness.names.skus_in_distinct_partitions(2)
    await harness.stock(node, a, 10)
    await harness.stock(node, b, 4)
    res = await harness.ledger.reserve(
        harness.names.op(), [Line(node, a, 3), Line(node, b, 4)], ttl_ms=LONG_TTL_MS
    )

    done = await harness.ledger.release(harness.names.op(), res.reservation_id)

    assert done.status is ReservationStatus.RELEASED
    pa, pb = [await harness.ledger.position(node, s) for s in (a, b)]
    assert (pa.on_hand, pa.reserved, pa.available) == (10, 0, 10)
    assert (pb.on_hand, pb.reserved, pb.available) == (4, 0, 4)
    assert (await harness.ledger.get_reservation(res.reservation_id)).status == "released"


async def _finish(h: Harness, how: str, rid: str, expires_at_ms: int) -> None:
    if how == "expired":
        assert h.clock is not None
        h.clock.set(expires_at_ms)
        assert (await h.ledger.get_reservation(rid)).status is ReservationStatus.EXPIRED
    elif how == "committed":
        await h.ledger.commit(h.names.op(), rid)
    else:
        await h.ledger.release(h.names.op(), rid)


@pytest.mark.parametrize("action", ["commit", "release"])
@pytest.mark.parametrize("ended", ["committed", "released", "expired"])
@pytest.mark.parametrize("parts", [1, 2], ids=["one-partition", "two-partitions"])
async def test_finishing_an_ended_reservation_is_an_illegal_transition_changing_nothing(
    timed: Harness, action: str, ended: str, parts: int
):
    node = timed.names.node()
    skus = timed.names.skus_in_distinct_partitions(parts)
    for sku in skus:
        await timed.stock(node, sku, 10)
    res = await timed.ledger.reserve(
        timed.names.op(), [Line(node, s, 2) for s in skus], ttl_ms=60_000
    )
    await _finish(timed, ended, res.reservation_id, res.expires_at_ms)
    before = await timed.snapshot(skus)
    marks = await timed.stream_marks(skus)

    with pytest.raises(IllegalTransition) as err:
        await getattr(timed.ledger, action)(timed.names.op(), res.reservation_id)

    assert (err.value.status, err.value.action, err.value.ident) == (
        ended,
        action,
        res.reservation_id,
    )
    assert await timed.snapshot(skus) == before
    assert await timed.events_since(marks, skus) == []
    assert (await timed.ledger.get_reservation(res.reservation_id)).status == ended


UNKNOWN_IDS = [
    keys.reservation_id("never-used", 5, single=True),
    keys.reservation_id("never-used", 5, single=False),
    "nope",
    "r999-" + "a" * 24,
    "x5-" + "a" * 24,
    "r5-short",
    "",
]


@pytest.mark.parametrize("rid", UNKNOWN_IDS)
async def test_unknown_or_malformed_reservation_ids_are_not_found(harness: Harness, rid: str):
    with pytest.raises(NotFound):
        await harness.ledger.get_reservation(rid)
    with pytest.raises(NotFound):
        await harness.ledger.commit(harness.names.op(), rid)
    with pytest.raises(NotFound):
        await harness.ledger.release(harness.names.op(), rid)


async def test_get_reservation_shows_every_line_of_a_multi_partition_reservation(
    harness: Harness,
):
    dc, store = harness.names.node("dc"), harness.names.node("store")
    skus = harness.names.skus_in_distinct_partitions(3)
    for sku in skus:
        await harness.stock(dc, sku, 10)
        await harness.stock(store, sku, 10)
    lines = [Line(dc, s, i + 1) for i, s in enumerate(skus)] + [Line(store, skus[1], 7)]
    made = await harness.ledger.reserve(
        harness.names.op(), lines, ttl_ms=LONG_TTL_MS, order_ref="order-" + harness.names.uid
    )
    assert made.reservation_id.startswith("m" if harness.cluster else "r")

    seen = await harness.ledger.get_reservation(made.reservation_id)

    assert sorted(seen.lines, key=_line_key) == sorted(lines, key=_line_key)
    assert (seen.status, seen.expires_at_ms, seen.created_at_ms, seen.order_ref) == (
        "active",
        made.expires_at_ms,
        made.created_at_ms,
        made.order_ref,
    )
    await harness.ledger.commit(harness.names.op(), made.reservation_id)
    after = await harness.ledger.get_reservation(made.reservation_id)
    assert after.status is ReservationStatus.COMMITTED
    assert sorted(after.lines, key=_line_key) == sorted(lines, key=_line_key)


def _line_key(line: Line) -> tuple[str, str]:
    return (line.sku, line.node_id)
