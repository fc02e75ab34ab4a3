"""Batch planning: many orders at once, sharing stock and each node's `capacity_per_day`.

`plan_batch` plans a sequence of orders against one availability snapshot and returns, beside the
batch plan, the *baseline*: the same orders planned one by one, in the given order, with the
single-order engine (`route(..., strategy="cost")`), each order consuming stock and node capacity
before the next.

Shared resources. Stock per (node, sku) and capacity per node are global: the units all plans
take from a (node, sku) never exceed its stock, and the units all plans ship from a node never
exceed its `capacity_per_day` (the most units the node can ship in the batch; None = unlimited).

Objective (lexicographic): fulfil the most units, then the least total cost, where each
(order, node) pair used costs `per_shipment + per_km * km` once and every unit its `per_unit`
(exactly the sum of the plans' shipment costs, which are recomputed from the shipments in floats).

Method: large-neighbourhood search from the baseline.
 1. Baseline: one `route` call per order, with the order's availability clipped to the stock and
    capacity still left; if a plan still ships more than a node's remaining capacity (capacity is
    per node, `route` only sees per-sku clipping), its shipment from that node is trimmed (last
    lines first) and the trimmed units are reported unfulfilled. The baseline is feasible.
 2. Constructive start: the same one-by-one engine run once more in a batch-aware order --
    multi-line orders that have a single-node source first (fewest such sources first), then the
    other multi-line orders, then single-line orders (the most flexible) last. The better of this
    and the baseline in (units, cost) is the search's starting point.
 3. Candidates per order: nodes that may ship and hold any of its SKUs at the start of the batch,
    limited to the `CANDIDATES` cheapest by fixed cost (`per_shipment + per_km * km`), plus the
    `FULL_CANDIDATES` cheapest nodes that held all its lines in full, plus every warehouse holding
    any of its SKUs, plus the nodes its baseline plan uses.
 4. Orders only interact through (node, sku) stock and node capacity, so the search repeatedly
    takes a neighbourhood -- seed orders that are split or short, plus the orders currently
    holding stock (or capacity) at the seeds' single-node sources -- frees everything those orders
    hold, and re-plans them together with CP-SAT (integer-scaled costs, warm-started from the
    current plans) against the stock and capacity the other orders leave. A neighbourhood's new
    plans are kept only when they are strictly better in (units, cost) recomputed in floats, so the
    batch is never worse than the baseline and always feasible; a final check verifies the totals.
Seeds are processed in order-index order in passes until a pass improves nothing or the time runs
out. `time_limit_s` bounds the whole call (baseline included): the search stops at the deadline
and keeps the best plans found. CP-SAT runs on one worker with a fixed seed and deterministic-time
limits, so repeated calls give the same plans when the search ends before the deadline.

Avoidable split (precise): an order that the *baseline* ships from two or more nodes although at
least one node that may ship held, at the start of the batch, every line of the order in full and
had a `capacity_per_day` of at least the order's units (or None). The batch *removes* such a split
when it ships that order from a single node with nothing unfulfilled.

Limits: pickup orders (`pickup_node_id`) are not supported; `request.strategy` is ignored (the
batch objective above is used, and the baseline uses `strategy="cost"`); `max_shipments` is
honoured by both.
"""

from __future__ import annotations

import math
import time
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass

import msgspec
import numpy as np
from ortools.sat.python import cp_model

from omnistock.routing.cost import plan_cost, shipment_cost
from omnistock.routing.engine import _validate, route
from omnistock.routing.model import (
    Availability,
    Plan,
    RouteRequest,
    RoutingError,
    Shipment,
    ShipmentLine,
    SolverInfo,
    Unfulfilled,
)
from omnistock.routing.network import Network

CANDIDATES = 8
FULL_CANDIDATES = 8
FULL_SOURCES_PER_SEED = 3
RELATED_PER_SEED = 12
NEIGHBOURHOOD = 40
SUB_DETERMINISTIC_S = 0.25
SCALE = 1000.0


class BatchSummary(msgspec.Struct, frozen=True):
    """Totals over a batch's plans."""

    total_cost: float
    shipments: int
    split_orders: int
    unfulfilled_units: int
    elapsed_ms: float = 0.0


class BatchSolverInfo(msgspec.Struct, frozen=True):
    """How the batch was planned.

    `status`: `improved` (the batch is better than the baseline: fewer units short, or as many
    and cheaper), `baseline` (nothing better was found), `empty` (no orders). `optimal` is never
    claimed: the search is a heuristic.
    `elapsed_ms` covers the whole call, baseline included. `timed_out`: the deadline stopped the
    search before it converged. `neighbourhoods` solved and `improvements` kept.
    """

    status: str
    optimal: bool
    elapsed_ms: float
    timed_out: bool = False
    neighbourhoods: int = 0
    improvements: int = 0
    passes: int = 0


class BatchPlan(msgspec.Struct, frozen=True):
    """The batch plans (one per request, in request order) and their totals, beside the baseline.

    `avoidable_splits`: baseline orders with an avoidable split (see the module docstring);
    `avoidable_splits_removed`: those the batch ships from a single node in full.
    """

    plans: list[Plan]
    total_cost: float
    shipments: int
    split_orders: int
    unfulfilled_units: int
    solver: BatchSolverInfo
    baseline: BatchSummary
    baseline_plans: list[Plan]
    avoidable_splits: int = 0
    avoidable_splits_removed: int = 0


@dataclass(eq=False)
class _Order:
    skus: list[str]
    sku_ids: np.ndarray  # (L,) global sku index
    qty: np.ndarray  # (L,) int64
    cand: np.ndarray  # (C,) node indices, ascending
    dist: np.ndarray  # (C,)
    fixed: np.ndarray  # (C,)
    unit: np.ndarray  # (C,)
    full: list[int]  # node indices that held every line in full at the start, cheapest first
    max_shipments: int | None


def summarise(plans: Sequence[Plan], elapsed_ms: float = 0.0) -> BatchSummary:
    """Totals of a list of plans: cost (exact float sum), shipments, split orders, short units."""
    return BatchSummary(
        total_cost=math.fsum(p.total_cost for p in plans),
        shipments=sum(len(p.shipments) for p in plans),
        split_orders=sum(1 for p in plans if len(p.shipments) > 1),
        unfulfilled_units=sum(u.qty for p in plans for u in p.unfulfilled),
        elapsed_ms=round(elapsed_ms, 3),
    )


def _capacities(network: Network) -> list[int | None]:
    return [n.capacity_per_day for n in network.nodes]


def _build_plan(
    network: Network, order: _Order, alloc: np.ndarray, status: str, dist_all: np.ndarray | None
) -> Plan:
    shipments: list[Shipment] = []
    for c in range(len(order.cand)):
        column = alloc[:, c]
        units = int(column.sum())
        if units == 0:
            continue
        node = network.nodes[int(order.cand[c])]
        km = float(order.dist[c])
        lines = tuple(
            ShipmentLine(sku=sku, qty=int(q))
            for sku, q in zip(order.skus, column, strict=True)
            if q
        )
        shipments.append(
            Shipment(
                node_id=node.node_id,
                lines=lines,
                distance_km=km,
                cost=shipment_cost(node.cost, km, units),
            )
        )
    shipped = alloc.sum(axis=1)
    unfulfilled = tuple(
        Unfulfilled(sku=sku, qty=int(q - s))
        for sku, q, s in zip(order.skus, order.qty, shipped, strict=True)
        if q > s
    )
    return Plan(
        shipments=tuple(shipments),
        total_cost=plan_cost(shipments),
        unfulfilled=unfulfilled,
        strategy="cost",
        solver=SolverInfo(status=status, optimal=False, elapsed_ms=0.0, candidates=len(order.cand)),
    )


def _baseline(
    network: Network,
    stock: dict[tuple[int, int], int],
    sku_index: dict[str, int],
    holders_of_sku: dict[int, list[int]],
    requests: Sequence[RouteRequest],
    merged: list[tuple[list[str], list[int]]],
    time_limit_ms: float,
) -> list[Plan]:
    """One `route` call per order in order, each consuming stock and capacity before the next."""
    left = dict(stock)
    cap_left = _capacities(network)
    plans: list[Plan] = []
    for request, (skus, _qtys) in zip(requests, merged, strict=True):
        view: dict[str, dict[str, int]] = {}
        for sku in skus:
            s = sku_index[sku]
            row = {}
            for n in holders_of_sku.get(s, ()):
                units = left.get((n, s), 0)
                cap = cap_left[n]
                if cap is not None:
                    units = min(units, cap)
                if units > 0:
                    row[network.node_ids[n]] = units
            view[sku] = row
        plan = route(
            network,
            view,
            msgspec.structs.replace(request, strategy="cost"),
            time_limit_ms=time_limit_ms,
        )
        plan = _trim_to_capacity(network, plan, cap_left, skus)
        for shipment in plan.shipments:
            n = network.index_of(shipment.node_id)
            units = 0
            for line in shipment.lines:
                left[n, sku_index[line.sku]] -= line.qty
                units += line.qty
            if cap_left[n] is not None:
                cap_left[n] -= units
        plans.append(plan)
    return plans


def _trim_to_capacity(
    network: Network, plan: Plan, cap_left: list[int | None], skus: list[str]
) -> Plan:
    """Cuts shipments down to the nodes' remaining capacity; cut units become unfulfilled."""
    shipments: list[Shipment] = []
    short: dict[str, int] = {u.sku: u.qty for u in plan.unfulfilled}
    changed = False
    for shipment in plan.shipments:
        n = network.index_of(shipment.node_id)
        units = sum(line.qty for line in shipment.lines)
        cap = cap_left[n]
        if cap is None or units <= cap:
            shipments.append(shipment)
            continue
        changed = True
        excess = units - cap
        lines = list(shipment.lines)
        for i in range(len(lines) - 1, -1, -1):
            if excess == 0:
                break
            cut = min(excess, lines[i].qty)
            short[lines[i].sku] = short.get(lines[i].sku, 0) + cut
            lines[i] = ShipmentLine(sku=lines[i].sku, qty=lines[i].qty - cut)
            excess -= cut
        lines = [line for line in lines if line.qty > 0]
        if lines:
            node = network.nodes[n]
            kept = sum(line.qty for line in lines)
            cost = shipment_cost(node.cost, shipment.distance_km, kept)
            shipments.append(msgspec.structs.replace(shipment, lines=tuple(lines), cost=cost))
    if not changed:
        return plan
    unfulfilled = tuple(Unfulfilled(sku=sku, qty=short[sku]) for sku in skus if short.get(sku))
    return msgspec.structs.replace(
        plan, shipments=tuple(shipments), total_cost=plan_cost(shipments), unfulfilled=unfulfilled
    )


_NO_CAP = 1 << 40


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
        cost_terms = []
        cost_ub = 0
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
                    unit_s = round(float(order.unit[c]) * SCALE)
                    if unit_s:
                        cost_terms.append(unit_s * var)
                        cost_ub += unit_s * ub
                if not vars_c:
                    continue
                y = model.NewBoolVar("")
                ys.append(y)
                for var, ub in vars_c:
                    model.Add(var <= ub * y)
                model.Add(sum(var for var, _ in vars_c) >= y)
                fixed_s = round(float(order.fixed[c]) * SCALE)
                cost_terms.append(fixed_s * y)
                cost_ub += fixed_s
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
        weight = cost_ub + 1
        model.Minimize(sum(cost_terms) - weight * sum(all_x))
        solver = cp_model.CpSolver()
        params = solver.parameters
        params.num_workers = 1
        params.random_seed = 0
        params.max_deterministic_time = SUB_DETERMINISTIC_S
        params.max_time_in_seconds = max(0.01, min(2.0 * SUB_DETERMINISTIC_S, wall))
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


def plan_batch(
    network: Network,
    availability: Availability,
    requests: Sequence[RouteRequest],
    *,
    time_limit_s: float = 30.0,
    baseline_time_limit_ms: float = 50.0,
) -> BatchPlan:
    """Plan `requests` together, sharing stock and node capacity; see the module docstring.

    Returns one plan per request (in order), the totals, and the one-by-one baseline beside it.
    `time_limit_s` bounds the whole call; `baseline_time_limit_ms` is each baseline `route` call's
    CP-SAT budget. Raises `RoutingError` (field `requests[i]....`) for an invalid request.
    """
    started = time.perf_counter()
    deadline = started + time_limit_s
    merged: list[tuple[list[str], list[int]]] = []
    for i, request in enumerate(requests):
        if request.pickup_node_id is not None:
            raise RoutingError(f"requests[{i}].pickup_node_id", "not supported in a batch")
        try:
            skus, qtys, _ = _validate(network, msgspec.structs.replace(request, strategy="cost"))
        except RoutingError as exc:
            raise RoutingError(f"requests[{i}].{exc.field}", exc.detail) from None
        merged.append((skus, qtys))

    sku_index: dict[str, int] = {}
    for skus, _ in merged:
        for sku in skus:
            sku_index.setdefault(sku, len(sku_index))
    n_nodes = len(network)
    cap = np.array(
        [_NO_CAP if c is None else max(0, int(c)) for c in _capacities(network)], dtype=np.int64
    )
    eligible = network.ships & (cap > 0)
    stock = np.zeros((len(sku_index), n_nodes), dtype=np.int64)
    for sku, s in sku_index.items():
        for node_id, units in (availability.get(sku) or {}).items():
            if node_id in network and units > 0:
                stock[s, network.index_of(node_id)] = int(units)
    stock[:, ~eligible] = 0
    holders_of_sku = {s: np.flatnonzero(stock[s]).tolist() for s in range(len(sku_index))}

    base_started = time.perf_counter()
    stock_map = {(n, s): int(stock[s, n]) for s, ns in holders_of_sku.items() for n in ns}
    baseline_plans = _baseline(
        network, stock_map, sku_index, holders_of_sku, requests, merged, baseline_time_limit_ms
    )
    baseline = summarise(baseline_plans, (time.perf_counter() - base_started) * 1000.0)

    # Constructive start: the same one-by-one engine, but in a batch-aware order: multi-line
    # orders that have a single-node source first (fewest such sources first), then the other
    # multi-line orders, then single-line orders (the most flexible) last.
    full_count = []
    for skus, qtys in merged:
        rows = stock[[sku_index[s] for s in skus]]
        q = np.array(qtys, dtype=np.int64)
        mask = eligible & (rows >= q[:, None]).all(axis=0) & (cap >= int(q.sum()))
        full_count.append(int(mask.sum()))
    sequence = sorted(
        range(len(requests)),
        key=lambda i: (
            2 if len(merged[i][0]) == 1 else 0 if full_count[i] else 1,
            full_count[i],
            -len(merged[i][0]),
            i,
        ),
    )
    start_plans = [None] * len(requests)
    ordered_plans = _baseline(
        network,
        stock_map,
        sku_index,
        holders_of_sku,
        [requests[i] for i in sequence],
        [merged[i] for i in sequence],
        baseline_time_limit_ms,
    )
    for i, plan in zip(sequence, ordered_plans, strict=True):
        start_plans[i] = plan
    start = summarise(start_plans)
    base_units = sum(int(sum(q)) for _, q in merged) - baseline.unfulfilled_units
    start_units = sum(int(sum(q)) for _, q in merged) - start.unfulfilled_units
    if (start_units, -start.total_cost) <= (base_units, -baseline.total_cost):
        start_plans = baseline_plans

    warehouses = np.array([n.kind == "warehouse" for n in network.nodes], dtype=bool)
    orders: list[_Order] = []
    for request, (skus, qtys), plan, plan2 in zip(
        requests, merged, baseline_plans, start_plans, strict=True
    ):
        sku_ids = np.array([sku_index[s] for s in skus], dtype=np.int64)
        qty = np.array(qtys, dtype=np.int64)
        dist_all = network.distances_km(request.destination.lat, request.destination.lon)
        fixed_all = network.per_shipment + network.per_km * dist_all
        rows = stock[sku_ids]
        any_mask = (rows > 0).any(axis=0) & eligible
        full_mask = any_mask & (rows >= qty[:, None]).all(axis=0) & (cap >= int(qty.sum()))
        idx = np.arange(n_nodes)
        by_cost = np.lexsort((idx, fixed_all))
        ranked_any = [int(n) for n in by_cost if any_mask[n]]
        ranked_full = [int(n) for n in by_cost if full_mask[n]]
        chosen = set(ranked_any[:CANDIDATES]) | set(ranked_full[:FULL_CANDIDATES])
        chosen |= {int(n) for n in np.flatnonzero(any_mask & warehouses)}
        chosen |= {network.index_of(s.node_id) for s in (*plan.shipments, *plan2.shipments)}
        cand = np.array(sorted(chosen), dtype=np.int64)
        orders.append(
            _Order(
                skus=skus,
                sku_ids=sku_ids,
                qty=qty,
                cand=cand,
                dist=dist_all[cand],
                fixed=fixed_all[cand],
                unit=network.per_unit[cand],
                full=ranked_full[:FULL_CANDIDATES],
                max_shipments=request.max_shipments,
            )
        )

    search = _Search(network, orders, stock, cap)
    for o, (order, plan) in enumerate(zip(orders, start_plans, strict=True)):
        alloc = np.zeros((len(order.qty), len(order.cand)), dtype=np.int64)
        col = {int(n): c for c, n in enumerate(order.cand)}
        line_of = {sku: i for i, sku in enumerate(order.skus)}
        for shipment in plan.shipments:
            c = col[network.index_of(shipment.node_id)]
            for line in shipment.lines:
                alloc[line_of[line.sku], c] += line.qty
        search.commit(o, alloc)
    passes, timed_out = search.run(deadline)
    _check(search, stock, cap)

    plans = [
        _build_plan(network, order, search.alloc[o], "batch", None)
        for o, order in enumerate(orders)
    ]
    avoidable = [
        o for o, plan in enumerate(baseline_plans) if len(plan.shipments) > 1 and orders[o].full
    ]
    removed = sum(1 for o in avoidable if len(plans[o].shipments) == 1 and not plans[o].unfulfilled)
    totals = summarise(plans)
    elapsed = (time.perf_counter() - started) * 1000.0
    better_than_baseline = (totals.unfulfilled_units, totals.total_cost) < (
        baseline.unfulfilled_units,
        baseline.total_cost - 1e-9 * max(1.0, abs(baseline.total_cost)),
    )
    status = "empty" if not requests else ("improved" if better_than_baseline else "baseline")
    return BatchPlan(
        plans=plans,
        total_cost=totals.total_cost,
        shipments=totals.shipments,
        split_orders=totals.split_orders,
        unfulfilled_units=totals.unfulfilled_units,
        solver=BatchSolverInfo(
            status=status,
            optimal=False,
            elapsed_ms=round(elapsed, 3),
            timed_out=timed_out,
            neighbourhoods=search.neighbourhoods,
            improvements=search.improvements,
            passes=passes,
        ),
        baseline=baseline,
        baseline_plans=baseline_plans,
        avoidable_splits=len(avoidable),
        avoidable_splits_removed=removed,
    )


def _check(search: _Search, stock: np.ndarray, cap: np.ndarray) -> None:
    """Verifies from scratch that the allocations never exceed stock or capacity in total."""
    used = np.zeros_like(stock)
    for order, alloc in zip(search.orders, search.alloc, strict=True):
        for line, c in zip(*np.nonzero(alloc), strict=True):
            used[order.sku_ids[line], order.cand[c]] += alloc[line, c]
        if (alloc.sum(axis=1) > order.qty).any():
            raise RuntimeError("batch plan ships more than an order asks for")
    if (used > stock).any() or (used.sum(axis=0) > cap).any():
        raise RuntimeError("batch plan exceeds stock or capacity")
