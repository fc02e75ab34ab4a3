"""The shortest path through the API: a node, stock, a reservation, its commit."""

from __future__ import annotations

from tests.api.conftest import Ids, auth, make_node, position, set_stock


async def test_reserve_and_commit(client, ids: Ids) -> None:
    node, sku = ids.node(), ids.sku()
    await make_node(client, node)
    await set_stock(client, node, sku, 5)
    created = await client.post(
        "/v1/reservations",
        json={"lines": [{"node_id": node, "sku": sku, "qty": 2}]},
        headers=auth("oms", **{"Idempotency-Key": ids.key()}),
    )
    assert created.status_code == 201, created.text
    assert (await position(client, node, sku))["available"] == 3
    rid = created.json()["reservation_id"]
    committed = await client.post(f"/v1/reservations/{rid}/commit", headers=auth("oms"))
    assert committed.status_code == 200 and committed.json()["status"] == "committed"
    after = await position(client, node, sku)
    assert (after["on_hand"], after["reserved"], after["available"]) == (3, 0, 3)
