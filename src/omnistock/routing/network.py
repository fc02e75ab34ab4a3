"""The fulfilment network: nodes, their costs and flags, and vectorised great-circle distances.

`Network` keeps the nodes sorted by id and mirrors their numeric fields in NumPy arrays, so the
engine computes every distance and every fixed shipment cost for a destination in one pass, and
so every tie the engine breaks "by node id" is simply a tie broken by array index.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import numpy as np

from omnistock.domain.node import NODE_KINDS, Cost, Node, check_node

EARTH_RADIUS_KM = 6371.0088
"""Mean Earth radius (IUGG); haversine distances are within about 0.5 % of geodesic ones."""

__all__ = [
    "EARTH_RADIUS_KM",
    "NODE_KINDS",
    "Cost",
    "Network",
    "Node",
    "great_circle_km",
    "haversine_km",
]


def great_circle_km(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    """Great-circle distance in km between two points: the scalar form of `haversine_km`, for
    one pair without NumPy's per-call cost."""
    p1, p2 = math.radians(lat1), math.radians(lat2)
    a = (
        math.sin((p2 - p1) / 2.0) ** 2
        + math.cos(p1) * math.cos(p2) * math.sin(math.radians(lon2 - lon1) / 2.0) ** 2
    )
    return 2.0 * EARTH_RADIUS_KM * math.asin(math.sqrt(min(1.0, max(0.0, a))))


def haversine_km(
    lat1: np.ndarray | float, lon1: np.ndarray | float, lat2: float, lon2: float
) -> np.ndarray:
    """Great-circle distance in km from each (lat1, lon1) to (lat2, lon2), element-wise."""
    p1 = np.radians(np.asarray(lat1, dtype=np.float64))
    l1 = np.radians(np.asarray(lon1, dtype=np.float64))
    p2 = math.radians(lat2)
    l2 = math.radians(lon2)
    a = np.sin((p2 - p1) / 2.0) ** 2 + np.cos(p1) * math.cos(p2) * np.sin((l2 - l1) / 2.0) ** 2
    return 2.0 * EARTH_RADIUS_KM * np.arcsin(np.sqrt(np.clip(a, 0.0, 1.0)))


class Network:
    """An immutable set of nodes, sorted by node id, with their fields as NumPy arrays."""

    def __init__(self, nodes: Iterable[Node]) -> None:
        ordered = sorted(nodes, key=lambda n: n.node_id)
        seen: set[str] = set()
        for node in ordered:
            if node.node_id in seen:
                raise ValueError(f"duplicate node id {node.node_id!r}")
            seen.add(node.node_id)
            check_node(node)
        self.nodes: tuple[Node, ...] = tuple(ordered)
        self.node_ids: tuple[str, ...] = tuple(n.node_id for n in ordered)
        self._index = {node_id: i for i, node_id in enumerate(self.node_ids)}
        self.lat = np.array([n.lat for n in ordered], dtype=np.float64)
        self.lon = np.array([n.lon for n in ordered], dtype=np.float64)
        self.per_shipment = np.array([n.cost.per_shipment for n in ordered], dtype=np.float64)
        self.per_km = np.array([n.cost.per_km for n in ordered], dtype=np.float64)
        self.per_unit = np.array([n.cost.per_unit for n in ordered], dtype=np.float64)
        self.ships = np.array([n.ships for n in ordered], dtype=bool)
        self.pickup = np.array([n.pickup for n in ordered], dtype=bool)
        self.priority = np.array([n.priority for n in ordered], dtype=np.int64)

    def __len__(self) -> int:
        return len(self.nodes)

    def __contains__(self, node_id: object) -> bool:
        return node_id in self._index

    def index_of(self, node_id: str) -> int:
        """Array index of `node_id`; KeyError when the network has no such node."""
        return self._index[node_id]

    def node(self, node_id: str) -> Node:
        return self.nodes[self._index[node_id]]

    def distances_km(self, lat: float, lon: float) -> np.ndarray:
        """Great-circle distance in km from every node (in node-id order) to (lat, lon)."""
        return haversine_km(self.lat, self.lon, lat, lon)
