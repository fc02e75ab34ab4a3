"""Greedy heuristics: the `closest` and `priority` rules, and warm starts for the CP-SAT model.

All loops break ties by candidate index (node-id order), so every result is deterministic.
"""

from __future__ import annotations

import numpy as np

from omnistock.routing.problem import Problem, better


def reallocate(problem: Problem, used: np.ndarray) -> np.ndarray:
    """Best allocation over a fixed node set: per line, fill from the lowest `per_unit` first.

    With the node set fixed, lines are independent and costs linear, so this maximises units and
    then minimises the unit cost; nodes left shipping nothing simply drop out of the plan.
    """
    alloc = np.zeros_like(problem.avail)
    cols = np.flatnonzero(used)
    cols = cols[np.lexsort((cols, problem.unit[cols]))]
    for line in range(problem.n_lines):
        remaining = int(problem.qty[line])
        for c in cols:
            if remaining == 0:
                break
            take = min(remaining, int(problem.avail[line, c]))
            alloc[line, c] = take
            remaining -= take
    return alloc


def _grow(problem: Problem, score) -> np.ndarray:
    """Add nodes one at a time, the best `score(units_taken, candidate)` first (lower is better)."""
    remaining = problem.qty.copy()
    used = np.zeros(problem.n_cands, dtype=bool)
    limit = problem.max_shipments or problem.n_cands
    while remaining.any() and used.sum() < limit:
        take = np.minimum(remaining[:, None], problem.avail).sum(axis=0)
        take[used] = 0
        if not take.any():
            break
        cols = np.flatnonzero(take > 0)
        scores = [score(int(take[c]), c) for c in cols]
        best = cols[min(range(len(cols)), key=lambda i: (scores[i], cols[i]))]
        used[best] = True
        remaining -= np.minimum(remaining, problem.avail[:, best])
    return reallocate(problem, used)


def greedy_ratio(problem: Problem) -> np.ndarray:
    """Cheapest cost per unit covered first (the classic set-cover greedy)."""
    return _grow(problem, lambda units, c: (problem.fixed[c] + problem.unit[c] * units) / units)


def greedy_coverage(problem: Problem) -> np.ndarray:
    """Most remaining units covered first, then cheapest: good at few shipments."""
    return _grow(problem, lambda units, c: (-units, problem.fixed[c] + problem.unit[c] * units))


def ordered(problem: Problem, order: np.ndarray) -> np.ndarray:
    """The `closest` / `priority` rule over candidates ranked by `order`.

    The first node in the order that holds everything ships everything; otherwise walk the order,
    taking what each node has of what is still missing, up to `max_shipments` nodes.
    """
    full = set(problem.full_nodes().tolist())
    for c in order:
        if int(c) in full:
            return problem.single_node_alloc(int(c))
    alloc = np.zeros_like(problem.avail)
    remaining = problem.qty.copy()
    limit = problem.max_shipments or problem.n_cands
    shipments = 0
    for c in order:
        if not remaining.any() or shipments >= limit:
            break
        take = np.minimum(remaining, problem.avail[:, c])
        if take.any():
            alloc[:, c] = take
            remaining -= take
            shipments += 1
    return alloc


def closest_order(problem: Problem) -> np.ndarray:
    """Pickup store first, then by distance, then node id."""
    idx = np.arange(problem.n_cands)
    return np.lexsort((idx, problem.dist, ~problem.first))


def priority_order(problem: Problem) -> np.ndarray:
    """Pickup store first, then priority (lower first), then distance, then node id."""
    idx = np.arange(problem.n_cands)
    return np.lexsort((idx, problem.dist, problem.priority, ~problem.first))


def warm_start(problem: Problem, strategy: str) -> np.ndarray:
    """The best of several heuristic plans for the `cost` / `fewest_shipments` objective."""
    options = [greedy_ratio(problem), greedy_coverage(problem)]
    options += [problem.single_node_alloc(int(c)) for c in problem.full_nodes()]
    best = options[0]
    best_key = problem.key(best, strategy)
    for alloc in options[1:]:
        key = problem.key(alloc, strategy)
        if better(key, best_key):
            best, best_key = alloc, key
    return best
