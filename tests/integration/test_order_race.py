"""An order whose stock is taken between routing and reserving is routed again, on the single
server and on the cluster; it never reserves stock it was not planned for twice."""

from __future__ import annotations

from typing import Any

from omnistock.domain.stock import Line
from omnistock.routing import Cost, Destination, Network, Node, OrderLine, RouteRequest
from omnistock.services.orders import place_order
from tests.integration.ledger_fixtures import (
    LONG_TTL_MS,
    Harness,
    harness_fixture,  # noqa: F401
)

COST = Cost(per_shipment=5.0, per_km=0.01, per_unit=0.1)


class StockTakenAfterFirstLook:
    """The real ledger, except that right after the first availability read another checkout
    takes what ``steal`` names: the interleaving a busy storefront produces by chance."""

    def __init__(self, ledger: Any, steal: list[Line], op_id: str) -> None:
        self._ledger = ledger
        self._steal = steal
        self._op_id = op_id
        self.looks = 0

    async def availability_many(self, skus: Any) -> Any:
        found = await self._ledger.availability_many(skus)
        self.looks += 1
        if self.looks == 1:
            await self._ledger.reserve(self._op_id, self._steal, ttl_ms=LONG_TTL_MS)
        return found

    def __getattr__(self, name: str) -> Any:
        return getattr(self._ledger, name)


async def test_stock_that_vanishes_after_routing_is_routed_around(harness: Harness) -> None:
    near, far = harness.names.node("near"), harness.names.node("far")
    sku = harness.names.sku()
    network = Network([Node(near, 52.5, 13.4, cost=COST), Node(far, 48.1, 11.6, cost=COST)])
    await harness.stock(near, sku, 1)
    await harness.stock(far, sku, 1)
    ledger = StockTakenAfterFirstLook(
        harness.ledger, [Line(near, sku, 1)], harness.names.op("other-checkout")
    )
    request = RouteRequest(lines=(OrderLine(sku, 1),), destination=Destination(52.5, 13.4))

    reservation, plan = await place_order(
        ledger, network, request, order_id="o-1", op_id=harness.names.op(), ttl_ms=LONG_TTL_MS
    )

    assert ledger.looks == 2
    assert [line.node_id for line in reservation.lines] == [far]
    assert [s.node_id for s in plan.shipments] == [far]
    positions = {p.node_id: p for p in (await harness.snapshot([sku]))[sku]}
    assert positions[near].reserved == 1 and positions[far].reserved == 1
    assert positions[near].available == 0 and positions[far].available == 0


async def test_a_retried_order_replays_its_reservation(harness: Harness) -> None:
    node = harness.names.node()
    sku = harness.names.sku()
    network = Network([Node(node, 52.5, 13.4, cost=COST)])
    await harness.stock(node, sku, 5)
    request = RouteRequest(lines=(OrderLine(sku, 2),), destination=Destination(52.0, 13.0))
    op_id = harness.names.op()
    first, _ = await place_order(
        harness.ledger, network, request, order_id="o", op_id=op_id, ttl_ms=LONG_TTL_MS
    )
    again, _ = await place_order(
        harness.ledger, network, request, order_id="o", op_id=op_id, ttl_ms=LONG_TTL_MS
    )
    assert again.reservation_id == first.reservation_id
    assert (await harness.ledger.position(node, sku)).reserved == 2
