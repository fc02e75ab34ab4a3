"""Who may call what: every route against no key, an unknown key and each role's key.

No key or an unknown key is 401 (problem+json with a ``WWW-Authenticate`` challenge), a known
key whose role is too low is 403, and a key of a high enough role gets the route's success
status. A refused call changes nothing.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pytest

from tests.api.conftest import KEYS, NODE_BODY, Ids, auth, make_node, set_stock
from tests.api.movement_support import hold_ok, sku_line, step_ok, transfer_ok
from tests.api.support import assert_problem, line, reserve_ok, snapshot

RANK = {"storefront": 1, "oms": 2, "admin": 3}
DESTINATION = {"lat": 52.5, "lon": 13.4}
WRONG_KEY = "test-unknown-key-0000000009"
CREDENTIALS = ("no key", "wrong key", "storefront", "oms", "admin")

# What a route needs before it can succeed: nothing, a node, stock at it, a reservation, or
# also a pickup store with holds (placed and ready) and transfers (requested and shipped).
NOTHING, NODE, STOCK, RESERVATION, MOVEMENTS = range(5)


@dataclass(frozen=True)
class Route:
    name: str
    method: str
    template: str
    role: str | None  # None: public
    ok: int
    needs: int = NOTHING
    body: Any = None  # a value, or a callable of the context
    idempotent: bool = False
    writes: bool = False
    extra: dict[str, str] = field(default_factory=dict)

    def path(self, ctx: dict[str, str]) -> str:
        return self.template.format(**ctx)

    def payload(self, ctx: dict[str, str]) -> Any:
        return self.body(ctx) if callable(self.body) else self.body


ROUTES = (
    Route("healthz", "GET", "/healthz", None, 200),
    Route("readyz", "GET", "/readyz", None, 200),
    Route("openapi", "GET", "/schema/openapi.json", None, 200),
    Route("metrics", "GET", "/metrics", "storefront", 200),
    Route("noop-get", "GET", "/v1/diagnostics/noop", "storefront", 200),
    Route("noop-post", "POST", "/v1/diagnostics/noop", "storefront", 200, body={"any": 1}),
    Route("put-node", "PUT", "/v1/nodes/{new_node}", "admin", 201, body=NODE_BODY, writes=True),
    Route("list-nodes", "GET", "/v1/nodes", "admin", 200),
    Route("get-node", "GET", "/v1/nodes/{node}", "admin", 200, needs=NODE),
    Route(
        "put-stock",
        "PUT",
        "/v1/stock/{node}/{sku}",
        "admin",
        200,
        needs=NODE,
        body={"on_hand": 7},
        writes=True,
    ),
    Route("get-stock", "GET", "/v1/stock/{node}/{sku}", "oms", 200, needs=NODE),
    Route(
        "adjust",
        "POST",
        "/v1/stock/adjustments",
        "oms",
        200,
        needs=NODE,
        body=lambda c: {
            "adjustments": [
                {"node_id": c["node"], "sku": c["sku"], "delta": 3, "reason": "receipt"}
            ]
        },
        idempotent=True,
        writes=True,
    ),
    Route("availability", "GET", "/v1/availability/{sku}", "storefront", 200, needs=STOCK),
    Route(
        "availability-query",
        "POST",
        "/v1/availability/query",
        "storefront",
        200,
        needs=STOCK,
        body=lambda c: {"skus": [c["sku"]]},
    ),
    Route(
        "reserve",
        "POST",
        "/v1/reservations",
        "oms",
        201,
        needs=STOCK,
        body=lambda c: {"lines": [line(c["node"], c["sku"], 2)]},
        idempotent=True,
        writes=True,
    ),
    Route("get-reservation", "GET", "/v1/reservations/{rid}", "oms", 200, needs=RESERVATION),
    Route(
        "commit",
        "POST",
        "/v1/reservations/{rid}/commit",
        "oms",
        200,
        needs=RESERVATION,
        writes=True,
    ),
    Route(
        "release",
        "POST",
        "/v1/reservations/{rid}/release",
        "oms",
        200,
        needs=RESERVATION,
        writes=True,
    ),
    Route(
        "place-hold",
        "POST",
        "/v1/holds",
        "oms",
        201,
        needs=MOVEMENTS,
        body=lambda c: {
            "store_id": c["store"],
            "lines": [sku_line(c["sku"], 2)],
            "customer_ref": "c-1",
        },
        idempotent=True,
        writes=True,
    ),
    Route("get-hold", "GET", "/v1/holds/{hid}", "oms", 200, needs=MOVEMENTS),
    Route("ready-hold", "POST", "/v1/holds/{hid}/ready", "oms", 200, needs=MOVEMENTS, writes=True),
    Route(
        "collect-hold",
        "POST",
        "/v1/holds/{ready_hid}/collect",
        "oms",
        200,
        needs=MOVEMENTS,
        writes=True,
    ),
    Route(
        "cancel-hold", "POST", "/v1/holds/{hid}/cancel", "oms", 200, needs=MOVEMENTS, writes=True
    ),
    Route(
        "request-transfer",
        "POST",
        "/v1/transfers",
        "oms",
        201,
        needs=MOVEMENTS,
        body=lambda c: {
            "from_node": c["node"],
            "to_node": c["store"],
            "lines": [sku_line(c["sku"], 1)],
        },
        idempotent=True,
        writes=True,
    ),
    Route("get-transfer", "GET", "/v1/transfers/{tid}", "oms", 200, needs=MOVEMENTS),
    Route(
        "ship-transfer",
        "POST",
        "/v1/transfers/{tid}/ship",
        "oms",
        200,
        needs=MOVEMENTS,
        writes=True,
    ),
    Route(
        "receive-transfer",
        "POST",
        "/v1/transfers/{shipped_tid}/receive",
        "oms",
        200,
        needs=MOVEMENTS,
        writes=True,
    ),
    Route(
        "cancel-transfer",
        "POST",
        "/v1/transfers/{tid}/cancel",
        "oms",
        200,
        needs=MOVEMENTS,
        writes=True,
    ),
    Route(
        "quote",
        "POST",
        "/v1/routing/quote",
        "storefront",
        200,
        needs=STOCK,
        body=lambda c: {"lines": [sku_line(c["sku"], 1)], "destination": DESTINATION},
    ),
    Route(
        "order",
        "POST",
        "/v1/orders",
        "oms",
        201,
        needs=STOCK,
        body=lambda c: {
            "order_id": f"order-{c['sku']}",
            "lines": [sku_line(c["sku"], 1)],
            "destination": DESTINATION,
        },
        idempotent=True,
        writes=True,
    ),
    Route(
        "batch",
        "POST",
        "/v1/routing/batch",
        "oms",
        200,
        needs=STOCK,
        body=lambda c: {"orders": [{"lines": [sku_line(c["sku"], 1)], "destination": DESTINATION}]},
    ),
)


def credential_headers(credential: str) -> dict[str, str]:
    if credential == "no key":
        return {}
    if credential == "wrong key":
        return {"Authorization": f"Bearer {WRONG_KEY}"}
    return auth(credential)


def expected_status(route: Route, credential: str) -> int:
    if route.role is None:
        return route.ok
    if credential not in RANK:
        return 401
    return route.ok if RANK[credential] >= RANK[route.role] else 403


async def prepare(client: Any, ids: Ids, needs: int) -> dict[str, str]:
    ctx = {"node": ids.node(), "sku": ids.sku(), "new_node": ids.node("new"), "rid": ""}
    if needs >= NODE:
        await make_node(client, ctx["node"])
    if needs >= STOCK:
        await set_stock(client, ctx["node"], ctx["sku"], 10)
    if needs >= RESERVATION:
        made = await reserve_ok(client, ids.key(), [line(ctx["node"], ctx["sku"], 4)])
        ctx["rid"] = made["reservation_id"]
    if needs >= MOVEMENTS:
        ctx["store"] = ids.node("store")
        await make_node(client, ctx["store"], kind="store", pickup=True)
        await set_stock(client, ctx["store"], ctx["sku"], 10)
        lines = [sku_line(ctx["sku"], 1)]
        ctx["hid"] = (await hold_ok(client, ids.key(), ctx["store"], lines))["hold_id"]
        ctx["ready_hid"] = (await hold_ok(client, ids.key(), ctx["store"], lines))["hold_id"]
        await step_ok(client, "holds", ctx["ready_hid"], "ready")
        made = await transfer_ok(client, ids.key(), ctx["node"], ctx["store"], lines)
        ctx["tid"] = made["transfer_id"]
        made = await transfer_ok(client, ids.key(), ctx["node"], ctx["store"], lines)
        ctx["shipped_tid"] = made["transfer_id"]
        await step_ok(client, "transfers", ctx["shipped_tid"], "ship")
    return ctx


async def observable_state(client: Any, ctx: dict[str, str], needs: int) -> dict[str, Any]:
    """Everything a write route of the table could change, read with the admin key."""
    state: dict[str, Any] = {}
    state["new node"] = (
        await client.get(f"/v1/nodes/{ctx['new_node']}", headers=auth("admin"))
    ).status_code
    if needs >= NODE:
        state["position"] = await snapshot(client, [(ctx["node"], ctx["sku"])])
    if needs >= RESERVATION:
        got = await client.get(f"/v1/reservations/{ctx['rid']}", headers=auth("admin"))
        state["reservation"] = got.json()
    if needs >= MOVEMENTS:
        state["store position"] = await snapshot(client, [(ctx["store"], ctx["sku"])])
        for name in ("hid", "ready_hid"):
            got = await client.get(f"/v1/holds/{ctx[name]}", headers=auth("admin"))
            state[name] = got.json()
        for name in ("tid", "shipped_tid"):
            got = await client.get(f"/v1/transfers/{ctx[name]}", headers=auth("admin"))
            state[name] = got.json()
    return state


CASES = [
    pytest.param(route, credential, id=f"{route.name}-{credential.replace(' ', '-')}")
    for route in ROUTES
    for credential in CREDENTIALS
]


@pytest.mark.parametrize(("route", "credential"), CASES)
async def test_route_admits_exactly_the_roles_it_documents(
    client, ids: Ids, route: Route, credential: str
) -> None:
    ctx = await prepare(client, ids, route.needs)
    headers = credential_headers(credential)
    if route.idempotent:
        headers["Idempotency-Key"] = ids.key()
    expected = expected_status(route, credential)
    before = await observable_state(client, ctx, route.needs) if route.writes else None

    payload = route.payload(ctx)
    kwargs: dict[str, Any] = {"headers": headers}
    if payload is not None:
        kwargs["json"] = payload
    response = await client.request(route.method, route.path(ctx), **kwargs)

    if expected == 401:
        assert_problem(response, 401)
        assert response.headers.get("www-authenticate", "").lower().startswith("bearer")
    elif expected == 403:
        assert_problem(response, 403)
    else:
        assert response.status_code == expected, response.text
    if route.writes and expected in (401, 403):
        assert await observable_state(client, ctx, route.needs) == before


UNAUTHENTICATED = {
    "basic scheme": {"Authorization": "Basic dGVzdC1hZG1pbi1rZXk6eA=="},
    "basic with a real key": {"Authorization": f"Basic {KEYS['admin']}"},
    "prefix of a real key": {"Authorization": f"Bearer {KEYS['admin'][:-1]}"},
    "real key plus a character": {"Authorization": f"Bearer {KEYS['admin']}0"},
    "bearer without a key": {"Authorization": "Bearer "},
    "key without a scheme": {"Authorization": KEYS["admin"]},
}


@pytest.mark.parametrize("headers", UNAUTHENTICATED.values(), ids=UNAUTHENTICATED.keys())
async def test_anything_but_a_bearer_of_a_whole_known_key_is_unauthenticated(
    client, headers: dict[str, str]
) -> None:
    response = await client.get("/v1/nodes", headers=headers)
    assert_problem(response, 401)
    assert response.headers.get("www-authenticate", "").lower().startswith("bearer")


async def test_refused_reservation_reserves_nothing(client, ids: Ids) -> None:
    node, sku = ids.node(), ids.sku()
    await make_node(client, node)
    await set_stock(client, node, sku, 5)
    before = await snapshot(client, [(node, sku)])
    for headers in ({}, auth("storefront"), {"Authorization": f"Bearer {KEYS['oms'][:-1]}"}):
        response = await client.post(
            "/v1/reservations",
            json={"lines": [line(node, sku, 5)]},
            headers={**headers, "Idempotency-Key": ids.key()},
        )
        assert response.status_code in (401, 403), response.text
    assert await snapshot(client, [(node, sku)]) == before
