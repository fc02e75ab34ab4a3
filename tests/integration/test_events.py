"""Every change of a position appends one event to its partition's stream; a refusal appends none.

An event carries the operation id (op), its kind (k), node (n) and SKU (s), the deltas (doh, drs,
dhd, dib), the resulting quantities and version (oh, rs, hd, ss, ib, v), a reference (ref) and the
ledger's time (t).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import pytest

from omnistock.domain.errors import DomainError
from omnistock.domain.stock import Adjustment, Line, Position, Reason
from omnistock.reservations import keys
from tests.integration.ledger_fixtures import (
    LONG_TTL_MS,
    Harness,
    quantities,
    receipt,
    timed_fixture,  # noqa: F401
)

FIELDS = {"op", "k", "n", "s", "doh", "drs", "dhd", "dib", "oh", "rs", "hd", "ss", "ib", "v"}
FIELDS |= {"ref", "t"}


def result_of(event: dict[str, str]) -> tuple[int, ...]:
    return tuple(int(event[f]) for f in ("oh", "rs", "hd", "ss", "ib", "v"))


def position_tuple(p: Position) -> tuple[int, ...]:
    return (p.on_hand, p.reserved, p.held, p.safety_stock, p.inbound, p.version)


def deltas(event: dict[str, str]) -> tuple[int, ...]:
    return tuple(int(event[f]) for f in ("doh", "drs", "dhd", "dib"))


async def assert_events_end_at_positions(h: Harness, events: list[dict[str, str]]) -> None:
    """Each event is well formed at the ledger's time, and the last one of every position
    carries exactly what the position now holds."""
    last: dict[tuple[str, str], dict[str, str]] = {}
    for e in events:
        assert set(e) == FIELDS
        assert e["t"] == str(h.clock.now)
        last[(e["n"], e["s"])] = e
    for (node, sku), e in last.items():
        assert result_of(e) == position_tuple(await h.ledger.position(node, sku))


async def _stocked(h: Harness, count: int, on_hand: int = 10) -> tuple[str, list[str]]:
    node = h.names.node()
    skus = h.names.skus_in_distinct_partitions(count)
    for sku in skus:
        await h.stock(node, sku, on_hand)
    return node, skus


async def test_set_stock_appends_one_set_event(timed: Harness):
    node, [sku] = await _stocked(timed, 1)
    marks = await timed.stream_marks([sku])
    op = timed.names.op()

    pos = await timed.ledger.set_stock(op, node, sku, 4, safety_stock=1)

    [event] = await timed.events_since(marks, [sku])
    assert (event["op"], event["k"], event["n"], event["s"], event["ref"]) == (
        op,
        "set",
        node,
        sku,
        "count",
    )
    assert deltas(event) == (-6, 0, 0, 0)
    assert result_of(event) == position_tuple(pos) == (4, 0, 0, 1, 0, 2)
    await assert_events_end_at_positions(timed, [event])


async def test_adjust_appends_one_event_per_line_with_its_reason_and_ref(
    timed: Harness, request: pytest.FixtureRequest
):
    node, [a, b] = await _stocked(timed, 2)
    marks = await timed.stream_marks([a, b])
    op = timed.names.op()
    lines = [
        Adjustment(node, a, 5, Reason.RECEIPT, "po-17"),
        Adjustment(node, a, -2, Reason.DAMAGE),
        Adjustment(node, b, -1, Reason.SALE, "till-3"),
    ]

    await timed.ledger.adjust(op, lines)

    events = await timed.events_since(marks, [a, b])
    assert sorted((e["s"], e["k"], int(e["doh"]), e["ref"]) for e in events) == sorted(
        [(a, "receipt", 5, "po-17"), (a, "damage", -2, ""), (b, "sale", -1, "till-3")]
    )
    assert sum(int(e["doh"]) for e in events if e["s"] == a) == 3
    await assert_events_end_at_positions(timed, events)
    assert {e["op"] for e in events} == {op}


async def test_reserve_commit_and_release_append_one_event_per_line(timed: Harness):
    node, skus = await _stocked(timed, 3)
    marks = await timed.stream_marks(skus)
    kept, dropped = timed.names.op(), timed.names.op()
    res = await timed.ledger.reserve(kept, [Line(node, s, 3) for s in skus], ttl_ms=LONG_TTL_MS)
    other = await timed.ledger.reserve(dropped, [Line(node, s, 1) for s in skus], ttl_ms=60_000)
    committing, releasing = timed.names.op(), timed.names.op()
    await timed.ledger.commit(committing, res.reservation_id)
    await timed.ledger.release(releasing, other.reservation_id)

    events = await timed.events_since(marks, skus)

    assert len(events) == 4 * len(skus)
    by_kind = sorted((e["k"], e["op"], e["ref"], e["s"], deltas(e)) for e in events)
    expected = [
        (kind, op, rid, s, d)
        for kind, op, rid, d in [
            ("reserve", kept, res.reservation_id, (0, 3, 0, 0)),
            ("reserve", dropped, other.reservation_id, (0, 1, 0, 0)),
            ("commit", committing, res.reservation_id, (-3, -3, 0, 0)),
            ("release", releasing, other.reservation_id, (0, -1, 0, 0)),
        ]
        for s in skus
    ]
    assert by_kind == sorted(expected)
    for sku in skus:
        assert [result_of(e)[:2] for e in events if e["s"] == sku] == [
            (10, 3),
            (10, 4),
            (7, 1),
            (7, 0),
        ]
    await assert_events_end_at_positions(timed, events)


async def test_events_go_to_their_partition_stream_on_a_cluster_and_one_stream_otherwise(
    timed: Harness,
):
    node, [a, b] = await _stocked(timed, 2)
    marks = await timed.stream_marks([a, b])
    await timed.ledger.reserve(timed.names.op(), [Line(node, a, 1), Line(node, b, 1)], ttl_ms=1000)

    if timed.cluster:
        for sku in (a, b):
            own = {timed.stream_of(sku): marks[timed.stream_of(sku)]}
            assert [e["s"] for e in await timed.events_since(own, [a, b])] == [sku]
    else:
        assert list(marks) == [keys.stream_key(0)]
        assert [e["s"] for e in await timed.events_since(marks, [a, b])] == [a, b]


async def _refusals(h: Harness) -> dict[str, tuple[list[str], Callable[[], Awaitable[object]]]]:
    """Operations that must be refused, each with the SKUs it involves."""
    node, skus = await _stocked(h, 3, on_hand=5)
    await h.ledger.reserve(h.names.op(), [Line(node, skus[0], 4)], ttl_ms=LONG_TTL_MS)
    ended = await h.ledger.reserve(
        h.names.op(), [Line(node, s, 1) for s in skus[1:]], ttl_ms=LONG_TTL_MS
    )
    await h.ledger.release(h.names.op(), ended.reservation_id)
    ledger, op = h.ledger, h.names.op()
    one = [skus[0]]
    return {
        "stale-version": (one, lambda: ledger.set_stock(op, node, skus[0], 9, if_version=1)),
        "set-below-reserved": (one, lambda: ledger.set_stock(op, node, skus[0], 3)),
        "adjust-below-reserved": (one, lambda: ledger.adjust(op, [receipt(node, skus[0], -2)])),
        "reserve-short": (one, lambda: ledger.reserve(op, [Line(node, skus[0], 2)], ttl_ms=1000)),
        "commit-released": (skus[1:], lambda: ledger.commit(op, ended.reservation_id)),
        "release-released": (skus[1:], lambda: ledger.release(op, ended.reservation_id)),
        "multi-partition-reserve-short": (
            skus,
            lambda: ledger.reserve(
                op, [Line(node, skus[1], 1), Line(node, skus[2], 9)], ttl_ms=1000
            ),
        ),
        "multi-partition-adjust-below-reserved": (
            skus,
            lambda: ledger.adjust(op, [receipt(node, skus[1], -1), receipt(node, skus[0], -2)]),
        ),
    }


REFUSALS = [
    "stale-version",
    "set-below-reserved",
    "adjust-below-reserved",
    "reserve-short",
    "commit-released",
    "release-released",
    "multi-partition-reserve-short",
    "multi-partition-adjust-below-reserved",
]


@pytest.mark.parametrize("refusal", REFUSALS)
async def test_a_refused_operation_appends_no_event(timed: Harness, refusal: str):
    skus, refused = (await _refusals(timed))[refusal]
    before = await timed.snapshot(skus)
    marks = await timed.stream_marks(skus)

    with pytest.raises(DomainError):
        await refused()

    events = await timed.events_since(marks, skus)
    if timed.cluster and refusal.startswith("multi-partition"):
        # A saga: partitions that accepted are compensated. Their events come in pairs that
        # cancel out, quantities end where they began, and only versions move.
        assert sum(int(e["doh"]) for e in events) == 0
        assert sum(int(e["drs"]) for e in events) == 0
        assert quantities(await timed.snapshot(skus)) == quantities(before)
    else:
        assert events == []
        assert await timed.snapshot(skus) == before
