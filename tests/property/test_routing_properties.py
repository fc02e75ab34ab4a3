"""Properties of the routing engine on random small networks, with a brute-force optimum.

The brute force enumerates every set S of candidate nodes (at most 2^6): with S fixed, lines are
independent and costs linear, so the best allocation over S fills each line from the lowest
`per_unit` first. The optimum over all S (lexicographically: most units, then cost) is the optimum
over all allocations, because an allocation that leaves a node of S idle is also an allocation
over a smaller S with no higher cost.
"""

from __future__ import annotations

import itertools
import math

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from omnistock.routing import (
    STRATEGIES,
    Cost,
    Destination,
    Network,
    Node,
    OrderLine,
    RouteRequest,
    haversine_km,
    route,
    shipment_cost,
)

SKUS = ("A", "B", "C")


@st.composite
def cases(draw):
    n = draw(st.integers(2, 6))
    nodes = []
    for i in range(n):
        nodes.append(
            Node(
                node_id=f"n{i}",
                lat=draw(st.integers(4000, 5500)) / 100,
                lon=draw(st.integers(-500, 1500)) / 100,
                ships=draw(st.sampled_from([True, True, False])),
                pickup=draw(st.booleans()),
                priority=draw(st.integers(1, 3)),
                cost=Cost(
                    per_shipment=draw(st.sampled_from([0.0, 1.0, 2.5, 5.0, 10.0])),
                    per_km=draw(st.sampled_from([0.0, 0.01, 0.1])),
                    per_unit=draw(st.sampled_from([0.0, 0.5, 1.0, 2.0])),
                ),
            )
        )
    lines = draw(
        st.lists(st.tuples(st.sampled_from(SKUS), st.integers(1, 4)), min_size=1, max_size=3)
    )
    availability = {
        sku: {f"n{i}": draw(st.sampled_from([2, 0, 1, 3, 4])) for i in range(n)}
        for sku in SKUS
        if draw(st.sampled_from([True, True, False]))
    }
    pickups = [nd.node_id for nd in nodes if nd.pickup]
    pickup = draw(st.sampled_from([None, *pickups])) if pickups else None
    destination = None
    if pickup is None:
        destination = Destination(
            draw(st.integers(4000, 5500)) / 100, draw(st.integers(-500, 1500)) / 100
        )
    request = RouteRequest(
        lines=[OrderLine(sku, qty) for sku, qty in lines],
        destination=destination,
        pickup_node_id=pickup,
        strategy=draw(st.sampled_from(STRATEGIES)),
        max_shipments=draw(st.none() | st.integers(1, 3)),
    )
    return nodes, availability, request


def merged(request: RouteRequest) -> dict[str, int]:
    out: dict[str, int] = {}
    for line in request.lines:
        out[line.sku] = out.get(line.sku, 0) + line.qty
    return out


def destination_of(nodes, request):
    if request.pickup_node_id is None:
        return request.destination.lat, request.destination.lon
    store = next(nd for nd in nodes if nd.node_id == request.pickup_node_id)
    return store.lat, store.lon


def brute_force(nodes, availability, request, fewest: bool):
    """Best key over all node sets: (-units, cost) or (-units, shipments, cost)."""
    lat, lon = destination_of(nodes, request)
    demand = merged(request)
    cands = []
    for nd in nodes:
        local = nd.node_id == request.pickup_node_id
        if not (nd.ships or local):
            continue
        km = float(haversine_km(nd.lat, nd.lon, lat, lon))
        fixed = 0.0 if local else nd.cost.per_shipment + nd.cost.per_km * km
        unit = 0.0 if local else nd.cost.per_unit
        cands.append((nd.node_id, fixed, unit))
    limit = request.max_shipments or len(cands)
    best = None
    for k in range(min(limit, len(cands)) + 1):
        for subset in itertools.combinations(cands, k):
            units, cost = 0, sum(f for _, f, _ in subset)
            for sku, qty in demand.items():
                left = qty
                for node_id, _, unit in sorted(subset, key=lambda c: c[2]):
                    take = min(left, max(0, availability.get(sku, {}).get(node_id, 0)))
                    units += take
                    cost += take * unit
                    left -= take
            key = (-units, k, cost) if fewest else (-units, cost)
            if best is None or key < best:
                best = key
    return best


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(cases())
def test_plans_respect_stock_limits_flags_and_costs(case):
    nodes, availability, request = case
    net = Network(nodes)
    plan = route(net, availability, request)
    demand = merged(request)
    lat, lon = destination_of(nodes, request)

    shipped: dict[str, int] = {}
    for s in plan.shipments:
        node = net.node(s.node_id)
        local = s.node_id == request.pickup_node_id
        assert node.ships or local
        for line in s.lines:
            assert 0 < line.qty <= availability.get(line.sku, {}).get(s.node_id, 0)
            shipped[line.sku] = shipped.get(line.sku, 0) + line.qty
        km = 0.0 if local else float(haversine_km(node.lat, node.lon, lat, lon))
        assert s.distance_km == pytest.approx(km)
        units = sum(line.qty for line in s.lines)
        expected = 0.0 if local else shipment_cost(node.cost, km, units)
        assert s.cost == pytest.approx(expected, rel=1e-12, abs=1e-12)
    assert [s.node_id for s in plan.shipments] == sorted(s.node_id for s in plan.shipments)
    assert len({s.node_id for s in plan.shipments}) == len(plan.shipments)
    assert math.isclose(plan.total_cost, math.fsum(s.cost for s in plan.shipments))

    missing = {u.sku: u.qty for u in plan.unfulfilled}
    assert all(q > 0 for q in missing.values())
    for sku, qty in demand.items():
        assert shipped.get(sku, 0) + missing.get(sku, 0) == qty
    assert set(shipped) | set(missing) <= set(demand)
    if request.max_shipments is not None:
        assert len(plan.shipments) <= request.max_shipments
    if request.pickup_node_id is not None:
        assert plan.pickup is not None
        assert plan.pickup.local == all(s.node_id == request.pickup_node_id for s in plan.shipments)

    if request.strategy in ("cost", "fewest_shipments"):
        fewest = request.strategy == "fewest_shipments"
        best = brute_force(nodes, availability, request, fewest)
        units = sum(shipped.values())
        assert -units >= best[0]  # never more than possible
        if plan.solver.optimal:
            assert -units == best[0]
            if fewest:
                assert len(plan.shipments) == best[1]
            assert plan.total_cost == pytest.approx(best[-1], rel=1e-6, abs=1e-4)
