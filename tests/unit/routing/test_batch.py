"""Batch planning: shared stock and capacity, the one-by-one baseline, and avoidable splits."""

from __future__ import annotations

import math
import random
import warnings

import msgspec
import pytest

from omnistock.routing import (
    Cost,
    Destination,
    Network,
    OrderLine,
    RouteRequest,
    RoutingError,
    haversine_km,
    route,
    shipment_cost,
)
from omnistock.routing.batch import BatchPlan, plan_batch

from .conftest import CUSTOMER, node, request

COST = Cost(per_shipment=10.0, per_km=0.01, per_unit=1.0)


def near_and_far() -> Network:
    # "near" is at the customer, "far" 100+ km away: every order prefers "near".
    return Network(
        [
            node("near", CUSTOMER.lat, CUSTOMER.lon, cost=COST),
            node("far", CUSTOMER.lat + 1.0, CUSTOMER.lon, cost=COST),
        ]
    )


def shipped(result_plans, network: Network):
    """(node, sku) -> units and node -> units over a list of plans."""
    by_res: dict[tuple[str, str], int] = {}
    by_node: dict[str, int] = {}
    for plan in result_plans:
        for s in plan.shipments:
            for line in s.lines:
                by_res[s.node_id, line.sku] = by_res.get((s.node_id, line.sku), 0) + line.qty
                by_node[s.node_id] = by_node.get(s.node_id, 0) + line.qty
    return by_res, by_node


def assert_feasible(plans, network: Network, stock, requests) -> None:
    by_res, by_node = shipped(plans, network)
    for (node_id, sku), units in by_res.items():
        assert units <= stock.get(sku, {}).get(node_id, 0)
    for node_id, units in by_node.items():
        cap = network.node(node_id).capacity_per_day
        assert cap is None or units <= cap
    for plan, req in zip(plans, requests, strict=True):
        asked: dict[str, int] = {}
        for line in req.lines:
            asked[line.sku] = asked.get(line.sku, 0) + line.qty
        got: dict[str, int] = {}
        for s in plan.shipments:
            for line in s.lines:
                got[line.sku] = got.get(line.sku, 0) + line.qty
        for u in plan.unfulfilled:
            got[u.sku] = got.get(u.sku, 0) + u.qty
        assert got == asked


def assert_costs_recomputed(plans, network: Network, requests) -> None:
    for plan, req in zip(plans, requests, strict=True):
        for s in plan.shipments:
            n = network.node(s.node_id)
            km = float(haversine_km(n.lat, n.lon, req.destination.lat, req.destination.lon))
            assert s.distance_km == pytest.approx(km, rel=1e-12)
            units = sum(line.qty for line in s.lines)
            assert s.cost == shipment_cost(n.cost, s.distance_km, units)
        assert plan.total_cost == math.fsum(s.cost for s in plan.shipments)


def test_greedy_grabs_the_only_single_source_batch_does_not() -> None:
    network = near_and_far()
    stock = {"x": {"near": 1, "far": 1}, "y": {"near": 1}}
    requests = [request(("x", 1)), request(("x", 1), ("y", 1))]
    result = plan_batch(network, stock, requests, time_limit_s=10)

    # One by one: order 0 takes x at "near", so order 1 must split.
    assert [len(p.shipments) for p in result.baseline_plans] == [1, 2]
    assert result.baseline.split_orders == 1
    assert result.baseline.shipments == 3
    # The batch sends order 0 from "far" and order 1 whole from "near".
    assert [len(p.shipments) for p in result.plans] == [1, 1]
    assert result.plans[0].shipments[0].node_id == "far"
    assert result.plans[1].shipments[0].node_id == "near"
    assert result.split_orders == 0 and result.shipments == 2
    assert result.total_cost < result.baseline.total_cost
    assert result.avoidable_splits == 1 and result.avoidable_splits_removed == 1
    assert result.unfulfilled_units == result.baseline.unfulfilled_units == 0
    assert result.solver.status == "improved" and not result.solver.timed_out
    assert_feasible(result.plans, network, stock, requests)
    assert_costs_recomputed(result.plans, network, requests)


def test_split_without_a_single_source_is_not_avoidable() -> None:
    network = near_and_far()
    stock = {"x": {"near": 1}, "y": {"far": 1}}
    result = plan_batch(network, stock, [request(("x", 1), ("y", 1))], time_limit_s=10)
    assert result.baseline.split_orders == result.split_orders == 1
    assert result.avoidable_splits == 0


def test_capacity_is_shared_across_orders() -> None:
    cap = Cost(per_shipment=10.0, per_km=0.01, per_unit=1.0)
    network = Network(
        [
            node("near", CUSTOMER.lat, CUSTOMER.lon, cost=cap, capacity_per_day=2),
            node("far", CUSTOMER.lat + 1.0, CUSTOMER.lon, cost=cap),
        ]
    )
    stock = {"x": {"near": 5, "far": 5}, "y": {"near": 5, "far": 5}}
    requests = [request(("x", 1)), request(("y", 1), ("x", 1)), request(("y", 2))]
    result = plan_batch(network, stock, requests, time_limit_s=10)
    for plans in (result.plans, result.baseline_plans):
        _, by_node = shipped(plans, network)
        assert by_node.get("near", 0) <= 2
        assert_feasible(plans, network, stock, requests)
    assert result.unfulfilled_units == 0


def test_capacity_trims_the_baseline_when_nothing_else_holds_stock() -> None:
    network = Network([node("only", CUSTOMER.lat, CUSTOMER.lon, cost=COST, capacity_per_day=3)])
    stock = {"x": {"only": 10}, "y": {"only": 10}}
    requests = [request(("x", 2)), request(("x", 1), ("y", 1))]
    result = plan_batch(network, stock, requests, time_limit_s=10)
    for plans in (result.plans, result.baseline_plans):
        assert_feasible(plans, network, stock, requests)
        assert shipped(plans, network)[1]["only"] == 3
    assert result.baseline.unfulfilled_units == result.unfulfilled_units == 1
    assert_costs_recomputed(result.baseline_plans, network, requests)


def random_instance(seed: int, n_orders: int = 30):
    rng = random.Random(seed)
    nodes = [
        node(
            f"n{i}",
            CUSTOMER.lat + rng.uniform(-2, 2),
            CUSTOMER.lon + rng.uniform(-3, 3),
            kind="warehouse" if i == 0 else "store",
            cost=Cost(rng.uniform(4, 9), 0.01, rng.uniform(0.5, 1.2)),
            capacity_per_day=None if i == 0 else rng.randint(3, 15),
        )
        for i in range(8)
    ]
    network = Network(nodes)
    skus = [f"s{k}" for k in range(12)]
    stock = {
        sku: {f"n{i}": rng.randint(1, 4) for i in range(8) if rng.random() < 0.5} for sku in skus
    }
    requests = []
    for _ in range(n_orders):
        lines = rng.sample(skus, rng.randint(1, 4))
        dest = Destination(CUSTOMER.lat + rng.uniform(-2, 2), CUSTOMER.lon + rng.uniform(-3, 3))
        requests.append(
            RouteRequest(
                lines=tuple(OrderLine(s, rng.randint(1, 2)) for s in lines), destination=dest
            )
        )
    return network, stock, requests


def units(plans) -> int:
    return sum(line.qty for p in plans for s in p.shipments for line in s.lines)


@pytest.mark.parametrize("seed", [1, 2])
def test_random_instance_feasible_and_never_worse(seed: int) -> None:
    network, stock, requests = random_instance(seed)
    result = plan_batch(network, stock, requests, time_limit_s=10)
    assert len(result.plans) == len(requests)
    assert_feasible(result.plans, network, stock, requests)
    assert_feasible(result.baseline_plans, network, stock, requests)
    assert_costs_recomputed(result.plans, network, requests)
    assert result.total_cost == math.fsum(p.total_cost for p in result.plans)
    assert result.shipments == sum(len(p.shipments) for p in result.plans)
    assert result.split_orders == sum(len(p.shipments) > 1 for p in result.plans)
    # Lexicographic: at least as many units, and no dearer at equal units.
    got, base = units(result.plans), units(result.baseline_plans)
    assert got >= base
    if got == base:
        assert result.total_cost <= result.baseline.total_cost + 1e-9
    assert result.unfulfilled_units + got == sum(x.qty for r in requests for x in r.lines)


def test_costs_too_large_for_the_exact_scale_are_planned_at_a_coarser_one() -> None:
    """Money goes up to 1e9 per km: a neighbourhood of such nodes no longer fits the search's
    64-bit objective at its fixed-point scale. The search scales down and still re-plans
    (before, the model was invalid and the batch stayed at its starting point)."""
    network, stock, requests = random_instance(3)
    dear = Network(
        [msgspec.structs.replace(n, cost=Cost(1e9, 1e9, n.cost.per_unit)) for n in network.nodes]
    )
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        result = plan_batch(dear, stock, requests, time_limit_s=10)
    assert result.solver.improvements >= 1
    assert_feasible(result.plans, dear, stock, requests)
    assert_costs_recomputed(result.plans, dear, requests)
    got, base = units(result.plans), units(result.baseline_plans)
    assert got > base
    assert result.unfulfilled_units + got == sum(x.qty for r in requests for x in r.lines)


def comparable(result: BatchPlan):
    def strip(plans):
        return [(p.shipments, p.unfulfilled, p.total_cost) for p in plans]

    return strip(result.plans), strip(result.baseline_plans), result.avoidable_splits_removed


def test_deterministic() -> None:
    network, stock, requests = random_instance(3)
    a = plan_batch(network, stock, requests, time_limit_s=10)
    b = plan_batch(network, stock, requests, time_limit_s=10)
    assert not a.solver.timed_out
    assert comparable(a) == comparable(b)


def test_baseline_equals_planning_one_by_one() -> None:
    network, stock, requests = random_instance(4)
    # Without capacities the baseline is exactly: route, subtract, next.
    network = Network([msgspec.structs.replace(n, capacity_per_day=None) for n in network.nodes])
    result = plan_batch(network, stock, requests, time_limit_s=10)
    left = {sku: dict(row) for sku, row in stock.items()}
    expected = []
    for req in requests:
        plan = route(network, left, req)
        for s in plan.shipments:
            for line in s.lines:
                left[line.sku][s.node_id] -= line.qty
        expected.append(plan)
    assert [(p.shipments, p.unfulfilled, p.total_cost) for p in result.baseline_plans] == [
        (p.shipments, p.unfulfilled, p.total_cost) for p in expected
    ]
    assert result.baseline.total_cost == math.fsum(p.total_cost for p in expected)
    assert result.baseline.shipments == sum(len(p.shipments) for p in expected)


def test_invalid_requests_name_the_field() -> None:
    network = near_and_far()
    with pytest.raises(RoutingError) as err:
        plan_batch(network, {}, [request(("x", 1)), request(("x", 0))])
    assert err.value.field == "requests[1].lines[0].qty"
    with pytest.raises(RoutingError) as err:
        plan_batch(network, {}, [request(("x", 1), pickup_node_id="near")])
    assert err.value.field == "requests[0].pickup_node_id"


def test_empty_batch() -> None:
    result = plan_batch(near_and_far(), {}, [])
    assert result.plans == [] and result.shipments == 0 and result.solver.status == "empty"
