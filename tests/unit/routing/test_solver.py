from __future__ import annotations

import warnings

import numpy as np
import pytest

from omnistock.routing import Cost, cpsat, route
from omnistock.routing import candidates as candidates_module
from omnistock.routing.exact import split_lower_bound
from omnistock.routing.problem import Problem
from tests.unit.routing.conftest import network, node, request


def test_single_node_plan_is_proven_when_no_split_can_beat_it():
    net = network(
        node("a", 48.86, 2.35, cost=Cost(5.0, 0.0, 1.0)),
        node("b", 48.86, 2.36, cost=Cost(5.0, 0.0, 1.0)),
    )
    plan = route(net, {"A": {"a": 3, "b": 3}}, request(("A", 3)))
    assert plan.solver.status == "single_node_proven" and plan.solver.optimal
    assert [s.node_id for s in plan.shipments] == ["a"]  # tie broken by node id


def test_lower_bound_does_not_prove_when_a_split_is_cheaper():
    # "big" holds everything but each unit is dear; two cheap-per-unit nodes split the order.
    net = network(
        node("big", 48.86, 2.35, cost=Cost(1.0, 0.0, 10.0)),
        node("c1", 48.86, 2.35, cost=Cost(1.0, 0.0, 0.0)),
        node("c2", 48.86, 2.35, cost=Cost(1.0, 0.0, 0.0)),
    )
    avail = {"A": {"big": 2, "c1": 1}, "B": {"big": 2, "c2": 1}}
    plan = route(net, avail, request(("A", 1), ("B", 1)))
    assert plan.solver.status == "optimal" and plan.solver.optimal
    assert [s.node_id for s in plan.shipments] == ["c1", "c2"]
    assert plan.total_cost == pytest.approx(2.0)


def test_split_lower_bound_is_infinite_with_one_candidate():
    from omnistock.routing.engine import _problem

    net = network(node("a", 48.86, 2.35))
    problem = _problem(net, {"A": {"a": 1}}, request(("A", 1)), ["A"], [1], None)
    assert split_lower_bound(problem) == np.inf


def test_safe_pruning_removes_nodes_whose_fixed_cost_exceeds_a_known_plan():
    net = network(
        node("cheap", 48.86, 2.35, cost=Cost(1.0, 0.0, 0.0)),
        node("cheap2", 48.86, 2.35, cost=Cost(1.0, 0.0, 0.0)),
        node("dear", 48.86, 2.35, cost=Cost(100.0, 0.0, 0.0)),
    )
    avail = {"A": {"cheap": 1, "dear": 5}, "B": {"cheap2": 1, "dear": 5}}
    plan = route(net, avail, request(("A", 1), ("B", 1)))
    assert plan.solver.pruned == 1 and not plan.solver.pruned_may_lose_optimum
    assert plan.solver.optimal
    assert [s.node_id for s in plan.shipments] == ["cheap", "cheap2"]


def test_capping_candidates_is_reported_and_never_claims_optimality(monkeypatch):
    nodes = [node(f"n{i}", 48.0 + i / 10, 2.0, cost=Cost(1.0 + i, 0.01, 0.1)) for i in range(8)]
    avail = {"A": {f"n{i}": 1 for i in range(8)}, "B": {f"n{i}": 1 for i in range(0, 8, 2)}}
    monkeypatch.setattr(candidates_module, "MAX_CANDIDATES", 3)
    plan = route(network(*nodes), avail, request(("A", 3), ("B", 2)))
    assert plan.solver.pruned_may_lose_optimum
    assert not plan.solver.optimal
    assert plan.unfulfilled == ()


def test_time_limit_and_wall_clock_mode_are_accepted():
    nodes = [node(f"n{i}", 48.0 + i / 10, 2.0, cost=Cost(1.0 + i % 3, 0.01, 0.1)) for i in range(6)]
    avail = {"A": {f"n{i}": 1 for i in range(6)}, "B": {f"n{i}": 2 for i in range(1, 6, 2)}}
    req = request(("A", 3), ("B", 2))
    a = route(network(*nodes), avail, req, time_limit_ms=200)
    b = route(network(*nodes), avail, req, time_limit_ms=200, deterministic=False)
    assert a.solver.optimal and b.solver.optimal
    assert a.total_cost == pytest.approx(b.total_cost)


def test_costs_too_large_for_the_exact_scale_are_solved_at_a_coarser_one():
    """Money goes up to 1e9 per km, so a shipment across the globe costs about 2e13, which at
    the solver's fixed-point scale no longer fits a 64-bit integer: the weights are scaled down
    (the answer no longer claimed optimal) instead of wrapping into an invalid model."""
    problem = Problem(
        skus=("A", "B"),
        qty=np.array([1, 1]),
        node_ids=("far", "c1", "c2"),
        node_index=np.arange(3),
        avail=np.array([[1, 1, 0], [1, 0, 1]]),
        dist=np.zeros(3),
        fixed=np.array([2e13, 1.0, 1.0]),
        unit=np.zeros(3),
        priority=np.zeros(3),
        first=np.zeros(3, dtype=bool),
        max_shipments=None,
    )
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        result = cpsat.solve(problem, "cost", np.array([[1, 0, 0], [1, 0, 0]]), 1000)
    assert result.status == "optimal" and not result.optimal
    assert result.alloc is not None
    assert result.alloc.tolist() == [[0, 1, 0], [0, 0, 1]]
