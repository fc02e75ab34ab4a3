"""Pure order-routing engine: a network, an availability snapshot and a request give a plan.

Nothing here performs I/O. See `engine.route` for the flow and each module for its part.
"""

from omnistock.routing.batch import BatchPlan, BatchSolverInfo, BatchSummary, plan_batch
from omnistock.routing.cost import plan_cost, shipment_cost
from omnistock.routing.engine import route
from omnistock.routing.model import (
    STRATEGIES,
    Availability,
    Destination,
    OrderLine,
    PickupInfo,
    Plan,
    RouteRequest,
    RoutingError,
    Shipment,
    ShipmentLine,
    SolverInfo,
    Unfulfilled,
)
from omnistock.routing.network import EARTH_RADIUS_KM, Cost, Network, Node, haversine_km

__all__ = [
    "EARTH_RADIUS_KM",
    "STRATEGIES",
    "Availability",
    "BatchPlan",
    "BatchSolverInfo",
    "BatchSummary",
    "Cost",
    "Destination",
    "Network",
    "Node",
    "OrderLine",
    "PickupInfo",
    "Plan",
    "RouteRequest",
    "RoutingError",
    "Shipment",
    "ShipmentLine",
    "SolverInfo",
    "Unfulfilled",
    "haversine_km",
    "plan_batch",
    "plan_cost",
    "route",
    "shipment_cost",
]
