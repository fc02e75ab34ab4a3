"""Transfers: requested (reserved at the source) -> in_transit (left the source, inbound at the
destination) -> received (on hand at the destination, a shortfall recorded as a loss), or
requested -> cancelled. Every step's effect on the positions of both ends, every illegal step
(409, nothing changed), receipts, and idempotent replays."""

from __future__ import annotations

import time
from typing import Any

import pytest

from omnistock.reservations.keys import partition_of
from tests.api.conftest import Ids, auth, position, set_stock
from tests.api.movement_support import (
    REPLAYED,
    concurrently_to,
    get_transfer,
    make_warehouse,
    ms_of,
    post_transfer,
    q,
    quantities_of,
    same_partition_skus,
    sku_line,
    spread_skus,
    step,
    step_ok,
    transfer_ok,
)
from tests.api.support import assert_problem, idem, snapshot


async def two_nodes(
    client: Any, ids: Ids, one_partition: bool = False, **stock: int
) -> tuple[str, str, list[str]]:
    """A source with ``stock`` of fresh SKUs (keyword order: a=.., b=..), each in a ledger
    partition of its own (or all in one), and an empty destination; returns (source,
    destination, skus)."""
    skus = (same_partition_skus if one_partition else spread_skus)(ids, list(stock))
    source = await make_warehouse(client, ids, dict(zip(skus, stock.values(), strict=True)))
    destination = await make_warehouse(client, ids)
    return source, destination, skus


# -- the happy path, step by step -----------------------------------------------------------------


async def test_request_reserves_at_the_source_and_leaves_the_destination_alone(
    client, ids: Ids
) -> None:
    src, dst, (a, b) = await two_nodes(client, ids, a=10, b=4)
    before = time.time() * 1000
    made = await transfer_ok(
        client, ids.key(), src, dst, [sku_line(a, 3), sku_line(b, 4)], reason="rebalance"
    )
    after = time.time() * 1000

    assert set(made) == {
        "transfer_id",
        "status",
        "from_node",
        "to_node",
        "lines",
        "created_at",
        "reason",
    }, made
    assert made["status"] == "requested"
    assert (made["from_node"], made["to_node"], made["reason"]) == (src, dst, "rebalance")
    assert made["lines"] == [
        {"sku": a, "qty": 3, "shipped": 0, "received": 0},
        {"sku": b, "qty": 4, "shipped": 0, "received": 0},
    ]
    assert before - 1000 <= ms_of(made["created_at"]) <= after + 1000
    assert await get_transfer(client, made["transfer_id"]) == made

    assert await quantities_of(client, src, a) == q(10, 3, 0, 0, 7)
    assert await quantities_of(client, src, b) == q(4, 4, 0, 0, 0)
    assert await quantities_of(client, dst, a) == q(0, 0, 0, 0, 0)
    assert await quantities_of(client, dst, b) == q(0, 0, 0, 0, 0)


async def test_a_transfer_without_reason_has_none(client, ids: Ids) -> None:
    src, dst, (a,) = await two_nodes(client, ids, a=5)
    made = await transfer_ok(client, ids.key(), src, dst, [sku_line(a, 1)])
    assert made.get("reason") is None
    assert made["status"] == "requested"


async def test_ship_moves_the_goods_off_the_source_and_into_inbound(client, ids: Ids) -> None:
    src, dst, (a, b) = await two_nodes(client, ids, a=10, b=4)
    tid = (await transfer_ok(client, ids.key(), src, dst, [sku_line(a, 3), sku_line(b, 4)]))[
        "transfer_id"
    ]

    shipped = await step_ok(client, "transfers", tid, "ship")

    assert shipped["status"] == "in_transit"
    assert shipped["lines"] == [
        {"sku": a, "qty": 3, "shipped": 3, "received": 0},
        {"sku": b, "qty": 4, "shipped": 4, "received": 0},
    ]
    assert await get_transfer(client, tid) == shipped
    assert await quantities_of(client, src, a) == q(7, 0, 0, 0, 7)
    assert await quantities_of(client, src, b) == q(0, 0, 0, 0, 0)
    # Inbound is not available.
    assert await quantities_of(client, dst, a) == q(0, 0, 0, 3, 0)
    assert await quantities_of(client, dst, b) == q(0, 0, 0, 4, 0)


@pytest.mark.parametrize(
    "body",
    [None, {}, {"lines": None}],
    ids=["no body", "empty object", "lines null"],
)
async def test_receive_without_lines_means_everything_shipped_arrived(
    client, ids: Ids, body: Any
) -> None:
    src, dst, (a, b) = await two_nodes(client, ids, a=10, b=4)
    await set_stock(client, dst, a, 2)
    tid = (await transfer_ok(client, ids.key(), src, dst, [sku_line(a, 3), sku_line(b, 4)]))[
        "transfer_id"
    ]
    await step_ok(client, "transfers", tid, "ship")

    kwargs = {} if body is None else {"json": body}
    received = await step_ok(client, "transfers", tid, "receive", **kwargs)

    assert received["status"] == "received"
    assert received["lines"] == [
        {"sku": a, "qty": 3, "shipped": 3, "received": 3},
        {"sku": b, "qty": 4, "shipped": 4, "received": 4},
    ]
    assert await get_transfer(client, tid) == received
    assert await quantities_of(client, dst, a) == q(5, 0, 0, 0, 5)
    assert await quantities_of(client, dst, b) == q(4, 0, 0, 0, 4)
    assert await quantities_of(client, src, a) == q(7, 0, 0, 0, 7)
    assert await quantities_of(client, src, b) == q(0, 0, 0, 0, 0)


@pytest.mark.parametrize("layout", ["spread", "one partition"])
async def test_a_partial_receipt_records_the_shortfall_as_a_loss(
    client, ids: Ids, layout: str
) -> None:
    """SKUs spread over partitions or sharing one: the ledger's layout is invisible to clients."""
    src, dst, (a, b, c) = await two_nodes(
        client, ids, one_partition=layout == "one partition", a=10, b=4, c=6
    )
    lines = [sku_line(a, 3), sku_line(b, 4), sku_line(c, 2)]
    tid = (await transfer_ok(client, ids.key(), src, dst, lines))["transfer_id"]
    await step_ok(client, "transfers", tid, "ship")

    # a: 1 of 3 arrived, b: left out (none arrived), c: all arrived.
    received = await step_ok(
        client,
        "transfers",
        tid,
        "receive",
        json={"lines": [sku_line(a, 1), sku_line(c, 2)]},
    )

    assert received["status"] == "received"
    assert received["lines"] == [
        {"sku": a, "qty": 3, "shipped": 3, "received": 1},
        {"sku": b, "qty": 4, "shipped": 4, "received": 0},
        {"sku": c, "qty": 2, "shipped": 2, "received": 2},
    ]
    # Inbound drops by what was shipped; on_hand rises by what arrived.
    assert await quantities_of(client, dst, a) == q(1, 0, 0, 0, 1)
    assert await quantities_of(client, dst, b) == q(0, 0, 0, 0, 0)
    assert await quantities_of(client, dst, c) == q(2, 0, 0, 0, 2)
    # The source is where shipping left it.
    assert await quantities_of(client, src, a) == q(7, 0, 0, 0, 7)
    assert await quantities_of(client, src, b) == q(0, 0, 0, 0, 0)
    assert await quantities_of(client, src, c) == q(4, 0, 0, 0, 4)


async def test_an_empty_receipt_is_a_total_loss(client, ids: Ids) -> None:
    src, dst, (a,) = await two_nodes(client, ids, a=5)
    tid = (await transfer_ok(client, ids.key(), src, dst, [sku_line(a, 5)]))["transfer_id"]
    await step_ok(client, "transfers", tid, "ship")

    received = await step_ok(client, "transfers", tid, "receive", json={"lines": []})

    assert received["lines"] == [{"sku": a, "qty": 5, "shipped": 5, "received": 0}]
    assert await quantities_of(client, dst, a) == q(0, 0, 0, 0, 0)
    assert await quantities_of(client, src, a) == q(0, 0, 0, 0, 0)


async def test_cancel_before_ship_gives_the_reservation_back(client, ids: Ids) -> None:
    src, dst, (a, b) = await two_nodes(client, ids, a=10, b=4)
    tid = (await transfer_ok(client, ids.key(), src, dst, [sku_line(a, 3), sku_line(b, 4)]))[
        "transfer_id"
    ]

    cancelled = await step_ok(client, "transfers", tid, "cancel")

    assert cancelled["status"] == "cancelled"
    assert [(x["shipped"], x["received"]) for x in cancelled["lines"]] == [(0, 0), (0, 0)]
    assert await get_transfer(client, tid) == cancelled
    assert await quantities_of(client, src, a) == q(10, 0, 0, 0, 10)
    assert await quantities_of(client, src, b) == q(4, 0, 0, 0, 4)
    assert await quantities_of(client, dst, a) == q(0, 0, 0, 0, 0)


# -- refusals at request time --------------------------------------------------------------------


async def test_a_shortage_at_the_source_reserves_nothing(client, ids: Ids) -> None:
    src, dst, (a, b) = await two_nodes(client, ids, a=10, b=2)
    pairs = [(src, a), (src, b), (dst, a), (dst, b)]
    before = await snapshot(client, pairs)

    response = await post_transfer(client, ids.key(), src, dst, [sku_line(a, 3), sku_line(b, 5)])

    problem = assert_problem(response, 409)
    assert problem["shortages"] == [{"node_id": src, "sku": b, "requested": 5, "available": 2}]
    assert await snapshot(client, pairs) == before


async def test_a_transfer_to_the_same_node_is_refused(client, ids: Ids) -> None:
    src, _dst, (a,) = await two_nodes(client, ids, a=10)
    before = await snapshot(client, [(src, a)])
    response = await post_transfer(client, ids.key(), src, src, [sku_line(a, 1)])
    assert_problem(response, 422)
    assert await snapshot(client, [(src, a)]) == before


@pytest.mark.parametrize("end", ["from_node", "to_node"])
async def test_an_unknown_node_at_either_end_is_refused(client, ids: Ids, end: str) -> None:
    src, dst, (a,) = await two_nodes(client, ids, a=10)
    ends = {"from_node": src, "to_node": dst, end: ids.node("nowhere")}
    before = await snapshot(client, [(src, a), (dst, a)])
    response = await post_transfer(
        client, ids.key(), ends["from_node"], ends["to_node"], [sku_line(a, 1)]
    )
    assert_problem(response, 422, end)
    assert await snapshot(client, [(src, a), (dst, a)]) == before


async def test_an_unknown_transfer_is_404(client) -> None:
    for transfer_id in ("not-a-transfer", "t0-000000000000000000000000"):
        response = await client.get(f"/v1/transfers/{transfer_id}", headers=auth("oms"))
        assert_problem(response, 404)
        for action in ("ship", "receive", "cancel"):
            assert_problem(await step(client, "transfers", transfer_id, action), 404)


# -- illegal steps -------------------------------------------------------------------------------


async def _transfer_in(client: Any, ids: Ids, state: str) -> tuple[str, list[tuple[str, str]]]:
    """A transfer of 3 of 10 brought to ``state``; returns its id and the positions involved."""
    src, dst, (a,) = await two_nodes(client, ids, a=10)
    tid = (await transfer_ok(client, ids.key(), src, dst, [sku_line(a, 3)]))["transfer_id"]
    if state in ("in_transit", "received"):
        await step_ok(client, "transfers", tid, "ship")
    if state == "received":
        await step_ok(client, "transfers", tid, "receive")
    if state == "cancelled":
        await step_ok(client, "transfers", tid, "cancel")
    return tid, [(src, a), (dst, a)]


ILLEGAL = {
    "requested": ["receive"],
    "in_transit": ["ship", "cancel"],
    "received": ["ship", "receive", "cancel"],
    "cancelled": ["ship", "receive", "cancel"],
}


@pytest.mark.parametrize("state", list(ILLEGAL))
async def test_an_illegal_step_is_409_and_changes_nothing(client, ids: Ids, state: str) -> None:
    tid, pairs = await _transfer_in(client, ids, state)
    before = (await snapshot(client, pairs), await get_transfer(client, tid))
    assert before[1]["status"] == state

    for action in ILLEGAL[state]:
        response = await step(client, "transfers", tid, action)

        problem = assert_problem(response, 409)
        assert "shortages" not in problem, action
        assert (await snapshot(client, pairs), await get_transfer(client, tid)) == before, action


async def test_over_receipt_is_refused_and_changes_nothing(client, ids: Ids) -> None:
    src, dst, (a, b) = await two_nodes(client, ids, a=10, b=4)
    tid = (await transfer_ok(client, ids.key(), src, dst, [sku_line(a, 3), sku_line(b, 4)]))[
        "transfer_id"
    ]
    await step_ok(client, "transfers", tid, "ship")
    pairs = [(src, a), (src, b), (dst, a), (dst, b)]
    before = (await snapshot(client, pairs), await get_transfer(client, tid))

    response = await step(
        client, "transfers", tid, "receive", json={"lines": [sku_line(a, 3), sku_line(b, 5)]}
    )

    problem = assert_problem(response, 422)
    assert str(problem.get("field", "")).startswith("lines"), problem
    assert (await snapshot(client, pairs), await get_transfer(client, tid)) == before
    # The transfer can still be received properly.
    received = await step_ok(client, "transfers", tid, "receive")
    assert received["status"] == "received"


async def test_a_receipt_naming_a_sku_not_on_the_transfer_is_refused(client, ids: Ids) -> None:
    src, dst, (a,) = await two_nodes(client, ids, a=10)
    stranger = ids.sku("stranger")
    while partition_of(stranger) == partition_of(a):  # another partition than a's
        stranger = ids.sku("stranger")
    tid = (await transfer_ok(client, ids.key(), src, dst, [sku_line(a, 3)]))["transfer_id"]
    await step_ok(client, "transfers", tid, "ship")
    pairs = [(src, a), (dst, a), (dst, stranger)]
    before = (await snapshot(client, pairs), await get_transfer(client, tid))

    response = await step(
        client, "transfers", tid, "receive", json={"lines": [sku_line(a, 3), sku_line(stranger, 1)]}
    )

    problem = assert_problem(response, 422)
    assert str(problem.get("field", "")).startswith("lines"), problem
    assert (await snapshot(client, pairs), await get_transfer(client, tid)) == before


# -- idempotency ---------------------------------------------------------------------------------


async def test_request_replays_with_the_same_key_and_body(client, ids: Ids) -> None:
    src, dst, (a,) = await two_nodes(client, ids, a=10)
    key = ids.key()
    first = await post_transfer(client, key, src, dst, [sku_line(a, 3)], reason="r")
    second = await post_transfer(client, key, src, dst, [sku_line(a, 3)], reason="r")

    assert first.status_code == 201, first.text
    assert REPLAYED not in first.headers
    assert second.status_code == 201, second.text
    assert second.headers.get(REPLAYED) == "true"
    assert second.content == first.content
    assert await quantities_of(client, src, a) == q(10, 3, 0, 0, 7)


async def test_replay_of_a_request_after_ship_is_the_first_response(client, ids: Ids) -> None:
    src, dst, (a,) = await two_nodes(client, ids, a=10)
    key = ids.key()
    first = await post_transfer(client, key, src, dst, [sku_line(a, 3)])
    assert first.status_code == 201, first.text
    await step_ok(client, "transfers", first.json()["transfer_id"], "ship")
    shipped = await snapshot(client, [(src, a), (dst, a)])

    again = await post_transfer(client, key, src, dst, [sku_line(a, 3)])

    assert again.status_code == 201 and again.content == first.content, again.text
    assert again.headers.get(REPLAYED) == "true"
    assert await snapshot(client, [(src, a), (dst, a)]) == shipped


async def test_request_under_a_used_key_with_another_body_is_refused(client, ids: Ids) -> None:
    src, dst, (a,) = await two_nodes(client, ids, a=10)
    key = ids.key()
    await transfer_ok(client, key, src, dst, [sku_line(a, 3)])
    before = await snapshot(client, [(src, a), (dst, a)])

    other = await post_transfer(client, key, src, dst, [sku_line(a, 4)])

    assert_problem(other, 422, "Idempotency-Key")
    assert await snapshot(client, [(src, a), (dst, a)]) == before


async def test_replay_of_a_shortage_is_the_same_409_even_once_stock_arrives(
    client, ids: Ids
) -> None:
    src, dst, (a,) = await two_nodes(client, ids, a=2)
    key = ids.key()
    first = await post_transfer(client, key, src, dst, [sku_line(a, 5)])
    assert_problem(first, 409)
    await set_stock(client, src, a, 50)

    second = await post_transfer(client, key, src, dst, [sku_line(a, 5)])

    assert second.status_code == 409 and second.content == first.content
    assert second.headers.get(REPLAYED) == "true"
    assert (await position(client, src, a))["reserved"] == 0


async def test_ship_and_receive_with_keys_replay_and_move_stock_once(client, ids: Ids) -> None:
    src, dst, (a,) = await two_nodes(client, ids, a=10)
    tid = (await transfer_ok(client, ids.key(), src, dst, [sku_line(a, 3)]))["transfer_id"]

    ship_key = ids.key()
    shipped = await step(client, "transfers", tid, "ship", ship_key)
    again = await step(client, "transfers", tid, "ship", ship_key)
    assert shipped.status_code == 200, shipped.text
    assert REPLAYED not in shipped.headers
    assert again.status_code == 200 and again.content == shipped.content
    assert again.headers.get(REPLAYED) == "true"
    assert await quantities_of(client, src, a) == q(7, 0, 0, 0, 7)
    assert await quantities_of(client, dst, a) == q(0, 0, 0, 3, 0)

    receive_key = ids.key()
    body = {"lines": [sku_line(a, 2)]}
    received = await step(client, "transfers", tid, "receive", receive_key, json=body)
    again = await step(client, "transfers", tid, "receive", receive_key, json=body)
    assert received.status_code == 200, received.text
    assert again.status_code == 200 and again.content == received.content
    assert again.headers.get(REPLAYED) == "true"
    assert await quantities_of(client, dst, a) == q(2, 0, 0, 0, 2)

    # The same key with another receipt is another request.
    other = await step(
        client, "transfers", tid, "receive", receive_key, json={"lines": [sku_line(a, 3)]}
    )
    assert_problem(other, 422, "Idempotency-Key")
    assert await quantities_of(client, dst, a) == q(2, 0, 0, 0, 2)


async def test_cancel_with_a_key_replays_and_gives_back_once(client, ids: Ids) -> None:
    src, dst, (a,) = await two_nodes(client, ids, a=10)
    tid = (await transfer_ok(client, ids.key(), src, dst, [sku_line(a, 3)]))["transfer_id"]
    key = ids.key()
    first = await step(client, "transfers", tid, "cancel", key)
    second = await step(client, "transfers", tid, "cancel", key)

    assert first.status_code == 200 and first.json()["status"] == "cancelled", first.text
    assert second.status_code == 200 and second.content == first.content
    assert second.headers.get(REPLAYED) == "true"
    assert await quantities_of(client, src, a) == q(10, 0, 0, 0, 10)


async def test_replay_of_ship_after_receipt_is_still_the_first_response(client, ids: Ids) -> None:
    """Idempotency: the same key and request again gets the stored first response, whatever
    happened to the transfer since."""
    src, dst, (a,) = await two_nodes(client, ids, a=10)
    tid = (await transfer_ok(client, ids.key(), src, dst, [sku_line(a, 3)]))["transfer_id"]
    key = ids.key()
    shipped = await step(client, "transfers", tid, "ship", key)
    assert shipped.status_code == 200, shipped.text
    await step_ok(client, "transfers", tid, "receive")
    after_receipt = await snapshot(client, [(src, a), (dst, a)])

    again = await step(client, "transfers", tid, "ship", key)

    assert again.status_code == 200, again.text
    assert again.content == shipped.content
    assert again.headers.get(REPLAYED) == "true"
    assert await snapshot(client, [(src, a), (dst, a)]) == after_receipt


async def test_replay_of_a_refused_receive_is_the_same_409_after_ship(client, ids: Ids) -> None:
    """A refused step under a key is answered the same way when repeated under that key, even
    once the step would succeed: the key's stored first response is the 409."""
    src, dst, (a,) = await two_nodes(client, ids, a=10)
    tid = (await transfer_ok(client, ids.key(), src, dst, [sku_line(a, 3)]))["transfer_id"]
    key = ids.key()
    refused = await step(client, "transfers", tid, "receive", key)
    assert_problem(refused, 409)
    await step_ok(client, "transfers", tid, "ship")
    shipped = await snapshot(client, [(src, a), (dst, a)])

    again = await step(client, "transfers", tid, "receive", key)

    assert again.status_code == 409, again.text
    assert again.content == refused.content
    assert again.headers.get(REPLAYED) == "true"
    assert await snapshot(client, [(src, a), (dst, a)]) == shipped
    assert (await get_transfer(client, tid))["status"] == "in_transit"


async def test_steps_are_per_transfer_the_key_of_one_is_not_reusable_on_another(
    client, ids: Ids
) -> None:
    src, dst, (a,) = await two_nodes(client, ids, a=10)
    t1 = (await transfer_ok(client, ids.key(), src, dst, [sku_line(a, 1)]))["transfer_id"]
    t2 = (await transfer_ok(client, ids.key(), src, dst, [sku_line(a, 2)]))["transfer_id"]
    key = ids.key()
    await step_ok(client, "transfers", t1, "ship", key)
    before = await snapshot(client, [(src, a), (dst, a)])

    reused = await step(client, "transfers", t2, "ship", key)

    assert_problem(reused, 422, "Idempotency-Key")
    assert await snapshot(client, [(src, a), (dst, a)]) == before
    assert (await get_transfer(client, t2))["status"] == "requested"


async def test_the_same_key_for_a_transfer_and_a_reservation_is_refused(client, ids: Ids) -> None:
    src, dst, (a,) = await two_nodes(client, ids, a=10)
    key = ids.key()
    await transfer_ok(client, key, src, dst, [sku_line(a, 1)])
    before = await snapshot(client, [(src, a)])

    reserved = await client.post(
        "/v1/reservations",
        json={"lines": [{"node_id": src, "sku": a, "qty": 1}]},
        headers=idem(key),
    )

    assert_problem(reserved, 422, "Idempotency-Key")
    assert await snapshot(client, [(src, a)]) == before


async def test_stock_on_the_way_is_not_sellable_at_either_end(client, ids: Ids) -> None:
    src, dst, (a,) = await two_nodes(client, ids, a=4)
    tid = (await transfer_ok(client, ids.key(), src, dst, [sku_line(a, 4)]))["transfer_id"]
    await step_ok(client, "transfers", tid, "ship")

    for node in (src, dst):
        refused = await client.post(
            "/v1/reservations",
            json={"lines": [{"node_id": node, "sku": a, "qty": 1}]},
            headers=idem(ids.key()),
        )
        problem = assert_problem(refused, 409)
        assert problem["shortages"] == [{"node_id": node, "sku": a, "requested": 1, "available": 0}]


async def test_concurrent_ships_and_cancels_of_one_transfer_settle_it_once(
    client, ids: Ids
) -> None:
    src, dst, (a,) = await two_nodes(client, ids, a=10)
    tid = (await transfer_ok(client, ids.key(), src, dst, [sku_line(a, 3)]))["transfer_id"]
    actions = ["ship", "cancel"] * 5

    answers = await concurrently_to(
        client,
        "POST",
        [(f"/v1/transfers/{tid}/{action}", {"headers": auth("oms")}) for action in actions],
    )

    outcomes = list(zip(actions, answers, strict=True))
    won = [action for action, answer in outcomes if answer.status_code == 200]
    assert len(won) == 1, [(action, answer.text) for action, answer in outcomes]
    for _action, answer in outcomes:
        if answer.status_code != 200:
            assert_problem(answer, 409)
    if won[0] == "ship":
        assert (await get_transfer(client, tid))["status"] == "in_transit"
        assert await quantities_of(client, src, a) == q(7, 0, 0, 0, 7)
        assert await quantities_of(client, dst, a) == q(0, 0, 0, 3, 0)
    else:
        assert (await get_transfer(client, tid))["status"] == "cancelled"
        assert await quantities_of(client, src, a) == q(10, 0, 0, 0, 10)
        assert await quantities_of(client, dst, a) == q(0, 0, 0, 0, 0)
