"""Request and plan types of the routing engine, and the error for invalid requests."""

from __future__ import annotations

from collections.abc import Mapping

import msgspec

from omnistock.domain.errors import InvalidInput

STRATEGIES = ("cost", "fewest_shipments", "closest", "priority")

Availability = Mapping[str, Mapping[str, int]]
"""Availability snapshot: sku -> node_id -> available units. Missing entries mean 0."""


class RoutingError(InvalidInput):
    """An invalid routing request; `field` names the offending field (e.g. `lines[0].qty`)."""


class OrderLine(msgspec.Struct, frozen=True):
    sku: str
    qty: int


class Destination(msgspec.Struct, frozen=True):
    lat: float
    lon: float


class RouteRequest(msgspec.Struct, frozen=True):
    """One order to route: ship to `destination`, or collect at `pickup_node_id` (exactly one)."""

    lines: tuple[OrderLine, ...]  # any sequence is accepted by `route`
    destination: Destination | None = None
    pickup_node_id: str | None = None
    strategy: str = "cost"
    max_shipments: int | None = None


class ShipmentLine(msgspec.Struct, frozen=True):
    sku: str
    qty: int


class Shipment(msgspec.Struct, frozen=True):
    """Goods leaving one node. For pickup orders: the store's own stock (distance 0, cost 0) or a
    transfer from a source node into the store (distance and cost from the source to the store)."""

    node_id: str
    lines: tuple[ShipmentLine, ...]
    distance_km: float
    cost: float


class Unfulfilled(msgspec.Struct, frozen=True):
    sku: str
    qty: int


class SolverInfo(msgspec.Struct, frozen=True):
    """How the plan was found.

    `status` is one of: `single_node_proven` (fast path with a lower-bound proof), `optimal` /
    `feasible` (CP-SAT), `greedy` (the heuristic plan was kept), `heuristic` (the `closest` and
    `priority` strategies, which are rules, not optimisations), `nothing_available`.
    `optimal` is true only when optimality for the strategy's objective is proven.
    `elapsed_ms` is wall-clock and is the only field that varies between identical calls.
    """

    status: str
    optimal: bool
    elapsed_ms: float
    candidates: int = 0
    pruned: int = 0
    pruned_may_lose_optimum: bool = False


class PickupInfo(msgspec.Struct, frozen=True):
    """When a pickup order can be collected.

    Model: `ready_in_minutes = store.pickup_ready_minutes` when everything is at the store; with
    transfers, add `60 + km` minutes for the farthest source (a 60 min handling time plus transit at
    60 km/h), rounded up to a whole minute.
    """

    node_id: str
    local: bool
    ready_in_minutes: int


class Plan(msgspec.Struct, frozen=True):
    shipments: tuple[Shipment, ...]
    total_cost: float
    unfulfilled: tuple[Unfulfilled, ...]
    strategy: str
    solver: SolverInfo
    pickup: PickupInfo | None = None
