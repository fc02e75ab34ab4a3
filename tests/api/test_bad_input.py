"""Bad requests: each gets its documented 4xx as problem+json naming the offending field, and
changes nothing (the positions involved, versions included, and the reservation are as before).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import pytest

from tests.api.conftest import NODE_BODY, Ids, auth, make_node, set_stock
from tests.api.movement_support import hold_ok, sku_line, step_ok, transfer_ok
from tests.api.support import (
    assert_problem,
    idem,
    line,
    reservation_status,
    reserve,
    reserve_ok,
    snapshot,
)

NO_FIELD = None
LONG_ID = "x" * 65
MAX_QTY = 1_000_000_000
MAX_TTL_S = 7 * 24 * 3600


@dataclass
class World:
    node: str  # a warehouse: no pickup
    sku: str
    sku2: str
    rid: str
    key: str
    store: str  # a pickup store with 5 of sku
    hid: str  # a placed hold of 1 sku at the store
    tid: str  # a shipped transfer of 2 sku from the store to node (inbound there)

    def lines(self, **override: Any) -> list[dict[str, Any]]:
        return [{**line(self.node, self.sku, 1), **override}]

    def hold(self, **override: Any) -> dict[str, Any]:
        return {
            "store_id": self.store,
            "lines": [sku_line(self.sku, 1)],
            "customer_ref": "cust-1",
            **override,
        }

    def transfer(self, **override: Any) -> dict[str, Any]:
        return {
            "from_node": self.node,
            "to_node": self.store,
            "lines": [sku_line(self.sku, 1)],
            **override,
        }

    def adjustment(self, **override: Any) -> dict[str, Any]:
        return {
            "adjustments": [
                {"node_id": self.node, "sku": self.sku, "delta": 1, "reason": "receipt", **override}
            ]
        }


@dataclass(frozen=True)
class Bad:
    """One bad request: built from the world, with the status and field it must get."""

    name: str
    build: Any  # World -> (method, path, request kwargs)
    status: int
    field: str | None


def post_reservation(body: Any) -> Any:
    return lambda w: ("POST", "/v1/reservations", {"json": body(w), "headers": idem(w.key)})


def post_adjustments(body: Any) -> Any:
    return lambda w: ("POST", "/v1/stock/adjustments", {"json": body(w), "headers": idem(w.key)})


def post_hold(body: Any) -> Any:
    return lambda w: ("POST", "/v1/holds", {"json": body(w), "headers": idem(w.key)})


def post_transfer(body: Any) -> Any:
    return lambda w: ("POST", "/v1/transfers", {"json": body(w), "headers": idem(w.key)})


def receive(body: Any) -> Any:
    return lambda w: (
        "POST",
        f"/v1/transfers/{w.tid}/receive",
        {"json": body(w), "headers": auth("oms")},
    )


def get(path: Any, role: str = "oms") -> Any:
    return lambda w: ("GET", path(w), {"headers": auth(role)})


def query(body: Any) -> Any:
    return lambda w: (
        "POST",
        "/v1/availability/query",
        {"json": body(w), "headers": auth("storefront")},
    )


def raw_reservation(content: bytes, content_type: str, key: bool = True) -> Any:
    def build(w: World) -> Any:
        headers = idem(w.key) if key else auth("oms")
        headers["Content-Type"] = content_type
        return "POST", "/v1/reservations", {"content": content, "headers": headers}

    return build


def reservation_bytes(w: World) -> bytes:
    return json.dumps({"lines": w.lines()}).encode()


CASES = [
    # malformed or mistyped bodies
    Bad("malformed json", raw_reservation(b"{bad", "application/json"), 400, "body"),
    Bad(
        "truncated json",
        raw_reservation(b'{"lines": [{"node_id": ', "application/json"),
        400,
        "body",
    ),
    Bad(
        "qty as a string",
        post_reservation(lambda w: {"lines": w.lines(qty="2")}),
        422,
        "lines[0].qty",
    ),
    Bad(
        "qty as a fraction",
        post_reservation(lambda w: {"lines": w.lines(qty=1.5)}),
        422,
        "lines[0].qty",
    ),
    Bad(
        "qty as a bool",
        post_reservation(lambda w: {"lines": w.lines(qty=True)}),
        422,
        "lines[0].qty",
    ),
    Bad(
        "ttl_s as a string",
        post_reservation(lambda w: {"lines": w.lines(), "ttl_s": "60"}),
        422,
        "ttl_s",
    ),
    Bad("lines not a list", post_reservation(lambda w: {"lines": w.lines()[0]}), 422, "lines"),
    Bad("body not an object", post_reservation(lambda w: w.lines()), 422, NO_FIELD),
    # out of range
    Bad("qty 0", post_reservation(lambda w: {"lines": w.lines(qty=0)}), 422, "lines[0].qty"),
    Bad(
        "qty negative", post_reservation(lambda w: {"lines": w.lines(qty=-1)}), 422, "lines[0].qty"
    ),
    Bad(
        "qty above 1e9",
        post_reservation(lambda w: {"lines": w.lines(qty=MAX_QTY + 1)}),
        422,
        "lines[0].qty",
    ),
    Bad("ttl_s 0", post_reservation(lambda w: {"lines": w.lines(), "ttl_s": 0}), 422, "ttl_s"),
    Bad(
        "ttl_s above a week",
        post_reservation(lambda w: {"lines": w.lines(), "ttl_s": MAX_TTL_S + 1}),
        422,
        "ttl_s",
    ),
    Bad("no lines", post_reservation(lambda w: {"lines": []}), 422, "lines"),
    Bad("201 lines", post_reservation(lambda w: {"lines": w.lines() * 201}), 422, "lines"),
    # unknown and missing fields
    Bad(
        "unknown field",
        post_reservation(lambda w: {"lines": w.lines(), "colour": "red"}),
        422,
        "colour",
    ),
    Bad(
        "unknown field in a line",
        post_reservation(lambda w: {"lines": w.lines(colour="red")}),
        422,
        "lines[0].colour",
    ),
    Bad("missing lines", post_reservation(lambda w: {"ttl_s": 60}), 422, "lines"),
    Bad(
        "missing sku in a line",
        post_reservation(lambda w: {"lines": [{"node_id": w.node, "qty": 1}]}),
        422,
        "lines[0].sku",
    ),
    Bad(
        "unknown node in a line",
        post_reservation(lambda w: {"lines": w.lines(node_id="no-such-node")}),
        422,
        "lines[0].node_id",
    ),
    Bad(
        "unknown node in the second line",
        post_reservation(lambda w: {"lines": [*w.lines(), line("no-such-node", w.sku, 1)]}),
        422,
        "lines[1].node_id",
    ),
    # ids
    Bad(
        "65-char sku in body",
        post_reservation(lambda w: {"lines": w.lines(sku=LONG_ID)}),
        422,
        "lines[0].sku",
    ),
    Bad(
        "65-char node in body",
        post_reservation(lambda w: {"lines": w.lines(node_id=LONG_ID)}),
        422,
        "lines[0].node_id",
    ),
    Bad(
        "bad characters in body sku",
        post_reservation(lambda w: {"lines": w.lines(sku="bad sku!")}),
        422,
        "lines[0].sku",
    ),
    Bad(
        "bad characters in order_ref",
        post_reservation(lambda w: {"lines": w.lines(), "order_ref": "o/1"}),
        422,
        "order_ref",
    ),
    Bad(
        "65-char sku in path",
        lambda w: (
            "PUT",
            f"/v1/stock/{w.node}/{LONG_ID}",
            {"json": {"on_hand": 1}, "headers": auth("admin")},
        ),
        422,
        "sku",
    ),
    Bad(
        "bad characters in path sku",
        lambda w: (
            "PUT",
            f"/v1/stock/{w.node}/bad!sku",
            {"json": {"on_hand": 1}, "headers": auth("admin")},
        ),
        422,
        "sku",
    ),
    Bad(
        "65-char node in stock path", get(lambda w: f"/v1/stock/{LONG_ID}/{w.sku}"), 422, "node_id"
    ),
    Bad(
        "bad characters in node path",
        lambda w: ("PUT", "/v1/nodes/bad!node", {"json": NODE_BODY, "headers": auth("admin")}),
        422,
        "node_id",
    ),
    Bad(
        "65-char reservation id",
        get(lambda w: f"/v1/reservations/{LONG_ID}"),
        422,
        "reservation_id",
    ),
    # stock
    Bad(
        "put stock on an unknown node",
        lambda w: (
            "PUT",
            f"/v1/stock/no-such-node-{w.node}/{w.sku}",
            {"json": {"on_hand": 1}, "headers": auth("admin")},
        ),
        404,
        NO_FIELD,
    ),
    Bad(
        "negative on_hand",
        lambda w: (
            "PUT",
            f"/v1/stock/{w.node}/{w.sku}",
            {"json": {"on_hand": -1}, "headers": auth("admin")},
        ),
        422,
        "on_hand",
    ),
    Bad(
        "adjustment delta 0",
        post_adjustments(lambda w: w.adjustment(delta=0)),
        422,
        "adjustments[0].delta",
    ),
    Bad(
        "adjustment reason not in the enum",
        post_adjustments(lambda w: w.adjustment(reason="x")),
        422,
        "adjustments[0].reason",
    ),
    Bad(
        "adjustment at an unknown node",
        post_adjustments(lambda w: w.adjustment(node_id="no-such-node")),
        422,
        "adjustments[0].node_id",
    ),
    # headers
    Bad(
        "reservation without Idempotency-Key",
        lambda w: (
            "POST",
            "/v1/reservations",
            {"json": {"lines": w.lines()}, "headers": auth("oms")},
        ),
        400,
        "Idempotency-Key",
    ),
    Bad(
        "adjustments without Idempotency-Key",
        lambda w: (
            "POST",
            "/v1/stock/adjustments",
            {"json": w.adjustment(), "headers": auth("oms")},
        ),
        400,
        "Idempotency-Key",
    ),
    Bad(
        "Idempotency-Key of 256 chars",
        lambda w: (
            "POST",
            "/v1/reservations",
            {"json": {"lines": w.lines()}, "headers": idem("k" * 256)},
        ),
        400,
        "Idempotency-Key",
    ),
    Bad(
        "empty Idempotency-Key",
        lambda w: (
            "POST",
            "/v1/reservations",
            {"json": {"lines": w.lines()}, "headers": idem("")},
        ),
        400,
        "Idempotency-Key",
    ),
    Bad(
        "text/plain with a JSON body",
        lambda w: (
            "POST",
            "/v1/reservations",
            {
                "content": reservation_bytes(w),
                "headers": idem(w.key, **{"Content-Type": "text/plain"}),
            },
        ),
        415,
        "Content-Type",
    ),
    Bad(
        "JSON body without a content type",
        lambda w: (
            "PUT",
            f"/v1/stock/{w.node}/{w.sku}",
            {"content": b'{"on_hand": 1}', "headers": auth("admin")},
        ),
        415,
        "Content-Type",
    ),
    Bad(
        "body over 1 MiB",
        raw_reservation(b'{"lines": [], "pad": "' + b"x" * 1_048_576 + b'"}', "application/json"),
        413,
        "body",
    ),
    # availability
    Bad(
        "radius_km without near",
        get(lambda w: f"/v1/availability/{w.sku}?radius_km=5", "storefront"),
        422,
        "radius_km",
    ),
    Bad("near=abc", get(lambda w: f"/v1/availability/{w.sku}?near=abc", "storefront"), 422, "near"),
    Bad(
        "near out of range",
        get(lambda w: f"/v1/availability/{w.sku}?near=91,0", "storefront"),
        422,
        "near",
    ),
    Bad(
        "radius_km 0",
        get(lambda w: f"/v1/availability/{w.sku}?near=1,1&radius_km=0", "storefront"),
        422,
        "radius_km",
    ),
    Bad(
        "bad node_id filter",
        get(lambda w: f"/v1/availability/{w.sku}?node_id=a!b", "storefront"),
        422,
        "node_id",
    ),
    Bad(
        "query radius_km without near",
        query(lambda w: {"skus": [w.sku], "radius_km": 5}),
        422,
        "radius_km",
    ),
    Bad("query near=abc", query(lambda w: {"skus": [w.sku], "near": "abc"}), 422, "near"),
    Bad("query with 501 skus", query(lambda w: {"skus": [w.sku] * 501}), 422, "skus"),
    # unknown resources
    Bad("unknown reservation", get(lambda w: "/v1/reservations/not-a-reservation"), 404, NO_FIELD),
    Bad("unknown hold", get(lambda w: "/v1/holds/not-a-hold"), 404, NO_FIELD),
    Bad("unknown transfer", get(lambda w: "/v1/transfers/not-a-transfer"), 404, NO_FIELD),
    Bad(
        "ready an unknown hold",
        lambda w: ("POST", "/v1/holds/h0-000000000000000000000000/ready", {"headers": auth("oms")}),
        404,
        NO_FIELD,
    ),
    Bad(
        "ship an unknown transfer",
        lambda w: (
            "POST",
            "/v1/transfers/t0-000000000000000000000000/ship",
            {"headers": auth("oms")},
        ),
        404,
        NO_FIELD,
    ),
    # holds
    Bad(
        "hold without Idempotency-Key",
        lambda w: ("POST", "/v1/holds", {"json": w.hold(), "headers": auth("oms")}),
        400,
        "Idempotency-Key",
    ),
    Bad(
        "hold at an unknown store",
        post_hold(lambda w: w.hold(store_id="no-such-store")),
        422,
        "store_id",
    ),
    Bad(
        "hold at a node without pickup",
        post_hold(lambda w: w.hold(store_id=w.node)),
        422,
        "store_id",
    ),
    Bad(
        "hold from an unknown source",
        post_hold(lambda w: w.hold(source_node_id="no-such-node")),
        422,
        "source_node_id",
    ),
    Bad(
        "hold sourced from the store itself",
        post_hold(lambda w: w.hold(source_node_id=w.store)),
        422,
        "source_node_id",
    ),
    Bad(
        "hold with a source and allow_transfer",
        post_hold(lambda w: w.hold(source_node_id=w.node, allow_transfer=True)),
        422,
        "allow_transfer",
    ),
    Bad(
        "hold qty 0",
        post_hold(lambda w: w.hold(lines=[sku_line(w.sku, 0)])),
        422,
        "lines[0].qty",
    ),
    Bad(
        "hold qty as a string",
        post_hold(lambda w: w.hold(lines=[sku_line(w.sku, "1")])),
        422,
        "lines[0].qty",
    ),
    Bad("hold with no lines", post_hold(lambda w: w.hold(lines=[])), 422, "lines"),
    Bad(
        "hold line with a node_id",
        post_hold(lambda w: w.hold(lines=[{**sku_line(w.sku, 1), "node_id": w.store}])),
        422,
        "lines[0].node_id",
    ),
    Bad(
        "hold with bad characters in a sku",
        post_hold(lambda w: w.hold(lines=[sku_line("bad sku!", 1)])),
        422,
        "lines[0].sku",
    ),
    Bad(
        "hold without customer_ref",
        post_hold(lambda w: {k: v for k, v in w.hold().items() if k != "customer_ref"}),
        422,
        "customer_ref",
    ),
    Bad(
        "hold with empty customer_ref",
        post_hold(lambda w: w.hold(customer_ref="")),
        422,
        "customer_ref",
    ),
    Bad(
        "hold customer_ref with a control character",
        post_hold(lambda w: w.hold(customer_ref="a\tb")),
        422,
        "customer_ref",
    ),
    Bad(
        "hold customer_ref of 129 chars",
        post_hold(lambda w: w.hold(customer_ref="c" * 129)),
        422,
        "customer_ref",
    ),
    Bad(
        "hold pickup_window_s 0",
        post_hold(lambda w: w.hold(pickup_window_s=0)),
        422,
        "pickup_window_s",
    ),
    Bad(
        "hold pickup_window_s over 30 days",
        post_hold(lambda w: w.hold(pickup_window_s=30 * 86_400 + 1)),
        422,
        "pickup_window_s",
    ),
    Bad(
        "hold allow_transfer as a string",
        post_hold(lambda w: w.hold(allow_transfer="yes")),
        422,
        "allow_transfer",
    ),
    Bad("hold unknown field", post_hold(lambda w: w.hold(colour="red")), 422, "colour"),
    Bad("65-char hold id", get(lambda w: f"/v1/holds/{LONG_ID}"), 422, "hold_id"),
    Bad(
        "bad characters in a hold id to cancel",
        lambda w: ("POST", "/v1/holds/bad!id/cancel", {"headers": auth("oms")}),
        422,
        "hold_id",
    ),
    # transfers
    Bad(
        "transfer without Idempotency-Key",
        lambda w: ("POST", "/v1/transfers", {"json": w.transfer(), "headers": auth("oms")}),
        400,
        "Idempotency-Key",
    ),
    Bad(
        "transfer from an unknown node",
        post_transfer(lambda w: w.transfer(from_node="no-such-node")),
        422,
        "from_node",
    ),
    Bad(
        "transfer to an unknown node",
        post_transfer(lambda w: w.transfer(to_node="no-such-node")),
        422,
        "to_node",
    ),
    Bad(
        "transfer to its own source",
        post_transfer(lambda w: w.transfer(to_node=w.node)),
        422,
        "to_node",
    ),
    Bad(
        "transfer qty 0",
        post_transfer(lambda w: w.transfer(lines=[sku_line(w.sku, 0)])),
        422,
        "lines[0].qty",
    ),
    Bad(
        "transfer qty above 1e9",
        post_transfer(lambda w: w.transfer(lines=[sku_line(w.sku, MAX_QTY + 1)])),
        422,
        "lines[0].qty",
    ),
    Bad("transfer with no lines", post_transfer(lambda w: w.transfer(lines=[])), 422, "lines"),
    Bad(
        "transfer of 201 lines",
        post_transfer(lambda w: w.transfer(lines=[sku_line(w.sku, 1)] * 201)),
        422,
        "lines",
    ),
    Bad(
        "transfer with empty reason", post_transfer(lambda w: w.transfer(reason="")), 422, "reason"
    ),
    Bad(
        "transfer missing to_node",
        post_transfer(lambda w: {k: v for k, v in w.transfer().items() if k != "to_node"}),
        422,
        "to_node",
    ),
    Bad("transfer unknown field", post_transfer(lambda w: w.transfer(via="x")), 422, "via"),
    Bad("65-char transfer id", get(lambda w: f"/v1/transfers/{LONG_ID}"), 422, "transfer_id"),
    Bad(
        "receipt of more than shipped",
        receive(lambda w: {"lines": [sku_line(w.sku, 3)]}),
        422,
        "lines",
    ),
    Bad(
        "receipt of a sku not on the transfer",
        receive(lambda w: {"lines": [sku_line(w.sku2, 1)]}),
        422,
        "lines",
    ),
    Bad(
        "receipt qty negative",
        receive(lambda w: {"lines": [sku_line(w.sku, -1)]}),
        422,
        "lines[0].qty",
    ),
    Bad(
        "receipt naming a sku twice",
        receive(lambda w: {"lines": [sku_line(w.sku, 1), sku_line(w.sku, 1)]}),
        422,
        "lines[1].sku",
    ),
    Bad(
        "receipt lines not a list",
        receive(lambda w: {"lines": sku_line(w.sku, 1)}),
        422,
        "lines",
    ),
    Bad("receipt unknown field", receive(lambda w: {"arrived": []}), 422, "arrived"),
    Bad(
        "malformed receipt json",
        lambda w: (
            "POST",
            f"/v1/transfers/{w.tid}/receive",
            {
                "content": b'{"lines": [',
                "headers": auth("oms", **{"Content-Type": "application/json"}),
            },
        ),
        400,
        "body",
    ),
]


async def make_world(client: Any, ids: Ids) -> World:
    node, sku, sku2, store = ids.node(), ids.sku(), ids.sku(), ids.node("store")
    await make_node(client, node)
    await set_stock(client, node, sku, 10)
    await set_stock(client, node, sku2, 3)
    made = await reserve_ok(client, ids.key(), [line(node, sku, 2), line(node, sku2, 1)])
    await make_node(client, store, kind="store", pickup=True)
    await set_stock(client, store, sku, 5)
    hid = (await hold_ok(client, ids.key(), store, [sku_line(sku, 1)]))["hold_id"]
    tid = (await transfer_ok(client, ids.key(), store, node, [sku_line(sku, 2)]))["transfer_id"]
    await step_ok(client, "transfers", tid, "ship")
    return World(node, sku, sku2, made["reservation_id"], ids.key(), store, hid, tid)


async def observe(client: Any, w: World) -> Any:
    positions = await snapshot(
        client, [(w.node, w.sku), (w.node, w.sku2), (w.store, w.sku), (w.store, w.sku2)]
    )
    reservation = await client.get(f"/v1/reservations/{w.rid}", headers=auth("oms"))
    nodes = await client.get("/v1/nodes", headers=auth("admin"))
    hold = await client.get(f"/v1/holds/{w.hid}", headers=auth("oms"))
    transfer = await client.get(f"/v1/transfers/{w.tid}", headers=auth("oms"))
    return positions, reservation.json(), nodes.json(), hold.json(), transfer.json()


# A request that succeeds with the world's key, for the POST paths whose refused requests must
# leave the key unspent.
GOOD_WITH_THE_KEY = {
    "/v1/reservations": lambda w: {"lines": [line(w.node, w.sku, 1)]},
    "/v1/holds": lambda w: w.hold(),
    "/v1/transfers": lambda w: w.transfer(),
}


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
async def test_bad_request_is_refused_with_a_problem_and_changes_nothing(
    client, ids: Ids, case: Bad
) -> None:
    world = await make_world(client, ids)
    before = await observe(client, world)
    method, path, kwargs = case.build(world)
    response = await client.request(method, path, **kwargs)
    problem = assert_problem(response, case.status)
    if case.field is not NO_FIELD:
        assert problem.get("field") == case.field, problem
    assert await observe(client, world) == before
    # The key of a refused request was not spent: the same key still makes a reservation (a
    # hold, a transfer).
    if method == "POST" and path in GOOD_WITH_THE_KEY:
        again = await client.post(
            path, json=GOOD_WITH_THE_KEY[path](world), headers=idem(world.key)
        )
        assert again.status_code == 201, again.text


async def test_commit_of_a_released_reservation_is_an_illegal_state_change(
    client, ids: Ids
) -> None:
    world = await make_world(client, ids)
    released = await client.post(f"/v1/reservations/{world.rid}/release", headers=auth("oms"))
    assert released.status_code == 200, released.text
    before = await observe(client, world)

    committed = await client.post(f"/v1/reservations/{world.rid}/commit", headers=auth("oms"))

    assert_problem(committed, 409)
    assert await reservation_status(client, world.rid) == "released"
    assert await observe(client, world) == before


async def test_shortage_lists_every_short_line_and_reserves_nothing(client, ids: Ids) -> None:
    world = await make_world(client, ids)
    other = ids.node()
    await make_node(client, other)
    await set_stock(client, other, world.sku2, 4)
    pairs = [(world.node, world.sku), (world.node, world.sku2), (other, world.sku2)]
    before = await snapshot(client, pairs)

    response = await reserve(
        client,
        ids.key(),
        [
            line(world.node, world.sku, 9),  # 8 available: short
            line(other, world.sku2, 4),  # 4 available: fine
            line(world.node, world.sku2, 5),  # 2 available: short
        ],
    )

    problem = assert_problem(response, 409)
    shortages = sorted(problem["shortages"], key=lambda s: (s["node_id"], s["sku"]))
    assert shortages == sorted(
        [
            {"node_id": world.node, "sku": world.sku, "requested": 9, "available": 8},
            {"node_id": world.node, "sku": world.sku2, "requested": 5, "available": 2},
        ],
        key=lambda s: (s["node_id"], s["sku"]),
    )
    assert await snapshot(client, pairs) == before
