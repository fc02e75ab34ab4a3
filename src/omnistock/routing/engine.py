"""`route`: the pure routing engine. No I/O; the same inputs give the same plan (bar `elapsed_ms`).

Flow: validate -> build the numeric `Problem` -> per strategy:
  * `closest` / `priority`: the ordered rules in `greedy`;
  * `cost` / `fewest_shipments`: the single-node fast path with its proof (`exact`), else a
    greedy incumbent, safe pruning (`candidates`), and CP-SAT warm-started from the incumbent
    (`cpsat`); the solver's plan is kept only if it is at least as good as the incumbent.
Every plan's cost is recomputed from its shipments with the cost formula.

Pickup orders (`pickup_node_id`): the destination is the store. The store's own stock is a
candidate with zero cost and distance 0; other candidates are `ships` nodes, whose shipments are
transfers into the store. See `PickupInfo` for the ready-time model.
"""

from __future__ import annotations

import math
import time

import numpy as np

from omnistock.routing import candidates, cpsat, exact, greedy
from omnistock.routing.assemble import assemble
from omnistock.routing.cost import plan_cost
from omnistock.routing.model import (
    STRATEGIES,
    Availability,
    PickupInfo,
    Plan,
    RouteRequest,
    RoutingError,
    SolverInfo,
)
from omnistock.routing.network import Network
from omnistock.routing.problem import Problem, better

TRANSFER_HANDLING_MINUTES = 60
TRANSFER_SPEED_KMH = 60.0


def _validate(network: Network, request: RouteRequest) -> tuple[list[str], list[int], int | None]:
    """Checks the request; returns merged (skus, qtys) in first-seen order and the store index."""
    if request.strategy not in STRATEGIES:
        raise RoutingError("strategy", f"must be one of {', '.join(STRATEGIES)}")
    ms = request.max_shipments
    if ms is not None and (isinstance(ms, bool) or not isinstance(ms, int) or ms < 1):
        raise RoutingError("max_shipments", "must be an integer >= 1")
    if not request.lines:
        raise RoutingError("lines", "at least one line is required")
    merged: dict[str, int] = {}
    for i, line in enumerate(request.lines):
        if not isinstance(line.sku, str) or not line.sku:
            raise RoutingError(f"lines[{i}].sku", "must be a non-empty string")
        if isinstance(line.qty, bool) or not isinstance(line.qty, int) or line.qty <= 0:
            raise RoutingError(f"lines[{i}].qty", "must be an integer > 0")
        merged[line.sku] = merged.get(line.sku, 0) + line.qty
    store = None
    if request.pickup_node_id is not None:
        if request.destination is not None:
            raise RoutingError("destination", "give either destination or pickup_node_id")
        if request.pickup_node_id not in network:
            raise RoutingError("pickup_node_id", f"unknown node {request.pickup_node_id!r}")
        store = network.index_of(request.pickup_node_id)
        if not network.nodes[store].pickup:
            raise RoutingError("pickup_node_id", "node does not offer pickup")
    elif request.destination is None:
        raise RoutingError("destination", "destination or pickup_node_id is required")
    else:
        d = request.destination
        if not (math.isfinite(d.lat) and -90.0 <= d.lat <= 90.0):
            raise RoutingError("destination.lat", "must be within [-90, 90]")
        if not (math.isfinite(d.lon) and -180.0 <= d.lon <= 180.0):
            raise RoutingError("destination.lon", "must be within [-180, 180]")
    return list(merged), list(merged.values()), store


def _problem(
    network: Network,
    availability: Availability,
    request: RouteRequest,
    skus: list[str],
    qtys: list[int],
    store: int | None,
) -> Problem:
    if store is not None:
        lat, lon = network.lat[store], network.lon[store]
    else:
        lat, lon = request.destination.lat, request.destination.lon
    qty = np.array(qtys, dtype=np.int64)
    avail = np.zeros((len(skus), len(network)), dtype=np.int64)
    for line, sku in enumerate(skus):
        for node_id, units in (availability.get(sku) or {}).items():
            if node_id in network and units > 0:
                avail[line, network.index_of(node_id)] = min(int(units), qtys[line])
    eligible = network.ships.copy()
    first = np.zeros(len(network), dtype=bool)
    dist = network.distances_km(float(lat), float(lon))
    fixed = network.per_shipment + network.per_km * dist
    unit = network.per_unit.copy()
    if store is not None:
        eligible[store] = True
        first[store] = True
        dist[store] = fixed[store] = unit[store] = 0.0
    cols = np.flatnonzero(eligible & (avail.sum(axis=0) > 0))
    return Problem(
        skus=tuple(skus),
        qty=qty,
        node_ids=tuple(network.node_ids[c] for c in cols),
        node_index=cols,
        avail=avail[:, cols],
        dist=dist[cols],
        fixed=fixed[cols],
        unit=unit[cols],
        priority=network.priority[cols],
        first=first[cols],
        max_shipments=request.max_shipments,
    )


def _optimise(
    problem: Problem, strategy: str, time_limit_ms: float, deterministic: bool
) -> tuple[np.ndarray, str, bool, int, bool]:
    """(allocation, status, optimal, pruned, may_lose_optimum) for `cost` / `fewest_shipments`."""
    proven = exact.proven_single_node(problem, strategy)
    if proven is not None:
        return proven, "single_node_proven", True, 0, False
    incumbent = greedy.warm_start(problem, strategy)
    pruned = candidates.prune(problem, incumbent, strategy)
    sub = problem.restrict(pruned.keep)
    result = cpsat.solve(sub, strategy, incumbent[:, pruned.keep], time_limit_ms, deterministic)
    if result.alloc is None:
        return incumbent, "greedy", False, pruned.pruned, pruned.may_lose_optimum
    alloc = np.zeros_like(problem.avail)
    alloc[:, pruned.keep] = result.alloc
    optimal = result.optimal and not pruned.may_lose_optimum
    if better(problem.key(incumbent, strategy), problem.key(alloc, strategy), rel=1e-9):
        return incumbent, "greedy", False, pruned.pruned, pruned.may_lose_optimum
    # Optimal among the capped candidates only: say so rather than "optimal".
    status = "optimal_among_candidates" if result.optimal and not optimal else result.status
    return alloc, status, optimal, pruned.pruned, pruned.may_lose_optimum


def route(
    network: Network,
    availability: Availability,
    request: RouteRequest,
    *,
    time_limit_ms: float = 50.0,
    deterministic: bool = True,
) -> Plan:
    """Plan one order. Raises `RoutingError` naming the field of an invalid request.

    `time_limit_ms` bounds the CP-SAT search. With `deterministic` (the default) it is CP-SAT's
    deterministic-time budget (wall clock capped at 6x), so repeated calls give identical plans;
    otherwise it is a plain wall-clock limit.
    """
    started = time.perf_counter()
    skus, qtys, store = _validate(network, request)
    problem = _problem(network, availability, request, skus, qtys, store)
    strategy = request.strategy
    pruned, may_lose = 0, False
    if problem.n_cands == 0:
        alloc, status, optimal = np.zeros_like(problem.avail), "nothing_available", True
    elif strategy in ("closest", "priority"):
        order = greedy.closest_order if strategy == "closest" else greedy.priority_order
        alloc, status, optimal = greedy.ordered(problem, order(problem)), "heuristic", False
    else:
        alloc, status, optimal, pruned, may_lose = _optimise(
            problem, strategy, time_limit_ms, deterministic
        )

    shipments, unfulfilled = assemble(
        network, skus, problem.qty, problem.node_index, problem.dist, alloc, free_node=store
    )
    pickup = None
    if store is not None:
        node = network.nodes[store]
        transfers = [s.distance_km for s in shipments if s.node_id != node.node_id]
        ready = node.pickup_ready_minutes
        if transfers:
            transit = TRANSFER_HANDLING_MINUTES + max(transfers) / TRANSFER_SPEED_KMH * 60.0
            ready += math.ceil(transit)
        pickup = PickupInfo(node_id=node.node_id, local=not transfers, ready_in_minutes=ready)
    elapsed = (time.perf_counter() - started) * 1000.0
    return Plan(
        shipments=shipments,
        total_cost=plan_cost(shipments),
        unfulfilled=unfulfilled,
        strategy=strategy,
        solver=SolverInfo(
            status=status,
            optimal=optimal,
            elapsed_ms=round(elapsed, 3),
            candidates=problem.n_cands,
            pruned=pruned,
            pruned_may_lose_optimum=may_lose,
        ),
        pickup=pickup,
    )
