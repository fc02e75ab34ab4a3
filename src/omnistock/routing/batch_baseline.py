"""The batch's baseline: the orders planned one by one with the single-order engine, each
consuming stock and node capacity before the next; and turning allocations back into plans."""

from __future__ import annotations

from collections.abc import Sequence

import msgspec
import numpy as np

from omnistock.routing.assemble import assemble
from omnistock.routing.batch_order import Order as _Order
from omnistock.routing.cost import plan_cost, shipment_cost
from omnistock.routing.engine import route
from omnistock.routing.model import (
    Plan,
    RouteRequest,
    Shipment,
    ShipmentLine,
    SolverInfo,
    Unfulfilled,
)
from omnistock.routing.network import Network


def _capacities(network: Network) -> list[int | None]:
    return [n.capacity_per_day for n in network.nodes]


def _build_plan(network: Network, order: _Order, alloc: np.ndarray, status: str) -> Plan:
    shipments, unfulfilled = assemble(network, order.skus, order.qty, order.cand, order.dist, alloc)
    return Plan(
        shipments=shipments,
        total_cost=plan_cost(shipments),
        unfulfilled=unfulfilled,
        strategy="cost",
        solver=SolverInfo(status=status, optimal=False, elapsed_ms=0.0, candidates=len(order.cand)),
    )


def _baseline(
    network: Network,
    stock: dict[tuple[int, int], int],
    sku_index: dict[str, int],
    holders_of_sku: dict[int, list[int]],
    requests: Sequence[RouteRequest],
    merged: list[tuple[list[str], list[int]]],
    time_limit_ms: float,
) -> list[Plan]:
    """One `route` call per order in order, each consuming stock and capacity before the next."""
    left = dict(stock)
    cap_left = _capacities(network)
    plans: list[Plan] = []
    for request, (skus, _qtys) in zip(requests, merged, strict=True):
        view: dict[str, dict[str, int]] = {}
        for sku in skus:
            s = sku_index[sku]
            row = {}
            for n in holders_of_sku.get(s, ()):
                units = left.get((n, s), 0)
                cap = cap_left[n]
                if cap is not None:
                    units = min(units, cap)
                if units > 0:
                    row[network.node_ids[n]] = units
            view[sku] = row
        plan = route(
            network,
            view,
            msgspec.structs.replace(request, strategy="cost"),
            time_limit_ms=time_limit_ms,
        )
        plan = _trim_to_capacity(network, plan, cap_left, skus)
        for shipment in plan.shipments:
            n = network.index_of(shipment.node_id)
            units = 0
            for line in shipment.lines:
                left[n, sku_index[line.sku]] -= line.qty
                units += line.qty
            if cap_left[n] is not None:
                cap_left[n] -= units
        plans.append(plan)
    return plans


def _trim_to_capacity(
    network: Network, plan: Plan, cap_left: list[int | None], skus: list[str]
) -> Plan:
    """Cuts shipments down to the nodes' remaining capacity; cut units become unfulfilled."""
    shipments: list[Shipment] = []
    short: dict[str, int] = {u.sku: u.qty for u in plan.unfulfilled}
    changed = False
    for shipment in plan.shipments:
        n = network.index_of(shipment.node_id)
        units = sum(line.qty for line in shipment.lines)
        cap = cap_left[n]
        if cap is None or units <= cap:
            shipments.append(shipment)
            continue
        changed = True
        excess = units - cap
        lines = list(shipment.lines)
        for i in range(len(lines) - 1, -1, -1):
            if excess == 0:
                break
            cut = min(excess, lines[i].qty)
            short[lines[i].sku] = short.get(lines[i].sku, 0) + cut
            lines[i] = ShipmentLine(sku=lines[i].sku, qty=lines[i].qty - cut)
            excess -= cut
        lines = [line for line in lines if line.qty > 0]
        if lines:
            node = network.nodes[n]
            kept = sum(line.qty for line in lines)
            cost = shipment_cost(node.cost, shipment.distance_km, kept)
            shipments.append(msgspec.structs.replace(shipment, lines=tuple(lines), cost=cost))
    if not changed:
        return plan
    unfulfilled = tuple(Unfulfilled(sku=sku, qty=short[sku]) for sku in skus if short.get(sku))
    return msgspec.structs.replace(
        plan, shipments=tuple(shipments), total_cost=plan_cost(shipments), unfulfilled=unfulfilled
    )
