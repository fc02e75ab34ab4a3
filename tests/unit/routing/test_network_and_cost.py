from __future__ import annotations

import numpy as np
import pytest

from omnistock.routing import Cost, Network, Node, haversine_km, shipment_cost

PARIS = (48.8566, 2.3522)
LONDON = (51.5074, -0.1278)
NEW_YORK = (40.7128, -74.0060)


def test_paris_london_is_about_344_km():
    assert haversine_km(*PARIS, *LONDON) == pytest.approx(343.9, abs=2.0)


def test_paris_new_york_is_about_5837_km():
    assert haversine_km(*PARIS, *NEW_YORK) == pytest.approx(5837, abs=10)


def test_distance_to_itself_is_zero_and_antipode_is_half_circumference():
    assert haversine_km(*PARIS, *PARIS) == pytest.approx(0.0, abs=1e-9)
    assert haversine_km(0.0, 0.0, 0.0, 180.0) == pytest.approx(np.pi * 6371.0088)


def test_network_distances_are_vectorised_in_node_id_order():
    net = Network([Node("b-london", *LONDON), Node("a-paris", *PARIS)])
    assert net.node_ids == ("a-paris", "b-london")
    assert net.index_of("b-london") == 1
    d = net.distances_km(*PARIS)
    assert isinstance(d, np.ndarray) and d.shape == (2,)
    assert d[0] == pytest.approx(0.0, abs=1e-9)
    assert d[1] == pytest.approx(343.9, abs=2.0)


def test_network_refuses_duplicate_ids_and_negative_costs():
    with pytest.raises(ValueError):
        Network([Node("a", 0, 0), Node("a", 1, 1)])
    with pytest.raises(ValueError):
        Network([Node("a", 0, 0, cost=Cost(per_km=-1.0))])
    with pytest.raises(ValueError):
        Network([Node("a", 0, 0, kind="moon_base")])


def test_unknown_node_id_raises_key_error():
    with pytest.raises(KeyError):
        Network([Node("a", 0, 0)]).index_of("zzz")


def test_shipment_cost_formula():
    cost = Cost(per_shipment=4.0, per_km=0.5, per_unit=1.25)
    assert shipment_cost(cost, 10.0, 3) == pytest.approx(4.0 + 5.0 + 3.75)
