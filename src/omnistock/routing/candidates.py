"""Candidate pruning before the CP-SAT model.

Safe rule (only for the `cost` strategy, and only when the incumbent plan fulfils the most units
possible, so the optimum fulfils exactly U units and costs at most G = incumbent cost): a plan that
uses node c ships at least one unit from it, and each of its other U - 1 units costs at least the
smallest `per_unit` among candidates, so it costs at least
  fixed[c] + per_unit[c] + (U - 1) * min per_unit.
When that exceeds G, node c is in no optimal plan and is removed. This never loses the optimum.

Unsafe rule: beyond `max_candidates` nodes, only the nodes of the incumbent plus the best-ranked
others (cost per unit they could cover) are kept. Then `may_lose_optimum` is true and the plan is
never reported optimal.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from omnistock.routing.problem import Problem

MAX_CANDIDATES = 60


@dataclass(frozen=True)
class Pruned:
    keep: np.ndarray  # bool mask over the problem's candidates
    pruned: int
    may_lose_optimum: bool


def prune(
    problem: Problem,
    incumbent: np.ndarray,
    strategy: str,
    max_candidates: int | None = None,
) -> Pruned:
    """Which candidates the CP-SAT model keeps; `max_candidates` defaults to `MAX_CANDIDATES`."""
    if max_candidates is None:
        max_candidates = MAX_CANDIDATES
    used = incumbent.sum(axis=0) > 0
    keep = np.ones(problem.n_cands, dtype=bool)
    units = int(incumbent.sum())
    if strategy == "cost" and units == problem.max_units_upper_bound() and units > 0:
        bound = problem.cost(incumbent)
        floor = problem.fixed + problem.unit + (units - 1) * float(problem.unit.min())
        keep &= floor <= bound * (1.0 + 1e-9) + 1e-9
    keep |= used
    may_lose = False
    if keep.sum() > max_candidates:
        cover = np.minimum(problem.qty[:, None], problem.avail).sum(axis=0)
        ratio = (problem.fixed + problem.unit * cover) / np.maximum(cover, 1)
        idx = np.arange(problem.n_cands)
        if strategy == "fewest_shipments":
            rank = np.lexsort((idx, ratio, -cover, ~used))
        else:
            rank = np.lexsort((idx, -cover, ratio, ~used))
        capped = np.zeros_like(keep)
        capped[[c for c in rank if keep[c]][: max(max_candidates, int(used.sum()))]] = True
        keep = capped
        may_lose = True
    return Pruned(keep=keep, pruned=int(problem.n_cands - keep.sum()), may_lose_optimum=may_lose)
