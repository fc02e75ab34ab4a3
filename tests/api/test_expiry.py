"""An expired reservation stops counting at the moment it expires, with no sweeper run (the
fixture's sweeper runs every ten minutes)."""

from __future__ import annotations

import asyncio
import datetime as dt
import time

from tests.api.conftest import Ids, auth, make_node, position, set_stock
from tests.api.support import assert_problem, line, reservation_status, reserve_ok


def epoch_of(timestamp: str) -> float:
    return dt.datetime.fromisoformat(timestamp.replace("Z", "+00:00")).timestamp()


async def available(client, sku: str) -> int:
    response = await client.get(f"/v1/availability/{sku}", headers=auth("storefront"))
    assert response.status_code == 200, response.text
    return response.json()["available"]


async def test_reservation_stops_counting_the_moment_it_expires(client, ids: Ids) -> None:
    node, sku = ids.node(), ids.sku()
    await make_node(client, node)
    await set_stock(client, node, sku, 10)
    before = time.time()
    made = await reserve_ok(client, ids.key(), [line(node, sku, 4)], ttl_s=1)
    expires = epoch_of(made["expires_at"])
    assert before + 0.5 <= expires <= time.time() + 1.5, made
    assert await available(client, sku) == 6
    assert (await position(client, node, sku))["reserved"] == 4

    # Waiting for the deadline to pass is what is under test; the margin covers the ms rounding
    # of expires_at.
    await asyncio.sleep(max(0.0, expires - time.time()) + 0.05)

    assert await available(client, sku) == 10
    pos = await position(client, node, sku)
    assert (pos["on_hand"], pos["reserved"], pos["available"]) == (10, 0, 10)
    assert await reservation_status(client, made["reservation_id"]) == "expired"
    committed = await client.post(
        f"/v1/reservations/{made['reservation_id']}/commit", headers=auth("oms")
    )
    assert_problem(committed, 409)
    assert (await position(client, node, sku))["on_hand"] == 10
