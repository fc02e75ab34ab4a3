"""Exact fast path for orders that a single node can fill, with a lower-bound optimality proof.

Bound (costs are non-negative, checked by `Network`): when some node can fill the whole order, the
lexicographic optimum fulfils every unit. Any plan with k >= 2 shipments then pays
  * the fixed part (`per_shipment + per_km * km`) of k distinct candidates, which is at least the
    sum of the two smallest fixed parts among all candidates, and
  * for every unit of line l, the `per_unit` of the node it comes from, which is at least the
    smallest `per_unit` among candidates that hold any of that SKU.
So LB2 = f(1) + f(2) + sum_l qty_l * min_{c holds l} per_unit[c] bounds every split plan from below,
and the cheapest single-node plan is optimal as soon as its cost <= LB2 (also when there is only one
candidate: then no split exists at all). For `fewest_shipments` a single-node plan is optimal by
definition (one shipment is the fewest), so the cheapest one is proven without any bound.
"""

from __future__ import annotations

import math

import numpy as np

from omnistock.routing.problem import Problem


def split_lower_bound(problem: Problem) -> float:
    """A lower bound on the cost of any plan with >= 2 shipments that fulfils every unit."""
    if problem.n_cands < 2:
        return math.inf
    two_fixed = np.sort(problem.fixed)[:2].sum()
    holds = problem.avail > 0
    min_unit = np.where(holds, problem.unit[None, :], np.inf).min(axis=1)
    return float(two_fixed + (problem.qty * min_unit).sum())


def best_single_node(problem: Problem) -> tuple[int, float] | None:
    """(candidate, cost) of the cheapest node that fills the whole order alone, ties by node id."""
    full = problem.full_nodes()
    if len(full) == 0:
        return None
    costs = problem.fixed[full] + problem.unit[full] * int(problem.qty.sum())
    i = int(np.argmin(costs))  # first minimum: lowest node id among ties
    return int(full[i]), float(costs[i])


def proven_single_node(problem: Problem, strategy: str) -> np.ndarray | None:
    """The single-node allocation when it is provably optimal for `strategy`, else None."""
    best = best_single_node(problem)
    if best is None:
        return None
    c, cost = best
    if strategy == "fewest_shipments" or cost <= split_lower_bound(problem):
        return problem.single_node_alloc(c)
    return None
