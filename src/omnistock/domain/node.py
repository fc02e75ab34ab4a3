"""Nodes: the places that hold stock (warehouses, stores, dark stores, drop-ship partners)."""

from __future__ import annotations

import math

import msgspec

from omnistock.domain.errors import InvalidInput
from omnistock.domain.ids import is_valid_id

NODE_KINDS = frozenset({"warehouse", "store", "dark_store", "dropship"})
MAX_NAME = 200


class Cost(msgspec.Struct, frozen=True):
    """Cost parameters of shipping from a node; all non-negative (routing's bounds rely on it)."""

    per_shipment: float = 0.0
    per_km: float = 0.0
    per_unit: float = 0.0


class Node(msgspec.Struct, frozen=True):
    """A place that holds stock. Only `ships` nodes ship to a customer destination; `pickup`
    nodes hand orders to customers who collect them."""

    node_id: str
    lat: float
    lon: float
    kind: str = "warehouse"
    ships: bool = True
    pickup: bool = False
    cost: Cost = msgspec.field(default_factory=Cost)
    priority: int = 100
    capacity_per_day: int | None = None
    pickup_ready_minutes: int = 30
    name: str = ""


def check_node(node: Node) -> None:
    """Raises InvalidInput naming the first field that breaks a rule."""
    if not is_valid_id(node.node_id):
        raise InvalidInput("node_id", "must match ^[A-Za-z0-9._:-]{1,64}$")
    if node.kind not in NODE_KINDS:
        raise InvalidInput("kind", "one of " + ", ".join(sorted(NODE_KINDS)))
    if not (math.isfinite(node.lat) and -90.0 <= node.lat <= 90.0):
        raise InvalidInput("lat", "a latitude from -90 to 90")
    if not (math.isfinite(node.lon) and -180.0 <= node.lon <= 180.0):
        raise InvalidInput("lon", "a longitude from -180 to 180")
    for name in ("per_shipment", "per_km", "per_unit"):
        value = getattr(node.cost, name)
        if not (math.isfinite(value) and 0.0 <= value <= 1e9):
            raise InvalidInput(f"cost.{name}", "a finite number from 0 to 1e9")
    if node.capacity_per_day is not None and not 0 <= node.capacity_per_day <= 10**9:
        raise InvalidInput("capacity_per_day", "an integer from 0 to 1e9")
    if not 0 <= node.priority <= 10**6:
        raise InvalidInput("priority", "an integer from 0 to 1e6")
    if not 0 <= node.pickup_ready_minutes <= 7 * 24 * 60:
        raise InvalidInput("pickup_ready_minutes", "an integer from 0 to 10080")
    if len(node.name) > MAX_NAME:
        raise InvalidInput("name", f"at most {MAX_NAME} characters")
