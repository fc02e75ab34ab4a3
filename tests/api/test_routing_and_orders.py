"""Routing quotes, orders (route and reserve as one step) and batch planning through the API."""

from __future__ import annotations

import math
from typing import Any

from tests.api.conftest import Ids, auth, make_node, set_stock
from tests.api.support import assert_problem, concurrently, idem, snapshot

BERLIN = {"lat": 52.52, "lon": 13.405}
COST = {"per_shipment": 5.0, "per_km": 0.01, "per_unit": 0.1}


def _km(a: dict[str, float], b: dict[str, float]) -> float:
    p1, p2 = math.radians(a["lat"]), math.radians(b["lat"])
    dp, dl = p2 - p1, math.radians(b["lon"] - a["lon"])
    h = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * 6371.0088 * math.asin(math.sqrt(h))


async def _network(client: Any, ids: Ids) -> dict[str, Any]:
    """A warehouse in Frankfurt, a store in Berlin (pickup) and one in Munich, with costs."""
    nodes = {
        "dc": ids.node("dc"),
        "ber": ids.node("ber"),
        "muc": ids.node("muc"),
    }
    await make_node(client, nodes["dc"], lat=50.11, lon=8.68, cost=COST)
    await make_node(
        client, nodes["ber"], lat=52.52, lon=13.40, kind="store", pickup=True, cost=COST
    )
    await make_node(
        client, nodes["muc"], lat=48.14, lon=11.58, kind="store", pickup=True, cost=COST
    )
    return nodes


def _order(sku_qtys: list[tuple[str, int]], **fields: Any) -> dict[str, Any]:
    return {"lines": [{"sku": s, "qty": q} for s, q in sku_qtys], **fields}


async def test_quote_prefers_the_cheapest_plan_and_reserves_nothing(client, ids: Ids) -> None:
    nodes = await _network(client, ids)
    sku = ids.sku()
    await set_stock(client, nodes["dc"], sku, 10)
    await set_stock(client, nodes["ber"], sku, 10)
    before = await snapshot(client, [(n, sku) for n in nodes.values()])
    response = await client.post(
        "/v1/routing/quote",
        json=_order([(sku, 2)], destination=BERLIN),
        headers=auth("storefront"),
    )
    assert response.status_code == 200, response.text
    plan = response.json()
    [shipment] = plan["shipments"]
    assert shipment["node_id"] == nodes["ber"]
    expected = (
        COST["per_shipment"] + COST["per_km"] * shipment["distance_km"] + COST["per_unit"] * 2
    )
    assert math.isclose(shipment["cost"], expected) and math.isclose(plan["total_cost"], expected)
    assert plan["unfulfilled"] == [] and plan["strategy"] == "cost"
    assert plan["solver"]["optimal"] is True and plan["solver"]["elapsed_ms"] >= 0
    assert await snapshot(client, [(n, sku) for n in nodes.values()]) == before


async def test_quote_splits_and_reports_what_no_node_has(client, ids: Ids) -> None:
    nodes = await _network(client, ids)
    a, b, missing = ids.sku(), ids.sku(), ids.sku()
    await set_stock(client, nodes["dc"], a, 3)
    await set_stock(client, nodes["muc"], b, 3)
    response = await client.post(
        "/v1/routing/quote",
        json=_order([(a, 2), (b, 1), (missing, 4)], destination=BERLIN, strategy="closest"),
        headers=auth("oms"),
    )
    plan = response.json()
    assert response.status_code == 200, plan
    assert {s["node_id"] for s in plan["shipments"]} == {nodes["dc"], nodes["muc"]}
    assert plan["unfulfilled"] == [{"sku": missing, "qty": 4}]
    assert plan["strategy"] == "closest" and plan["solver"]["optimal"] is False
    for s in plan["shipments"]:
        assert math.isclose(
            s["distance_km"], _km(_node_at(s["node_id"], nodes), BERLIN), rel_tol=1e-6
        )


def _node_at(node_id: str, nodes: dict[str, str]) -> dict[str, float]:
    where = {"dc": (50.11, 8.68), "ber": (52.52, 13.40), "muc": (48.14, 11.58)}
    [label] = [k for k, v in nodes.items() if v == node_id]
    lat, lon = where[label]
    return {"lat": lat, "lon": lon}


async def test_pickup_quote_uses_the_store_when_it_has_everything(client, ids: Ids) -> None:
    nodes = await _network(client, ids)
    sku = ids.sku()
    await set_stock(client, nodes["ber"], sku, 2)
    await set_stock(client, nodes["dc"], sku, 50)
    response = await client.post(
        "/v1/routing/quote",
        json=_order([(sku, 2)], pickup_node_id=nodes["ber"]),
        headers=auth("storefront"),
    )
    plan = response.json()
    assert [s["node_id"] for s in plan["shipments"]] == [nodes["ber"]]
    assert plan["total_cost"] == 0 and plan["pickup"]["local"] is True


async def test_bad_quotes_name_the_field(client, ids: Ids) -> None:
    nodes = await _network(client, ids)
    sku = ids.sku()
    cases = [
        (_order([(sku, 1)], destination=BERLIN, pickup_node_id=nodes["ber"]), "destination"),
        (_order([(sku, 1)]), "destination"),
        (_order([(sku, 1)], pickup_node_id=nodes["dc"]), "pickup_node_id"),
        (_order([(sku, 1)], destination=BERLIN, strategy="cheapest"), "strategy"),
        (_order([(sku, 0)], destination=BERLIN), "lines[0].qty"),
        (_order([(sku, 1)], destination={"lat": 91, "lon": 0}), "destination.lat"),
        (_order([(sku, 1)], destination=BERLIN, max_shipments=0), "max_shipments"),
    ]
    for body, field in cases:
        response = await client.post("/v1/routing/quote", json=body, headers=auth("oms"))
        assert_problem(response, 422, field)


async def test_an_order_reserves_its_plan_and_replays_under_its_key(client, ids: Ids) -> None:
    nodes = await _network(client, ids)
    a, b = ids.sku(), ids.sku()
    await set_stock(client, nodes["dc"], a, 5)
    await set_stock(client, nodes["muc"], b, 5)
    body = _order([(a, 2), (b, 1)], order_id=ids.key(), destination=BERLIN, ttl_s=600)
    key = ids.key()
    first = await client.post("/v1/orders", json=body, headers=idem(key))
    assert first.status_code == 201, first.text
    order = first.json()
    assert order["order_id"] == body["order_id"] and order["status"] == "active"
    reserved = {
        (s["node_id"], line["sku"]): line["qty"]
        for s in order["plan"]["shipments"]
        for line in s["lines"]
    }
    assert reserved == {(nodes["dc"], a): 2, (nodes["muc"], b): 1}
    [dc_a, muc_b] = await snapshot(client, [(nodes["dc"], a), (nodes["muc"], b)])
    assert (dc_a["reserved"], muc_b["reserved"]) == (2, 1)
    held = await client.get(f"/v1/reservations/{order['reservation_id']}", headers=auth("oms"))
    assert held.json()["order_ref"] == body["order_id"]

    again = await client.post("/v1/orders", json=body, headers=idem(key))
    assert again.status_code == 201 and again.content == first.content
    assert again.headers["Idempotent-Replayed"] == "true"
    other = await client.post("/v1/orders", json={**body, "ttl_s": 60}, headers=idem(key))
    assert_problem(other, 422, "Idempotency-Key")
    assert [
        p["reserved"] for p in await snapshot(client, [(nodes["dc"], a), (nodes["muc"], b)])
    ] == [2, 1]


async def test_an_order_no_plan_can_serve_is_409_and_stays_409(client, ids: Ids) -> None:
    nodes = await _network(client, ids)
    sku = ids.sku()
    await set_stock(client, nodes["dc"], sku, 1)
    body = _order([(sku, 3)], order_id=ids.key(), destination=BERLIN)
    key = ids.key()
    first = await client.post("/v1/orders", json=body, headers=idem(key))
    problem = assert_problem(first, 409)
    assert problem["shortages"] == [{"node_id": "*", "sku": sku, "requested": 3, "available": 1}]
    await set_stock(client, nodes["dc"], sku, 10)
    again = await client.post("/v1/orders", json=body, headers=idem(key))
    assert again.status_code == 409 and again.content == first.content
    assert again.headers["Idempotent-Replayed"] == "true"
    assert (await snapshot(client, [(nodes["dc"], sku)]))[0]["reserved"] == 0


async def test_an_order_needs_an_idempotency_key(client, ids: Ids) -> None:
    body = _order([(ids.sku(), 1)], order_id=ids.key(), destination=BERLIN)
    response = await client.post("/v1/orders", json=body, headers=auth("oms"))
    assert_problem(response, 400, "Idempotency-Key")


async def test_concurrent_orders_never_oversell(client, ids: Ids) -> None:
    nodes = await _network(client, ids)
    sku = ids.sku()
    await set_stock(client, nodes["dc"], sku, 3)
    await set_stock(client, nodes["muc"], sku, 2)
    requests = [
        {
            "json": _order([(sku, 1)], order_id=f"o{i}-{ids.uid}", destination=BERLIN),
            "headers": idem(f"k{i}-{ids.uid}"),
        }
        for i in range(8)
    ]
    answers = await concurrently(client, "POST", "/v1/orders", requests)
    statuses = sorted(r.status_code for r in answers)
    assert statuses == [201] * 5 + [409] * 3, [r.text for r in answers]
    positions = await snapshot(client, [(nodes["dc"], sku), (nodes["muc"], sku)])
    assert [p["reserved"] for p in positions] == [3, 2]
    assert all(p["available"] == 0 for p in positions)


async def test_batch_shares_stock_between_orders_and_reserves_nothing(client, ids: Ids) -> None:
    nodes = await _network(client, ids)
    sku = ids.sku()
    await set_stock(client, nodes["ber"], sku, 2)
    await set_stock(client, nodes["dc"], sku, 10)
    orders = [
        {"order_id": f"b{i}", "lines": [{"sku": sku, "qty": 1}], "destination": BERLIN}
        for i in range(5)
    ]
    response = await client.post(
        "/v1/routing/batch", json={"orders": orders, "time_limit_ms": 2000}, headers=auth("oms")
    )
    assert response.status_code == 200, response.text
    batch = response.json()
    assert [o["order_id"] for o in batch["orders"]] == [f"b{i}" for i in range(5)]
    used: dict[str, int] = {}
    for o in batch["orders"]:
        for s in o["plan"]["shipments"]:
            for line in s["lines"]:
                used[s["node_id"]] = used.get(s["node_id"], 0) + line["qty"]
    assert used.get(nodes["ber"], 0) <= 2 and sum(used.values()) == 5
    assert batch["baseline"]["shipments"] >= 1 and batch["unfulfilled_units"] == 0
    assert math.isclose(
        batch["total_cost"], sum(o["plan"]["total_cost"] for o in batch["orders"]), rel_tol=1e-9
    )
    positions = await snapshot(client, [(nodes["ber"], sku), (nodes["dc"], sku)])
    assert [p["reserved"] for p in positions] == [0, 0]


async def test_a_pickup_store_made_through_another_worker_is_routable_at_once(
    tmp_path, valkey_server, ids: Ids
) -> None:
    """Two workers share the database; the second has cached the catalog before the store
    exists and does not refresh (its periodic refresh is a second away)."""
    from litestar.testing import AsyncTestClient

    from omnistock.api.app import create_asgi
    from tests.api.conftest import settings_for

    settings = settings_for(tmp_path, valkey_server.url)
    async with (
        AsyncTestClient(app=create_asgi(settings), timeout=10) as first,
        AsyncTestClient(app=create_asgi(settings), timeout=10) as second,
    ):
        store, sku = ids.node("st"), ids.sku()
        await make_node(first, store, kind="store", pickup=True, cost=COST)
        await set_stock(first, store, sku, 3)
        quote = await second.post(
            "/v1/routing/quote",
            json=_order([(sku, 1)], pickup_node_id=store),
            headers=auth("storefront"),
        )
        assert quote.status_code == 200, quote.text
        assert [s["node_id"] for s in quote.json()["shipments"]] == [store]
        order = await second.post(
            "/v1/orders",
            json=_order([(sku, 1)], pickup_node_id=store, order_id=ids.key()),
            headers=idem(ids.key()),
        )
        assert order.status_code == 201, order.text
