"""The large-neighbourhood search of `plan_batch`: re-plans groups of contended orders together
with CP-SAT against the stock and capacity the other orders leave (see `batch`)."""

from __future__ import annotations

import math
import time
from collections import defaultdict

import numpy as np
from ortools.sat.python import cp_model

from omnistock.routing.batch_order import Order as _Order
from omnistock.routing.cpsat import WALL_CAP_FACTOR
from omnistock.routing.network import Network

CANDIDATES = 8
FULL_CANDIDATES = 8
FULL_SOURCES_PER_SEED = 3
RELATED_PER_SEED = 12
NEIGHBOURHOOD = 40
SUB_DETERMINISTIC_S = 0.25
SCALE = 1000.0


_NO_CAP = 1 << 40
# CP-SAT's objective is a 64-bit integer; the bound leaves room for its own sums.
_LIMIT = 2**62


def _scale(cost_ub: float, units_ub: int, terms: int) -> float:
    """The fixed-point scale of a neighbourhood's costs: SCALE, or less when the objective
    (weight * units - cost, the weight above every cost) could leave 64 bits there. Money goes
    up to 1e9 per km, so a neighbourhood of far nodes can cost 1e15 before scaling. A coarser
    scale only blurs small cost differences in the model; a plan is kept only when better in
    floats."""
    # The weight is the scaled cost bound plus one, and rounding adds at most half a unit to
    # each coefficient: at most units_ub + terms over the bound.
    room = _LIMIT / (units_ub + 2) - units_ub - terms - 2
    if cost_ub * SCALE <= room:
        return SCALE
    return max(room, 0.0) / cost_ub / 2


class _Search:
    """The shared state of the search: current allocations, stock and capacity left, holders."""

    def __init__(
        self, network: Network, orders: list[_Order], stock: np.ndarray, cap: np.ndarray
    ) -> None:
        self.network = network
        self.orders = orders
        self.left = stock.copy()  # (K, N)
        self.cap_left = cap.copy()  # (N,)
        self.alloc: list[np.ndarray] = [
            np.zeros((len(o.qty), len(o.cand)), np.int64) for o in orders
        ]
        self.holders: dict[tuple[int, int], set[int]] = defaultdict(set)
        self.at_node: dict[int, set[int]] = defaultdict(set)
        self.neighbourhoods = 0
        self.improvements = 0

    def commit(self, o: int, alloc: np.ndarray) -> None:
        order = self.orders[o]
        self.alloc[o] = alloc
        for line, c in zip(*np.nonzero(alloc), strict=True):
            n, s, q = int(order.cand[c]), int(order.sku_ids[line]), int(alloc[line, c])
            self.left[s, n] -= q
            self.cap_left[n] -= q
            self.holders[n, s].add(o)
            self.at_node[n].add(o)

    def release(self, o: int) -> np.ndarray:
        order, alloc = self.orders[o], self.alloc[o]
        for line, c in zip(*np.nonzero(alloc), strict=True):
            n, s, q = int(order.cand[c]), int(order.sku_ids[line]), int(alloc[line, c])
            self.left[s, n] += q
            self.cap_left[n] += q
            self.holders[n, s].discard(o)
            self.at_node[n].discard(o)
        self.alloc[o] = np.zeros_like(alloc)
        return alloc

    def shipments(self, o: int) -> int:
        return int((self.alloc[o].sum(axis=0) > 0).sum())

    def short(self, o: int) -> bool:
        return int(self.alloc[o].sum()) < int(self.orders[o].qty.sum())

    def cost(self, o: int, alloc: np.ndarray) -> float:
        order = self.orders[o]
        units = alloc.sum(axis=0)
        return math.fsum(np.where(units > 0, order.fixed + order.unit * units, 0.0).tolist())

    def related(self, o: int) -> list[int]:
        """Orders holding stock (or binding capacity) at the seed's best single-node sources."""
        order = self.orders[o]
        found: set[int] = set()
        sources = order.full[:FULL_SOURCES_PER_SEED]
        if not sources and self.short(o):
            sources = [int(n) for n in order.cand[:FULL_SOURCES_PER_SEED]]
        units = int(order.qty.sum())
        for n in sources:
            for s in order.sku_ids:
                found |= self.holders.get((n, int(s)), set())
            if self.cap_left[n] < units:
                found |= set(sorted(self.at_node.get(n, set()))[:10])
        found.discard(o)
        ranked = sorted(found, key=lambda p: (len(self.orders[p].qty), p))
        return sorted(ranked[:RELATED_PER_SEED])

    def solve(self, group: list[int], deadline: float) -> None:
        wall = deadline - time.perf_counter()
        if wall <= 0.01:
            return
        self.neighbourhoods += 1
        old = {o: self.release(o) for o in group}
        model = cp_model.CpModel()
        xs: dict[int, list[tuple[int, int, cp_model.IntVar]]] = {}
        per_res: dict[tuple[int, int], list] = defaultdict(list)
        per_node: dict[int, list] = defaultdict(list)
        # Costs in floats first, (coefficient, variable, its upper bound): the fixed-point scale
        # depends on how large the whole objective can get.
        cost_terms: list[tuple[float, cp_model.IntVar, int]] = []
        units_ub = 0
        all_x = []
        for o in group:
            order = self.orders[o]
            xs[o] = []
            ys = []
            per_line: dict[int, list] = defaultdict(list)
            for c, n in enumerate(order.cand):
                n = int(n)
                room = int(self.cap_left[n])
                vars_c = []
                for line, s in enumerate(order.sku_ids):
                    ub = min(int(order.qty[line]), int(self.left[s, n]), room)
                    if ub <= 0:
                        continue
                    var = model.NewIntVar(0, ub, "")
                    vars_c.append((var, ub))
                    xs[o].append((line, c, var))
                    per_res[n, int(s)].append((var, ub))
                    per_node[n].append((var, ub))
                    per_line[line].append(var)
                    all_x.append(var)
                    units_ub += ub
                    cost_terms.append((float(order.unit[c]), var, ub))
                if not vars_c:
                    continue
                y = model.NewBoolVar("")
                ys.append(y)
                for var, ub in vars_c:
                    model.Add(var <= ub * y)
                model.Add(sum(var for var, _ in vars_c) >= y)
                cost_terms.append((float(order.fixed[c]), y, 1))
                model.AddHint(y, bool(old[o][:, c].any()))
            for line, row in per_line.items():
                if len(row) > 1:
                    model.Add(sum(row) <= int(order.qty[line]))
            if order.max_shipments is not None and len(ys) > order.max_shipments:
                model.Add(sum(ys) <= order.max_shipments)
            for line, c, var in xs[o]:
                model.AddHint(var, int(old[o][line, c]))
        for (n, s), row in per_res.items():
            if sum(ub for _, ub in row) > int(self.left[s, n]):
                model.Add(sum(var for var, _ in row) <= int(self.left[s, n]))
        for n, row in per_node.items():
            if sum(ub for _, ub in row) > int(self.cap_left[n]):
                model.Add(sum(var for var, _ in row) <= int(self.cap_left[n]))
        cost_ub = math.fsum(coef * ub for coef, _, ub in cost_terms)
        scale = _scale(cost_ub, units_ub, len(cost_terms))
        scaled = [(round(coef * scale), var, ub) for coef, var, ub in cost_terms]
        # Units first: one more unit outweighs any difference in cost.
        weight = sum(coef * ub for coef, _, ub in scaled) + 1
        model.Minimize(sum(coef * var for coef, var, _ in scaled if coef) - weight * sum(all_x))
        solver = cp_model.CpSolver()
        params = solver.parameters
        params.num_workers = 1
        params.random_seed = 0
        params.max_deterministic_time = SUB_DETERMINISTIC_S
        params.max_time_in_seconds = max(0.01, min(WALL_CAP_FACTOR * SUB_DETERMINISTIC_S, wall))
        status = solver.Solve(model)
        accepted = False
        if status in (cp_model.OPTIMAL, cp_model.FEASIBLE):
            new = {o: np.zeros_like(old[o]) for o in group}
            for o in group:
                for line, c, var in xs[o]:
                    new[o][line, c] = solver.Value(var)
            units_old = sum(int(old[o].sum()) for o in group)
            units_new = sum(int(new[o].sum()) for o in group)
            cost_old = math.fsum(self.cost(o, old[o]) for o in group)
            cost_new = math.fsum(self.cost(o, new[o]) for o in group)
            tol = 1e-9 * max(1.0, abs(cost_old))
            if units_new > units_old or (units_new == units_old and cost_new < cost_old - tol):
                accepted = True
                self.improvements += 1
                for o in group:
                    self.commit(o, new[o])
        if not accepted:
            for o in group:
                self.commit(o, old[o])

    def run(self, deadline: float, max_passes: int = 6) -> tuple[int, bool]:
        passes = 0
        while passes < max_passes:
            seeds = [
                o
                for o in range(len(self.orders))
                if (self.shipments(o) > 1 and self.orders[o].full) or self.short(o)
            ]
            if not seeds:
                return passes, False
            passes += 1
            before = self.improvements
            group: list[int] = []
            members: set[int] = set()
            for o in seeds:
                if time.perf_counter() >= deadline:
                    return passes, True
                if not ((self.shipments(o) > 1 and self.orders[o].full) or self.short(o)):
                    continue
                for p in [o, *self.related(o)]:
                    if p not in members:
                        members.add(p)
                        group.append(p)
                if len(group) >= NEIGHBOURHOOD:
                    self.solve(sorted(group), deadline)
                    group, members = [], set()
            if group:
                self.solve(sorted(group), deadline)
            if time.perf_counter() >= deadline:
                return passes, True
            if self.improvements == before:
                return passes, False
        return passes, False
