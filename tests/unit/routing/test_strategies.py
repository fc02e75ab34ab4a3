from __future__ import annotations

import msgspec
import pytest

from omnistock.routing import Cost, Destination, Plan, RoutingError, route
from tests.unit.routing.conftest import network, node, request

# Around Paris (the customer): a store 2 km away, a dark store 10 km away, a warehouse ~100 km away.
NEAR_STORE = node("store-near", 48.87, 2.36, kind="store", pickup=True, cost=Cost(10.0, 1.0, 2.0))
DARK = node("dark", 48.93, 2.40, kind="dark_store", cost=Cost(6.0, 0.5, 1.0))
FAR_WH = node("wh-far", 49.75, 2.35, kind="warehouse", cost=Cost(2.0, 0.01, 0.1))


def shipped(plan: Plan) -> dict[str, dict[str, int]]:
    return {s.node_id: {ln.sku: ln.qty for ln in s.lines} for s in plan.shipments}


def test_cost_prefers_a_cheaper_far_warehouse():
    net = network(NEAR_STORE, DARK, FAR_WH)
    avail = {"A": {"store-near": 5, "dark": 5, "wh-far": 5}}
    plan = route(net, avail, request(("A", 2)))
    assert shipped(plan) == {"wh-far": {"A": 2}}
    assert plan.solver.optimal and plan.solver.status == "single_node_proven"
    assert plan.total_cost == pytest.approx(plan.shipments[0].cost)


def test_closest_picks_the_nearest_node_that_has_everything():
    net = network(NEAR_STORE, DARK, FAR_WH)
    avail = {"A": {"store-near": 5, "dark": 5, "wh-far": 5}, "B": {"dark": 1, "wh-far": 1}}
    assert shipped(route(net, avail, request(("A", 2), strategy="closest"))) == {
        "store-near": {"A": 2}
    }
    # The near store lacks B: the nearest node holding everything is the dark store.
    plan = route(net, avail, request(("A", 2), ("B", 1), strategy="closest"))
    assert shipped(plan) == {"dark": {"A": 2, "B": 1}}


def test_closest_splits_nearest_first_when_no_node_has_everything():
    net = network(NEAR_STORE, DARK, FAR_WH)
    avail = {"A": {"store-near": 1, "dark": 1, "wh-far": 1}}
    plan = route(net, avail, request(("A", 3), strategy="closest", max_shipments=2))
    assert shipped(plan) == {"store-near": {"A": 1}, "dark": {"A": 1}}
    assert [(u.sku, u.qty) for u in plan.unfulfilled] == [("A", 1)]


def test_cost_splits_when_no_node_has_everything():
    net = network(NEAR_STORE, DARK, FAR_WH)
    avail = {"A": {"wh-far": 3}, "B": {"dark": 2}}
    plan = route(net, avail, request(("A", 3), ("B", 2)))
    assert shipped(plan) == {"dark": {"B": 2}, "wh-far": {"A": 3}}
    assert plan.unfulfilled == ()
    assert plan.solver.optimal
    assert plan.total_cost == pytest.approx(sum(s.cost for s in plan.shipments))


def test_a_line_may_be_split_across_nodes():
    net = network(NEAR_STORE, DARK, FAR_WH)
    avail = {"A": {"wh-far": 2, "dark": 2}}
    plan = route(net, avail, request(("A", 3)))
    assert sum(q["A"] for q in shipped(plan).values()) == 3
    assert shipped(plan)["wh-far"] == {"A": 2}


def test_fewest_shipments_picks_one_node_over_a_cheaper_split():
    net = network(NEAR_STORE, DARK, FAR_WH)
    avail = {"A": {"wh-far": 3, "store-near": 3}, "B": {"dark": 2, "store-near": 2}}
    cheap = route(net, avail, request(("A", 3), ("B", 2)))
    assert len(cheap.shipments) == 2
    few = route(net, avail, request(("A", 3), ("B", 2), strategy="fewest_shipments"))
    assert shipped(few) == {"store-near": {"A": 3, "B": 2}}
    assert few.total_cost > cheap.total_cost
    assert few.solver.optimal


def test_priority_takes_the_lowest_priority_number_first():
    a = node("a", 48.86, 2.35, priority=5)
    b = node("b", 49.5, 2.35, priority=1)
    c = node("c", 48.9, 2.35, priority=1)  # same priority as b, nearer: wins the tie
    net = network(a, b, c)
    avail = {"A": {"a": 5, "b": 5, "c": 5}}
    assert shipped(route(net, avail, request(("A", 2), strategy="priority"))) == {"c": {"A": 2}}
    avail = {"A": {"a": 2, "b": 1, "c": 1}}
    plan = route(net, avail, request(("A", 4), strategy="priority"))
    assert shipped(plan) == {"c": {"A": 1}, "b": {"A": 1}, "a": {"A": 2}}
    assert [s.node_id for s in plan.shipments] == ["a", "b", "c"]  # sorted by node id


def test_max_shipments_is_respected_and_the_rest_reported_unfulfilled():
    net = network(NEAR_STORE, DARK, FAR_WH)
    avail = {"A": {"store-near": 1, "dark": 1, "wh-far": 1}, "B": {"dark": 2}}
    for strategy in ("cost", "fewest_shipments", "closest", "priority"):
        plan = route(net, avail, request(("A", 3), ("B", 2), strategy=strategy, max_shipments=1))
        assert len(plan.shipments) == 1, strategy
        missing = {u.sku: u.qty for u in plan.unfulfilled}
        shipped_units = sum(sum(q.values()) for q in shipped(plan).values())
        assert shipped_units + sum(missing.values()) == 5
    plan = route(net, avail, request(("A", 3), ("B", 2), max_shipments=1))
    assert shipped(plan) == {"dark": {"A": 1, "B": 2}}  # most units first
    assert {u.sku: u.qty for u in plan.unfulfilled} == {"A": 2}


def test_lines_no_node_can_serve_are_unfulfilled():
    net = network(NEAR_STORE, DARK, FAR_WH)
    plan = route(net, {"A": {"dark": 1}}, request(("A", 2), ("Z", 4)))
    assert shipped(plan) == {"dark": {"A": 1}}
    assert {u.sku: u.qty for u in plan.unfulfilled} == {"A": 1, "Z": 4}
    empty = route(net, {}, request(("A", 2)))
    assert empty.shipments == () and empty.total_cost == 0.0
    assert empty.solver.status == "nothing_available"


def test_non_shipping_nodes_do_not_ship_to_a_destination():
    store = node("store", 48.86, 2.35, ships=False, pickup=True)
    net = network(store, FAR_WH)
    plan = route(net, {"A": {"store": 5, "wh-far": 1}}, request(("A", 2)))
    assert shipped(plan) == {"wh-far": {"A": 1}}


def test_pickup_from_the_store_when_it_has_everything():
    net = network(NEAR_STORE, DARK, FAR_WH)
    avail = {"A": {"store-near": 2, "wh-far": 9}}
    plan = route(net, avail, request(("A", 2), pickup_node_id="store-near"))
    assert shipped(plan) == {"store-near": {"A": 2}}
    assert plan.total_cost == 0.0 and plan.shipments[0].distance_km == 0.0
    assert plan.pickup is not None and plan.pickup.local
    assert plan.pickup.ready_in_minutes == 30


def test_pickup_with_transfers_from_the_cheapest_sources():
    store = node("store-x", 48.87, 2.36, kind="store", ships=False, pickup=True,
                 pickup_ready_minutes=20)  # fmt: skip
    net = network(store, DARK, FAR_WH)
    avail = {"A": {"store-x": 1, "dark": 5, "wh-far": 5}, "B": {"wh-far": 1}}
    plan = route(net, avail, request(("A", 3), ("B", 1), pickup_node_id="store-x"))
    assert shipped(plan) == {"store-x": {"A": 1}, "wh-far": {"A": 2, "B": 1}}
    transfer = next(s for s in plan.shipments if s.node_id == "wh-far")
    assert transfer.distance_km == pytest.approx(98.0, abs=2.0)
    assert plan.pickup is not None and not plan.pickup.local
    expected = 20 + 60 + transfer.distance_km  # 60 min handling + km at 60 km/h
    assert plan.pickup.ready_in_minutes == pytest.approx(expected, abs=1.0)
    assert plan.total_cost == pytest.approx(transfer.cost)


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"strategy": "cheapest"}, "strategy"),
        ({"max_shipments": 0}, "max_shipments"),
        ({"destination": None}, "destination"),
        ({"destination": None, "pickup_node_id": "nope"}, "pickup_node_id"),
        ({"destination": None, "pickup_node_id": "dark"}, "pickup_node_id"),
        ({"destination": Destination(91.0, 0.0)}, "destination.lat"),
    ],
)
def test_invalid_requests_name_the_field(kwargs, field):
    net = network(NEAR_STORE, DARK, FAR_WH)
    req = msgspec.structs.replace(request(("A", 1)), **kwargs)
    with pytest.raises(RoutingError) as err:
        route(net, {}, req)
    assert err.value.field == field


def test_non_positive_qty_names_the_line():
    net = network(NEAR_STORE, DARK, FAR_WH)
    with pytest.raises(RoutingError) as err:
        route(net, {}, request(("A", 1), ("B", 0)))
    assert err.value.field == "lines[1].qty"
    with pytest.raises(RoutingError) as err:
        route(net, {}, request())
    assert err.value.field == "lines"


def test_same_input_gives_the_same_plan():
    net = network(NEAR_STORE, DARK, FAR_WH)
    avail = {"A": {"store-near": 2, "dark": 3, "wh-far": 1}, "B": {"dark": 1, "wh-far": 4}}
    for strategy in ("cost", "fewest_shipments", "closest", "priority"):
        req = request(("A", 4), ("B", 3), strategy=strategy, max_shipments=2)
        plans = [route(net, avail, req) for _ in range(2)]
        a, b = (msgspec.structs.replace(p, solver=msgspec.structs.replace(p.solver, elapsed_ms=0))
                for p in plans)  # fmt: skip
        assert a == b
        assert msgspec.json.encode(a) == msgspec.json.encode(b)
