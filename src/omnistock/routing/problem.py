"""The numeric form of one routing request, shared by every solver.

Lines with the same SKU are merged. Columns are candidate nodes (nodes that may ship and hold at
least one requested unit), in node-id order, so index order is the deterministic tie-break.
`fixed[c]` is the part of a shipment's cost that does not depend on units
(`per_shipment + per_km * km`) and `unit[c]` the per-unit part; for a pickup order the pickup store
itself has both at zero.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from omnistock.routing.cost import allocation_cost


@dataclass(frozen=True, eq=False)
class Problem:
    skus: tuple[str, ...]
    qty: np.ndarray  # (L,) int64, > 0
    node_ids: tuple[str, ...]  # (C,)
    node_index: np.ndarray  # (C,) index into the Network
    avail: np.ndarray  # (L, C) int64, clipped to [0, qty]
    dist: np.ndarray  # (C,) km to the destination
    fixed: np.ndarray  # (C,)
    unit: np.ndarray  # (C,)
    priority: np.ndarray  # (C,)
    first: np.ndarray  # (C,) bool: ranked first by the ordered strategies (the pickup store)
    max_shipments: int | None

    @property
    def n_lines(self) -> int:
        return len(self.skus)

    @property
    def n_cands(self) -> int:
        return len(self.node_ids)

    def max_units_upper_bound(self) -> int:
        """Units fulfillable ignoring `max_shipments`: sum over lines of min(qty, all available)."""
        return int(np.minimum(self.qty, self.avail.sum(axis=1)).sum())

    def restrict(self, keep: np.ndarray) -> Problem:
        """The same problem over the candidate columns where `keep` is true."""
        return Problem(
            skus=self.skus,
            qty=self.qty,
            node_ids=tuple(n for n, k in zip(self.node_ids, keep, strict=True) if k),
            node_index=self.node_index[keep],
            avail=self.avail[:, keep],
            dist=self.dist[keep],
            fixed=self.fixed[keep],
            unit=self.unit[keep],
            priority=self.priority[keep],
            first=self.first[keep],
            max_shipments=self.max_shipments,
        )

    def cost(self, alloc: np.ndarray) -> float:
        return allocation_cost(self.fixed, self.unit, alloc)

    def key(self, alloc: np.ndarray, strategy: str) -> tuple[float, ...]:
        """Lexicographic objective, smaller is better: most units, then (fewest shipments,) cost."""
        units = int(alloc.sum())
        cost = self.cost(alloc)
        if strategy == "fewest_shipments":
            return (-units, int((alloc.sum(axis=0) > 0).sum()), cost)
        return (-units, cost)

    def full_nodes(self) -> np.ndarray:
        """Candidate indices of nodes that alone hold every line in full."""
        return np.flatnonzero((self.avail >= self.qty[:, None]).all(axis=0))

    def single_node_alloc(self, c: int) -> np.ndarray:
        alloc = np.zeros_like(self.avail)
        alloc[:, c] = np.minimum(self.qty, self.avail[:, c])
        return alloc


def better(a: tuple[float, ...], b: tuple[float, ...], rel: float = 1e-12) -> bool:
    """Whether key `a` is strictly better than `b`, with float noise on the cost ignored."""
    for x, y in zip(a[:-1], b[:-1], strict=True):
        if x != y:
            return x < y
    tol = rel * max(1.0, abs(a[-1]), abs(b[-1]))
    return a[-1] < b[-1] - tol and not math.isclose(a[-1], b[-1], rel_tol=rel, abs_tol=0.0)
