"""Orders: route, then reserve the plan, as one step.

Routing reads one availability snapshot and solves in memory; reserving its plan is the only
write. If stock moved in between, the reservation comes back short and the order is routed
again on fresh availability, a bounded number of times. Each attempt has its own operation id
(derived from the order's), so a retried request replays each attempt's outcome instead of
reserving twice; the reservation's lines are sorted so its id depends only on the order's SKUs.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from omnistock.domain.errors import InsufficientStock
from omnistock.domain.reservation import Reservation
from omnistock.domain.stock import Line, Shortage
from omnistock.reservations.interface import StockLedger
from omnistock.routing import (
    Network,
    Plan,
    RouteRequest,
    Shipment,
    ShipmentLine,
    plan_cost,
    route,
    shipment_cost,
)
from omnistock.routing.model import SolverInfo
from omnistock.routing.network import great_circle_km

ATTEMPTS = 3
ANY_NODE = "*"


async def snapshot(
    ledger: StockLedger, network: Network, skus: Sequence[str]
) -> dict[str, dict[str, int]]:
    """sku -> node -> available, for the network's nodes, in one read."""
    found = await ledger.availability_many(list(dict.fromkeys(skus)))
    return {
        sku: {p.node_id: p.available for p in positions if p.node_id in network}
        for sku, positions in found.items()
    }


async def plan(ledger: StockLedger, network: Network, request: RouteRequest) -> Plan:
    available = await snapshot(ledger, network, [line.sku for line in request.lines])
    # CP-SAT holds the GIL only in part, and a hard order can take tens of milliseconds.
    return await asyncio.to_thread(route, network, available, request)


def unfulfilled_shortages(result: Plan, request: RouteRequest) -> list[Shortage]:
    wanted: dict[str, int] = {}
    for line in request.lines:
        wanted[line.sku] = wanted.get(line.sku, 0) + line.qty
    return [
        Shortage(ANY_NODE, u.sku, wanted[u.sku], wanted[u.sku] - u.qty) for u in result.unfulfilled
    ]


async def place_order(
    ledger: StockLedger,
    network: Network,
    request: RouteRequest,
    *,
    order_id: str,
    op_id: str,
    ttl_ms: int,
) -> tuple[Reservation, Plan]:
    refused: InsufficientStock | None = None
    for attempt in range(ATTEMPTS):
        result = await plan(ledger, network, request)
        if result.unfulfilled:
            raise InsufficientStock(unfulfilled_shortages(result, request))
        lines = sorted(
            (Line(s.node_id, line.sku, line.qty) for s in result.shipments for line in s.lines),
            key=lambda line: (line.sku, line.node_id),
        )
        try:
            reservation = await ledger.reserve(
                f"{op_id}:{attempt}", lines, ttl_ms=ttl_ms, order_ref=order_id
            )
        except InsufficientStock as exc:
            refused = exc
            continue
        return reservation, _as_reserved(network, request, result, reservation)
    assert refused is not None
    raise refused


def _as_reserved(
    network: Network, request: RouteRequest, result: Plan, reservation: Reservation
) -> Plan:
    """The plan, or, when a retried request found the reservation of an earlier attempt made
    on other stock, a plan rebuilt from what that reservation holds."""
    planned = sorted((s.node_id, x.sku, x.qty) for s in result.shipments for x in s.lines)
    held = sorted((line.node_id, line.sku, line.qty) for line in reservation.lines)
    if planned == held:
        return result
    by_node: dict[str, list[ShipmentLine]] = {}
    for line in reservation.lines:
        by_node.setdefault(line.node_id, []).append(ShipmentLine(line.sku, line.qty))
    if request.pickup_node_id is not None:
        target = network.node(request.pickup_node_id)
        lat, lon = target.lat, target.lon
    else:
        assert request.destination is not None
        lat, lon = request.destination.lat, request.destination.lon
    shipments = []
    for node_id, lines in sorted(by_node.items()):
        node = network.node(node_id)
        if node_id == request.pickup_node_id:  # the store's own stock: nothing moves
            km = cost = 0.0
        else:
            km = great_circle_km(node.lat, node.lon, lat, lon)
            cost = shipment_cost(node.cost, km, sum(x.qty for x in lines))
        shipments.append(Shipment(node_id, tuple(lines), km, cost))
    return Plan(
        shipments=tuple(shipments),
        total_cost=plan_cost(shipments),
        unfulfilled=(),
        strategy=result.strategy,
        solver=SolverInfo(status="replayed", optimal=False, elapsed_ms=0.0),
    )
