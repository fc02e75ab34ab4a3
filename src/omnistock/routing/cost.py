"""The shipment cost formula, and plan costs recomputed from shipments.

A plan's cost is always recomputed here from what it ships, in floats, never taken from a solver
objective (which works on integer-scaled costs).
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import numpy as np

from omnistock.routing.model import Shipment
from omnistock.routing.network import Cost


def shipment_cost(cost: Cost, km: float, units: int) -> float:
    """`per_shipment + per_km * km + per_unit * units`."""
    return cost.per_shipment + cost.per_km * km + cost.per_unit * units


def plan_cost(shipments: Iterable[Shipment]) -> float:
    """Total cost of a plan: the exact float sum of its shipment costs."""
    return math.fsum(s.cost for s in shipments)


def allocation_costs(fixed: np.ndarray, unit: np.ndarray, alloc: np.ndarray) -> np.ndarray:
    """Per-candidate shipment cost of an allocation `alloc[line, candidate]` (0 where unused).

    `fixed[c]` is `per_shipment + per_km * km` of candidate c, `unit[c]` its `per_unit`.
    """
    units = alloc.sum(axis=0)
    return np.where(units > 0, fixed + unit * units, 0.0)


def allocation_cost(fixed: np.ndarray, unit: np.ndarray, alloc: np.ndarray) -> float:
    return math.fsum(allocation_costs(fixed, unit, alloc).tolist())
