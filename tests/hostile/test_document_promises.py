"""What the OpenAPI document admits, the service accepts: cases schemathesis found where the
service refused a request the document allows."""

from __future__ import annotations

import json

from omnistock.domain.stock import MAX_QTY
from tests.api.conftest import Ids, make_node, set_stock
from tests.api.movement_support import sku_line, step_ok, transfer_ok
from tests.hostile.support import bearer, client, served_document  # noqa: F401


async def test_receive_with_a_json_null_body_receives_everything_shipped(
    client,  # noqa: F811
) -> None:
    """The receipt body is optional (``ReceiveIn | null``): ``null`` means what no body means."""
    ids = Ids()
    source, dest, sku = ids.node(), ids.node(), ids.sku()
    await make_node(client, source)
    await make_node(client, dest)
    await set_stock(client, source, sku, 5)
    made = await transfer_ok(client, ids.key(), source, dest, [sku_line(sku, 3)])
    await step_ok(client, "transfers", made["transfer_id"], "ship")

    response = await client.post(
        f"/v1/transfers/{made['transfer_id']}/receive",
        content=b"null",
        headers={**bearer("oms"), "Content-Type": "application/json"},
    )

    assert response.status_code == 200, response.text
    assert response.json()["status"] == "received"
    got = await client.get(f"/v1/stock/{dest}/{sku}", headers=bearer("oms"))
    assert (got.json()["on_hand"], got.json()["inbound"]) == (3, 0)


async def test_integer_query_bounds_are_the_ones_the_service_enforces(
    client,  # noqa: F811
) -> None:
    """Each integer query parameter's documented bounds are exact: the documented maximum is
    accepted and one more is refused with 422 naming the parameter. (Litestar documents a
    required integer's bounds as floats, and ``float(2**63 - 1)`` is ``2**63``: a client trusting
    that document sent ``after=2**63`` and was refused.)"""
    document = served_document()
    checked = 0
    for path, item in document["paths"].items():
        operation = item.get("get")
        if operation is None:
            continue
        url = path.replace("{node_id}", "n-1").replace("{sku}", "s-1")
        if "{" in url:
            continue
        for parameter in operation.get("parameters", []):
            schema = parameter["schema"]
            if parameter["in"] != "query" or "maximum" not in schema:
                continue
            if "integer" not in json.dumps(schema):
                continue
            name, maximum = parameter["name"], schema["maximum"]
            assert isinstance(maximum, int), (path, name, maximum)
            ok = await client.get(url, params={name: maximum}, headers=bearer("admin"))
            assert ok.status_code == 200, (path, name, ok.text)
            over = await client.get(url, params={name: maximum + 1}, headers=bearer("admin"))
            assert over.status_code == 422, (path, name, over.text)
            assert over.json()["field"] == name
            checked += 1
    assert checked >= 4  # after and limit of /v1/events, limit and before of the history


async def test_a_sku_asked_for_beyond_the_limit_in_total_is_refused_naming_its_own_line(
    client,  # noqa: F811
) -> None:
    """Each line within the schema's bound, but two lines of one SKU add up to more than
    MAX_QTY: 422 (a rule across lines that the schema cannot state), naming a line of that SKU."""
    ids = Ids()
    node, small, big = ids.node(), ids.sku(), ids.sku()
    await make_node(client, node)
    lines = [
        {"node_id": node, "sku": small, "qty": 1},
        {"node_id": node, "sku": small, "qty": 1},
        {"node_id": node, "sku": big, "qty": MAX_QTY // 2 + 1},
        {"node_id": node, "sku": big, "qty": MAX_QTY // 2 + 1},
    ]
    response = await client.post(
        "/v1/reservations",
        json={"lines": lines},
        headers={**bearer("oms"), "Idempotency-Key": ids.key()},
    )
    assert response.status_code == 422, response.text
    assert response.json()["field"] in ("lines[2].qty", "lines[3].qty"), response.text
