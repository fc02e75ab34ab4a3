"""CP-SAT model for the `cost` and `fewest_shipments` strategies.

Variables: x[l, c] units of line l from candidate c (0..available), y[c] whether c ships.
Constraints: x[l, c] <= available * y[c]; a shipping node ships at least one unit; per line
sum_c x[l, c] <= qty; sum_c y[c] <= max_shipments.
Objective, lexicographic via weights: most units first, then (for `fewest_shipments`) fewest
shipments, then least cost. Without a binding `max_shipments` every line's maximum is reachable
at once, so units are fixed by equality constraints instead of a weight; the same holds when
the warm-start plan already reaches that maximum.
Costs are floats: they are rounded to integer micro-units here (coarser only if the weighted
objective would not fit in 62 bits) and the engine recomputes the plan's cost exactly in floats.
One worker and a fixed seed; by default the time limit is a deterministic-time budget (with a
wall-clock safety cap of WALL_CAP_FACTOR times the limit) so the same inputs give the same plan
even when the limit is reached; on a 2-core test machine 50 ms of deterministic time took about
90 ms of wall.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from ortools.sat.python import cp_model

from omnistock.routing.problem import Problem

# The wall-clock safety net around a deterministic budget. Generous, so that a busy machine
# (a two-core box running tests, a loaded API worker) does not cut a search short and change the
# plan; the deterministic budget is what normally ends the search.
WALL_CAP_FACTOR = 6.0

SCALE = 1_000_000
_LIMIT = 2**62


@dataclass(frozen=True)
class CpSatResult:
    alloc: np.ndarray | None
    status: str  # "optimal", "feasible", "unknown", ...
    optimal: bool


def _weights(problem: Problem, strategy: str, fixed_units: bool, scale: float):
    fixed_f = np.rint(problem.fixed * scale)
    unit_f = np.rint(problem.unit * scale)
    if max(fixed_f.max(initial=0.0), unit_f.max(initial=0.0)) >= _LIMIT:
        # A cost that does not fit a 64-bit integer at this scale (a shipment across the globe
        # at the contract's largest per-km price): too large, so the caller scales down.
        return None, None, 0, 0, _LIMIT
    fixed_s = fixed_f.astype(np.int64)
    unit_s = unit_f.astype(np.int64)
    cost_ub = int(fixed_s.sum()) + int(problem.qty.sum()) * int(unit_s.max(initial=0))
    w_ship = cost_ub + 1 if strategy == "fewest_shipments" else 0
    w_unit = 0 if fixed_units else (problem.n_cands + 1) * max(w_ship, 1) + cost_ub + 1
    worst = w_unit * int(problem.qty.sum()) + w_ship * problem.n_cands + cost_ub
    return fixed_s, unit_s, w_ship, w_unit, worst


def solve(
    problem: Problem,
    strategy: str,
    hint: np.ndarray,
    time_limit_ms: float,
    deterministic: bool = True,
) -> CpSatResult:
    limit = problem.max_shipments
    # When the hint already fulfils every line to its maximum, so does every optimum: fix units.
    fixed_units = (
        limit is None
        or limit >= problem.n_cands
        or int(hint.sum()) == problem.max_units_upper_bound()
    )
    scale = float(SCALE)
    fixed_s, unit_s, w_ship, w_unit, worst = _weights(problem, strategy, fixed_units, scale)
    while worst >= _LIMIT and scale > 1e-6:
        scale /= 10.0
        fixed_s, unit_s, w_ship, w_unit, worst = _weights(problem, strategy, fixed_units, scale)
    if fixed_s is None or unit_s is None:  # beyond any scale: the caller keeps its own plan
        return CpSatResult(alloc=None, status="model_invalid", optimal=False)
    exact_scale = scale == float(SCALE)

    model = cp_model.CpModel()
    y = [model.NewBoolVar(f"y{c}") for c in range(problem.n_cands)]
    x: dict[tuple[int, int], cp_model.IntVar] = {}
    for line in range(problem.n_lines):
        for c in range(problem.n_cands):
            a = int(problem.avail[line, c])
            if a > 0:
                var = model.NewIntVar(0, a, f"x{line}_{c}")
                model.Add(var <= a * y[c])
                x[line, c] = var
    for c in range(problem.n_cands):
        ships = [x[line, c] for line in range(problem.n_lines) if (line, c) in x]
        model.Add(sum(ships) >= y[c])
    for line in range(problem.n_lines):
        row = [x[line, c] for c in range(problem.n_cands) if (line, c) in x]
        target = min(int(problem.qty[line]), int(problem.avail[line].sum()))
        if fixed_units:
            model.Add(sum(row) == target)
        else:
            model.Add(sum(row) <= target)
    if limit is not None and limit < problem.n_cands:
        model.Add(sum(y) <= limit)

    cost_expr = sum(int(fixed_s[c]) * y[c] for c in range(problem.n_cands)) + sum(
        int(unit_s[c]) * var for (_, c), var in x.items()
    )
    objective = cost_expr
    if w_ship:
        objective = objective + w_ship * sum(y)
    if w_unit:
        objective = objective - w_unit * sum(x.values())
    model.Minimize(objective)

    used = hint.sum(axis=0) > 0
    for c in range(problem.n_cands):
        model.AddHint(y[c], bool(used[c]))
    for (line, c), var in x.items():
        model.AddHint(var, int(hint[line, c]))

    solver = cp_model.CpSolver()
    params = solver.parameters
    params.num_workers = 1
    params.random_seed = 0
    seconds = max(time_limit_ms, 1.0) / 1000.0
    if deterministic:
        params.max_deterministic_time = seconds
        params.max_time_in_seconds = WALL_CAP_FACTOR * seconds
    else:
        params.max_time_in_seconds = seconds
    status = solver.Solve(model)
    name = solver.StatusName(status).lower()
    if status not in (cp_model.OPTIMAL, cp_model.FEASIBLE):
        return CpSatResult(alloc=None, status=name, optimal=False)
    alloc = np.zeros_like(problem.avail)
    for (line, c), var in x.items():
        alloc[line, c] = solver.Value(var)
    return CpSatResult(alloc=alloc, status=name, optimal=status == cp_model.OPTIMAL and exact_scale)
