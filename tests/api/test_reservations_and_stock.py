"""Behaviour of nodes, stock, adjustments, reservations, availability and the service routes."""

from __future__ import annotations

import datetime as dt
import math
import re
import time
from typing import Any

import pytest

from tests.api.conftest import NODE_BODY, Ids, auth, make_node, position, set_stock
from tests.api.support import (
    assert_problem,
    concurrently,
    idem,
    line,
    reservation_status,
    reserve,
    reserve_ok,
    snapshot,
)

BERLIN = (52.52, 13.405)
POTSDAM = (52.39, 13.065)  # about 27 km from Berlin
HAMBURG = (53.55, 9.993)  # about 255 km from Berlin
MUNICH = (48.137, 11.575)  # about 504 km from Berlin, 485 km from Potsdam


def great_circle_km(a: tuple[float, float], b: tuple[float, float]) -> float:
    (lat1, lon1), (lat2, lon2) = (tuple(map(math.radians, p)) for p in (a, b))
    h = (
        math.sin((lat2 - lat1) / 2) ** 2
        + math.cos(lat1) * math.cos(lat2) * math.sin((lon2 - lon1) / 2) ** 2
    )
    return 2 * 6371.0 * math.asin(math.sqrt(h))


def epoch_of(timestamp: str) -> float:
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z", timestamp), timestamp
    return dt.datetime.fromisoformat(timestamp.replace("Z", "+00:00")).timestamp()


async def adjust(client: Any, key: str, *adjustments: dict[str, Any]) -> Any:
    return await client.post(
        "/v1/stock/adjustments", json={"adjustments": list(adjustments)}, headers=idem(key)
    )


def adj(node: str, sku: str, delta: int, reason: str, **extra: Any) -> dict[str, Any]:
    return {"node_id": node, "sku": sku, "delta": delta, "reason": reason, **extra}


# -- nodes ---------------------------------------------------------------------------------------


async def test_put_node_creates_with_201_then_replaces_with_200(client, ids: Ids) -> None:
    node = ids.node()
    created = await client.put(f"/v1/nodes/{node}", json=NODE_BODY, headers=auth("admin"))
    assert created.status_code == 201, created.text
    assert created.json()["node_id"] == node and created.json()["kind"] == "warehouse"

    body = {
        **NODE_BODY,
        "name": "Renamed",
        "kind": "store",
        "pickup": True,
        "capacity_per_day": 500,
        "priority": 7,
        "cost": {"per_shipment": 4.5, "per_km": 0.02, "per_unit": 0.1},
        "pickup_ready_minutes": 15,
    }
    replaced = await client.put(f"/v1/nodes/{node}", json=body, headers=auth("admin"))
    assert replaced.status_code == 200, replaced.text
    got = await client.get(f"/v1/nodes/{node}", headers=auth("admin"))
    assert got.status_code == 200
    assert got.json() == {"node_id": node, **body}
    assert replaced.json() == got.json()


async def test_node_list_contains_created_nodes(client, ids: Ids) -> None:
    first, second = ids.node(), ids.node()
    await make_node(client, first)
    await make_node(client, second, kind="dark_store")
    listed = await client.get("/v1/nodes", headers=auth("admin"))
    assert listed.status_code == 200, listed.text
    by_id = {n["node_id"]: n for n in listed.json()["nodes"]}
    assert by_id[first]["kind"] == "warehouse"
    assert by_id[second]["kind"] == "dark_store"


async def test_unknown_node_is_404(client, ids: Ids) -> None:
    response = await client.get(f"/v1/nodes/{ids.node('missing')}", headers=auth("admin"))
    assert_problem(response, 404)


# -- stock ---------------------------------------------------------------------------------------


async def test_put_stock_returns_the_position_and_bumps_the_version(client, ids: Ids) -> None:
    node, sku = ids.node(), ids.sku()
    await make_node(client, node)
    first = await client.put(f"/v1/stock/{node}/{sku}", json={"on_hand": 12}, headers=auth("admin"))
    assert first.status_code == 200, first.text
    assert first.json() == {
        "node_id": node,
        "sku": sku,
        "on_hand": 12,
        "reserved": 0,
        "held": 0,
        "safety_stock": 0,
        "inbound": 0,
        "available": 12,
        "version": first.json()["version"],
    }
    second = await client.put(f"/v1/stock/{node}/{sku}", json={"on_hand": 9}, headers=auth("admin"))
    assert second.status_code == 200, second.text
    assert second.json()["on_hand"] == 9
    assert second.json()["version"] > first.json()["version"]
    assert await position(client, node, sku) == second.json()


async def test_put_stock_with_a_stale_if_version_is_409_and_changes_nothing(
    client, ids: Ids
) -> None:
    node, sku = ids.node(), ids.sku()
    await make_node(client, node)
    await set_stock(client, node, sku, 5)
    version = (await position(client, node, sku))["version"]

    matched = await client.put(
        f"/v1/stock/{node}/{sku}",
        json={"on_hand": 6, "if_version": version},
        headers=auth("admin"),
    )
    assert matched.status_code == 200, matched.text
    assert matched.json()["on_hand"] == 6
    current = matched.json()

    stale = await client.put(
        f"/v1/stock/{node}/{sku}",
        json={"on_hand": 99, "if_version": version},
        headers=auth("admin"),
    )
    assert_problem(stale, 409)
    assert await position(client, node, sku) == current


async def test_safety_stock_reduces_available_and_caps_reservations(client, ids: Ids) -> None:
    node, sku = ids.node(), ids.sku()
    await make_node(client, node)
    put = await client.put(
        f"/v1/stock/{node}/{sku}",
        json={"on_hand": 10, "safety_stock": 3},
        headers=auth("admin"),
    )
    assert put.status_code == 200, put.text
    assert (put.json()["safety_stock"], put.json()["available"]) == (3, 7)

    short = await reserve(client, ids.key(), [line(node, sku, 8)])
    problem = assert_problem(short, 409)
    assert problem["shortages"] == [{"node_id": node, "sku": sku, "requested": 8, "available": 7}]
    await reserve_ok(client, ids.key(), [line(node, sku, 7)])
    pos = await position(client, node, sku)
    assert (pos["reserved"], pos["available"]) == (7, 0)


async def test_adjustments_apply_every_line_with_their_reasons(client, ids: Ids) -> None:
    node, sku, sku2 = ids.node(), ids.sku(), ids.sku()
    await make_node(client, node)
    await set_stock(client, node, sku, 10)
    await set_stock(client, node, sku2, 10)
    response = await adjust(
        client,
        ids.key(),
        adj(node, sku, 5, "receipt", ref="po-1"),
        adj(node, sku, -2, "sale"),
        adj(node, sku2, 1, "return"),
        adj(node, sku2, -3, "damage"),
        adj(node, sku2, -1, "count"),
    )
    assert response.status_code == 200, response.text
    after = {(p["node_id"], p["sku"]): p for p in response.json()["positions"]}
    assert after[(node, sku)]["on_hand"] == 13
    assert after[(node, sku2)]["on_hand"] == 7
    assert (await position(client, node, sku))["on_hand"] == 13
    assert (await position(client, node, sku2))["on_hand"] == 7


async def test_adjustment_below_reserved_refuses_every_line(client, ids: Ids) -> None:
    node, sku, sku2 = ids.node(), ids.sku(), ids.sku()
    await make_node(client, node)
    await set_stock(client, node, sku, 10)
    await set_stock(client, node, sku2, 10)
    await reserve_ok(client, ids.key(), [line(node, sku, 6)])
    before = await snapshot(client, [(node, sku), (node, sku2)])

    response = await adjust(
        client,
        ids.key(),
        adj(node, sku2, 5, "receipt"),
        adj(node, sku, -5, "damage"),  # 10 - 5 < 6 reserved
    )

    problem = assert_problem(response, 409)
    assert [(s["node_id"], s["sku"], s["requested"]) for s in problem["shortages"]] == [
        (node, sku, 5)
    ]
    assert problem["shortages"][0]["available"] == 4
    assert await snapshot(client, [(node, sku), (node, sku2)]) == before

    # Down to exactly what is reserved is allowed.
    exact = await adjust(client, ids.key(), adj(node, sku, -4, "damage"))
    assert exact.status_code == 200, exact.text
    pos = await position(client, node, sku)
    assert (pos["on_hand"], pos["reserved"], pos["available"]) == (6, 6, 0)


# -- reservations --------------------------------------------------------------------------------


async def test_reservation_takes_every_line_and_echoes_order_ref(client, ids: Ids) -> None:
    node_a, node_b, sku = ids.node(), ids.node(), ids.sku()
    await make_node(client, node_a)
    await make_node(client, node_b)
    await set_stock(client, node_a, sku, 10)
    await set_stock(client, node_b, sku, 3)
    before = time.time()
    made = await reserve_ok(
        client,
        ids.key(),
        [line(node_a, sku, 2), line(node_b, sku, 3), line(node_a, sku, 1)],
        ttl_s=120,
        order_ref="order-42",
    )
    after = time.time()

    assert made["status"] == "active"
    assert made["order_ref"] == "order-42"
    assert sorted((x["node_id"], x["qty"]) for x in made["lines"]) == [(node_a, 3), (node_b, 3)]
    assert before + 120 - 1 <= epoch_of(made["expires_at"]) <= after + 120 + 1
    assert before - 1 <= epoch_of(made["created_at"]) <= after + 1
    a, b = await position(client, node_a, sku), await position(client, node_b, sku)
    assert (a["reserved"], a["available"]) == (3, 7)
    assert (b["reserved"], b["available"]) == (3, 0)

    got = await client.get(f"/v1/reservations/{made['reservation_id']}", headers=auth("oms"))
    assert got.status_code == 200, got.text
    assert got.json() == made


async def test_default_ttl_is_900_seconds(client, ids: Ids) -> None:
    node, sku = ids.node(), ids.sku()
    await make_node(client, node)
    await set_stock(client, node, sku, 1)
    made = await reserve_ok(client, ids.key(), [line(node, sku, 1)])
    ttl = epoch_of(made["expires_at"]) - epoch_of(made["created_at"])
    assert ttl == pytest.approx(900, abs=0.01)


async def test_reservation_with_one_short_line_reserves_none(client, ids: Ids) -> None:
    node, sku, sku2 = ids.node(), ids.sku(), ids.sku()
    await make_node(client, node)
    await set_stock(client, node, sku, 10)
    await set_stock(client, node, sku2, 1)
    before = await snapshot(client, [(node, sku), (node, sku2)])

    response = await reserve(client, ids.key(), [line(node, sku, 5), line(node, sku2, 2)])

    problem = assert_problem(response, 409)
    assert problem["shortages"] == [{"node_id": node, "sku": sku2, "requested": 2, "available": 1}]
    assert await snapshot(client, [(node, sku), (node, sku2)]) == before


async def test_merged_lines_are_checked_against_available_as_one(client, ids: Ids) -> None:
    node, sku = ids.node(), ids.sku()
    await make_node(client, node)
    await set_stock(client, node, sku, 5)
    response = await reserve(client, ids.key(), [line(node, sku, 3), line(node, sku, 3)])
    problem = assert_problem(response, 409)
    assert problem["shortages"] == [{"node_id": node, "sku": sku, "requested": 6, "available": 5}]
    assert (await position(client, node, sku))["reserved"] == 0


async def test_concurrent_reservations_never_oversell(client, ids: Ids) -> None:
    node, sku = ids.node(), ids.sku()
    await make_node(client, node)
    await set_stock(client, node, sku, 10)
    requests = [
        {"json": {"lines": [line(node, sku, 1)]}, "headers": idem(ids.key())} for _ in range(25)
    ]

    answers = await concurrently(client, "POST", "/v1/reservations", requests)

    statuses = sorted(a.status_code for a in answers)
    assert statuses == [201] * 10 + [409] * 15, [a.text for a in answers]
    assert len({a.json()["reservation_id"] for a in answers if a.status_code == 201}) == 10
    pos = await position(client, node, sku)
    assert (pos["on_hand"], pos["reserved"], pos["available"]) == (10, 10, 0)


async def test_commit_drops_on_hand_and_reserved(client, ids: Ids) -> None:
    node, sku = ids.node(), ids.sku()
    await make_node(client, node)
    await set_stock(client, node, sku, 10)
    made = await reserve_ok(client, ids.key(), [line(node, sku, 4)])
    rid = made["reservation_id"]

    committed = await client.post(f"/v1/reservations/{rid}/commit", headers=auth("oms"))

    assert committed.status_code == 200, committed.text
    assert committed.json()["status"] == "committed"
    assert committed.json()["reservation_id"] == rid
    pos = await position(client, node, sku)
    assert (pos["on_hand"], pos["reserved"], pos["available"]) == (6, 0, 6)
    assert await reservation_status(client, rid) == "committed"
    again = await client.post(f"/v1/reservations/{rid}/release", headers=auth("oms"))
    assert_problem(again, 409)
    assert await position(client, node, sku) == pos


async def test_release_restores_available(client, ids: Ids) -> None:
    node, sku = ids.node(), ids.sku()
    await make_node(client, node)
    await set_stock(client, node, sku, 10)
    made = await reserve_ok(client, ids.key(), [line(node, sku, 4)])
    assert (await position(client, node, sku))["available"] == 6

    released = await client.post(
        f"/v1/reservations/{made['reservation_id']}/release", headers=auth("oms")
    )

    assert released.status_code == 200, released.text
    assert released.json()["status"] == "released"
    pos = await position(client, node, sku)
    assert (pos["on_hand"], pos["reserved"], pos["available"]) == (10, 0, 10)
    assert await reservation_status(client, made["reservation_id"]) == "released"


# -- availability --------------------------------------------------------------------------------


async def three_nodes(client: Any, ids: Ids, sku: str) -> dict[str, str]:
    nodes = {"berlin": ids.node("ber"), "hamburg": ids.node("ham"), "munich": ids.node("muc")}
    places = {"berlin": BERLIN, "hamburg": HAMBURG, "munich": MUNICH}
    stock = {"berlin": 2, "hamburg": 5, "munich": 7}
    for city, node in nodes.items():
        lat, lon = places[city]
        await make_node(client, node, lat=lat, lon=lon)
        await set_stock(client, node, sku, stock[city])
    return nodes


async def test_availability_sums_nodes_and_reflects_reservations(client, ids: Ids) -> None:
    sku = ids.sku()
    nodes = await three_nodes(client, ids, sku)
    await reserve_ok(client, ids.key(), [line(nodes["munich"], sku, 3)])

    response = await client.get(f"/v1/availability/{sku}", headers=auth("storefront"))

    assert response.status_code == 200, response.text
    body = response.json()
    assert body["sku"] == sku and body["available"] == 2 + 5 + 4
    per_node = {n["node_id"]: n["available"] for n in body["nodes"]}
    assert per_node == {nodes["berlin"]: 2, nodes["hamburg"]: 5, nodes["munich"]: 4}
    assert all("distance_km" not in n for n in body["nodes"])


async def test_hot_routes_answer_plain_json_with_exact_length(client, ids: Ids) -> None:
    """Availability, reserve and release encode their own answers (see api.encoded): the same
    headers as every other JSON answer, a replay marked as one."""
    sku = ids.sku()
    nodes = await three_nodes(client, ids, sku)
    key = ids.key()
    body = {"lines": [line(nodes["berlin"], sku, 1)]}
    answers = [
        await client.get(f"/v1/availability/{sku}", headers=auth("storefront")),
        created := await client.post("/v1/reservations", json=body, headers=idem(key)),
        replayed := await client.post("/v1/reservations", json=body, headers=idem(key)),
        await client.post(
            f"/v1/reservations/{created.json()['reservation_id']}/release",
            headers=idem(ids.key()),
        ),
    ]
    assert [a.status_code for a in answers] == [200, 201, 201, 200]
    for answer in answers:
        assert answer.headers["content-type"] == "application/json"
        assert int(answer.headers["content-length"]) == len(answer.content)
    assert "idempotent-replayed" not in created.headers
    assert replayed.headers["idempotent-replayed"] == "true"
    assert replayed.json() == created.json()
    assert answers[3].json()["status"] == "released"


async def test_availability_near_a_point_sorts_by_distance(client, ids: Ids) -> None:
    sku = ids.sku()
    nodes = await three_nodes(client, ids, sku)
    lat, lon = POTSDAM
    response = await client.get(
        f"/v1/availability/{sku}?near={lat},{lon}", headers=auth("storefront")
    )
    assert response.status_code == 200, response.text
    rows = response.json()["nodes"]
    assert [r["node_id"] for r in rows] == [nodes["berlin"], nodes["hamburg"], nodes["munich"]]
    distances = [r["distance_km"] for r in rows]
    assert distances == pytest.approx(
        [great_circle_km(POTSDAM, place) for place in (BERLIN, HAMBURG, MUNICH)], abs=0.01
    )
    assert distances[0] == pytest.approx(26.9, abs=1.5)


async def test_availability_radius_keeps_only_nodes_within_it(client, ids: Ids) -> None:
    sku = ids.sku()
    nodes = await three_nodes(client, ids, sku)
    lat, lon = BERLIN
    response = await client.get(
        f"/v1/availability/{sku}?near={lat},{lon}&radius_km=300", headers=auth("storefront")
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert [r["node_id"] for r in body["nodes"]] == [nodes["berlin"], nodes["hamburg"]]
    assert body["available"] == 2 + 5
    assert all(r["distance_km"] <= 300 for r in body["nodes"])


async def test_availability_node_id_filter_is_repeatable(client, ids: Ids) -> None:
    sku = ids.sku()
    nodes = await three_nodes(client, ids, sku)
    response = await client.get(
        f"/v1/availability/{sku}",
        params=[("node_id", nodes["berlin"]), ("node_id", nodes["munich"])],
        headers=auth("storefront"),
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert sorted(r["node_id"] for r in body["nodes"]) == sorted([nodes["berlin"], nodes["munich"]])
    assert body["available"] == 2 + 7


async def test_availability_query_answers_several_skus(client, ids: Ids) -> None:
    sku, sku2, unstocked = ids.sku(), ids.sku(), ids.sku()
    nodes = await three_nodes(client, ids, sku)
    await set_stock(client, nodes["hamburg"], sku2, 4)
    lat, lon = BERLIN
    response = await client.post(
        "/v1/availability/query",
        json={"skus": [sku, sku2, unstocked], "near": {"lat": lat, "lon": lon}, "radius_km": 300},
        headers=auth("storefront"),
    )
    assert response.status_code == 200, response.text
    items = {item["sku"]: item for item in response.json()["items"]}
    assert set(items) == {sku, sku2, unstocked}
    assert items[sku]["available"] == 7
    assert [r["node_id"] for r in items[sku]["nodes"]] == [nodes["berlin"], nodes["hamburg"]]
    assert items[sku2]["available"] == 4
    assert items[unstocked]["available"] == 0

    by_ids = await client.post(
        "/v1/availability/query",
        json={"skus": [sku], "node_ids": [nodes["munich"]]},
        headers=auth("storefront"),
    )
    assert by_ids.status_code == 200, by_ids.text
    assert by_ids.json()["items"][0]["available"] == 7
    assert [r["node_id"] for r in by_ids.json()["items"][0]["nodes"]] == [nodes["munich"]]


# -- service -------------------------------------------------------------------------------------


async def test_readyz_reports_each_dependency(client) -> None:
    response = await client.get("/readyz")
    assert response.status_code == 200, response.text
    body = response.json()
    assert (body["status"], body["checks"]) == ("ready", {"redis": "ok", "database": "ok"})
    assert isinstance(body["details"]["projector_lag_events"], int)


def metric(text: str, name: str, **labels: str) -> list[float]:
    """The values of the samples of ``name`` whose labels include ``labels``."""
    values = []
    for sample in text.splitlines():
        if not sample.startswith(name + "{"):
            continue
        label_text, _, value = sample[len(name) + 1 :].rpartition("} ")
        found = dict(re.findall(r'(\w+)="([^"]*)"', label_text))
        if all(found.get(k) == v for k, v in labels.items()):
            values.append(float(value))
    return values


async def test_metrics_count_requests_latency_and_ledger_outcomes(client, ids: Ids) -> None:
    node, sku = ids.node(), ids.sku()
    await make_node(client, node)
    await set_stock(client, node, sku, 3)
    await reserve_ok(client, ids.key(), [line(node, sku, 1)])
    await reserve_ok(client, ids.key(), [line(node, sku, 1)])

    response = await client.get("/metrics", headers=auth("storefront"))

    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain")
    text = response.text
    assert metric(
        text, "omnistock_http_requests_total", route="/v1/reservations", method="POST", status="201"
    ) == [2]
    buckets = metric(
        text,
        "omnistock_http_request_duration_seconds_bucket",
        route="/v1/reservations",
        method="POST",
    )
    assert buckets and buckets == sorted(buckets) and buckets[-1] == 2
    assert metric(
        text,
        "omnistock_http_request_duration_seconds_bucket",
        route="/v1/reservations",
        method="POST",
        le="+Inf",
    ) == [2]
    assert metric(
        text, "omnistock_http_requests_total", route="/v1/stock/{node_id}/{sku}", method="PUT"
    ) == [1]
    assert metric(text, "omnistock_ledger_outcomes_total", outcome="reserved") == [2]
