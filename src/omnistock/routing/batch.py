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
from collections.abc import Sequence

import msgspec
import numpy as np

from omnistock.routing.batch_baseline import _baseline, _build_plan, _capacities
from omnistock.routing.batch_order import Order as _Order
from omnistock.routing.batch_search import (
    _NO_CAP,
    CANDIDATES,
    FULL_CANDIDATES,
    _Search,
)
from omnistock.routing.engine import _validate
from omnistock.routing.model import (
    Availability,
    Plan,
    RouteRequest,
    RoutingError,
)
from omnistock.routing.network import Network


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


def summarise(plans: Sequence[Plan], elapsed_ms: float = 0.0) -> BatchSummary:
    """Totals of a list of plans: cost (exact float sum), shipments, split orders, short units."""
    return BatchSummary(
        total_cost=math.fsum(p.total_cost for p in plans),
        shipments=sum(len(p.shipments) for p in plans),
        split_orders=sum(1 for p in plans if len(p.shipments) > 1),
        unfulfilled_units=sum(u.qty for p in plans for u in p.unfulfilled),
        elapsed_ms=round(elapsed_ms, 3),
    )


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
        _build_plan(network, order, search.alloc[o], "batch") for o, order in enumerate(orders)
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
