"""What the OpenAPI document admits, the service accepts: cases schemathesis found where the
service refused a request the document allows."""

from __future__ import annotations

from tests.api.conftest import Ids, make_node, set_stock
from tests.api.movement_support import sku_line, step_ok, transfer_ok
from tests.hostile.support import bearer, client  # noqa: F401


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
