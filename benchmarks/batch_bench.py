"""Batch planning benchmark: many orders over one network, batch vs one-by-one greedy planning.

Instance (seeded, deterministic):
* network: node positions and kinds from `benchmarks.geo.build_network` when it is importable
  (real US city geography: warehouses + stores), else points in a 4,000 x 2,000 km box. Costs
  and capacities are set here so that one shipment is nearly always cheaper than two (shipment
  fees dominate distance): warehouses `Cost(5.0, 0.002, 0.5)`, no capacity limit; stores
  `Cost(6..9, 0.002, 0.8..1.2)`, `capacity_per_day` 40..120 units.
* orders: 1-5 lines (1 most often), SKUs drawn by Zipf demand from a long-tail catalogue,
  1 unit a line (sometimes 2), shipped near a random store (so demand follows the stores).
* stock: tight. For each SKU, total stock = ceil(demand * STOCK_FACTOR); warehouses hold about
  half of it (so they are the usual single-node source of multi-line orders), the rest sits in
  small lots in a few stores. Greedy one-by-one planning lets early single-line orders take
  warehouse units that later multi-line orders needed to ship in one parcel.

Measures: `plan_batch` wall time (baseline included, as the search starts from it), cost,
shipments, split orders and unfulfilled units for both, and avoidable splits removed (see
`omnistock.routing.batch` for the definition). Targets (reported, not asserted): batch removes
>= 40 % of the baseline's avoidable splits, in < 60 s. Always exits 0.

    python -m benchmarks.batch_bench [--orders N] [--nodes N] [--quick] [--time-limit S]
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import math
import platform
import random
import sys
import time
from pathlib import Path

import msgspec

from omnistock.routing import Cost, Destination, Network, Node, OrderLine, RouteRequest
from omnistock.routing.batch import plan_batch

RESULTS = Path(__file__).parent / "results"
STOCK_FACTOR = 1.05
TARGET_REMOVED = 0.40
TARGET_SECONDS = 60.0


def _positions(n_nodes: int, seed: int) -> tuple[list[Node], str]:
    try:
        from benchmarks import geo

        return list(geo.build_network(n_nodes, seed).nodes), "benchmarks.geo (US cities)"
    except Exception:
        rng = random.Random(f"box:{n_nodes}:{seed}")
        nodes = []
        for i in range(n_nodes):
            kind = "warehouse" if i < max(1, n_nodes // 60) else "store"
            nodes.append(
                Node(
                    node_id=f"{'wh' if kind == 'warehouse' else 'st'}-{i:04d}",
                    lat=rng.uniform(30.0, 48.0),
                    lon=rng.uniform(-120.0, -75.0),
                    kind=kind,
                )
            )
        return nodes, "random box (30..48N, 120..75W)"


def build_network(n_nodes: int, seed: int = 0) -> tuple[Network, str]:
    nodes, source = _positions(n_nodes, seed)
    rng = random.Random(f"costs:{n_nodes}:{seed}")
    out = []
    for node in nodes:
        if node.kind == "warehouse":
            cost, cap = Cost(5.0, 0.002, 0.5), None
        else:
            cost = Cost(round(rng.uniform(6.0, 9.0), 2), 0.002, round(rng.uniform(0.8, 1.2), 2))
            cap = rng.randint(40, 120)
        out.append(msgspec.structs.replace(node, cost=cost, capacity_per_day=cap, ships=True))
    return Network(out), source


def build_orders(network: Network, n_orders: int, n_skus: int, seed: int = 0) -> list[RouteRequest]:
    rng = random.Random(f"orders:{n_orders}:{seed}")
    weights = [1.0 / (r + 1) ** 1.0 for r in range(n_skus)]
    cum = list(_accumulate(weights))
    stores = [n for n in network.nodes if n.kind != "warehouse"] or list(network.nodes)
    orders = []
    for _ in range(n_orders):
        n_lines = rng.choices([1, 2, 3, 4, 5], weights=[40, 25, 17, 11, 7])[0]
        skus: list[str] = []
        while len(skus) < n_lines:
            sku = f"sku-{_pick(rng, cum):05d}"
            if sku not in skus:
                skus.append(sku)
        site = rng.choice(stores)
        lat = min(89.0, max(-89.0, site.lat + rng.gauss(0.0, 0.3)))
        lon = min(179.0, max(-179.0, site.lon + rng.gauss(0.0, 0.3)))
        lines = [OrderLine(sku, 2 if rng.random() < 0.1 else 1) for sku in skus]
        orders.append(RouteRequest(lines=tuple(lines), destination=Destination(lat, lon)))
    return orders


def _accumulate(weights):
    total = 0.0
    for w in weights:
        total += w
        yield total


def _pick(rng: random.Random, cum: list[float]) -> int:
    import bisect

    return bisect.bisect_left(cum, rng.random() * cum[-1])


def build_stock(
    network: Network, orders: list[RouteRequest], seed: int = 0
) -> dict[str, dict[str, int]]:
    rng = random.Random(f"stock:{len(orders)}:{seed}")
    demand: dict[str, int] = {}
    for order in orders:
        for line in order.lines:
            demand[line.sku] = demand.get(line.sku, 0) + line.qty
    warehouses = [n.node_id for n in network.nodes if n.kind == "warehouse"]
    stores = [n.node_id for n in network.nodes if n.kind != "warehouse"]
    stock: dict[str, dict[str, int]] = {}
    for sku in sorted(demand):
        total = math.ceil(demand[sku] * STOCK_FACTOR)
        row: dict[str, int] = {}
        in_wh = total // 2 + (total % 2 if rng.random() < 0.5 else 0)
        for i in range(in_wh):
            wh = warehouses[i % len(warehouses)]
            row[wh] = row.get(wh, 0) + 1
        rest = total - in_wh
        while rest > 0:
            lot = min(rest, rng.randint(1, 4))
            st = rng.choice(stores)
            row[st] = row.get(st, 0) + lot
            rest -= lot
        stock[sku] = row
    return stock


def run(n_orders: int, n_nodes: int, time_limit_s: float, seed: int = 0) -> dict:
    network, source = build_network(n_nodes, seed)
    n_skus = max(50, n_orders // 5)
    orders = build_orders(network, n_orders, n_skus, seed)
    stock = build_stock(network, orders, seed)
    started = time.perf_counter()
    result = plan_batch(network, stock, orders, time_limit_s=time_limit_s)
    seconds = time.perf_counter() - started
    removed_pct = (
        100.0 * result.avoidable_splits_removed / result.avoidable_splits
        if result.avoidable_splits
        else 100.0
    )
    base = result.baseline
    return {
        "instance": {
            "orders": n_orders,
            "nodes": n_nodes,
            "warehouses": sum(1 for n in network.nodes if n.kind == "warehouse"),
            "skus_in_catalogue": n_skus,
            "skus_ordered": len(stock),
            "units_ordered": sum(line.qty for o in orders for line in o.lines),
            "units_in_stock": sum(sum(r.values()) for r in stock.values()),
            "geography": source,
            "seed": seed,
            "time_limit_s": time_limit_s,
        },
        "seconds": round(seconds, 3),
        "baseline_seconds": round(base.elapsed_ms / 1000.0, 3),
        "batch": {
            "total_cost": round(result.total_cost, 2),
            "shipments": result.shipments,
            "split_orders": result.split_orders,
            "unfulfilled_units": result.unfulfilled_units,
        },
        "greedy_one_by_one": {
            "total_cost": round(base.total_cost, 2),
            "shipments": base.shipments,
            "split_orders": base.split_orders,
            "unfulfilled_units": base.unfulfilled_units,
        },
        "avoidable_splits": result.avoidable_splits,
        "avoidable_splits_removed": result.avoidable_splits_removed,
        "avoidable_splits_removed_pct": round(removed_pct, 1),
        "solver": msgspec.to_builtins(result.solver),
        "targets": {
            "removed_pct_min": 100 * TARGET_REMOVED,
            "seconds_max": TARGET_SECONDS,
            "removed": "PASS" if removed_pct >= 100 * TARGET_REMOVED else "MISS",
            "time": "PASS" if seconds < TARGET_SECONDS else "MISS",
        },
        "machine": {"python": platform.python_version(), "platform": platform.platform()},
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
    }


def markdown(r: dict) -> str:
    i, b, g = r["instance"], r["batch"], r["greedy_one_by_one"]
    t = r["targets"]
    return "\n".join(
        [
            "# Batch planning benchmark",
            "",
            f"{i['orders']:,} orders over {i['nodes']} nodes ({i['warehouses']} warehouses), "
            f"{i['skus_ordered']:,} SKUs ordered, {i['units_ordered']:,} units ordered, "
            f"{i['units_in_stock']:,} in stock; geography: {i['geography']}; seed {i['seed']}.",
            "",
            "| | cost | shipments | split orders | unfulfilled units |",
            "|---|---:|---:|---:|---:|",
            f"| one-by-one greedy (`route`, cost) | {g['total_cost']:,.2f} | {g['shipments']:,} "
            f"| {g['split_orders']:,} | {g['unfulfilled_units']:,} |",
            f"| batch (`plan_batch`) | {b['total_cost']:,.2f} | {b['shipments']:,} "
            f"| {b['split_orders']:,} | {b['unfulfilled_units']:,} |",
            "",
            f"- time: {r['seconds']:.1f} s (baseline part {r['baseline_seconds']:.1f} s), "
            f"limit {i['time_limit_s']:.0f} s: **{t['time']}** (target < {t['seconds_max']:.0f} s)",
            f"- avoidable splits in the baseline: {r['avoidable_splits']:,}; removed by the batch: "
            f"{r['avoidable_splits_removed']:,} ({r['avoidable_splits_removed_pct']:.1f} %): "
            f"**{t['removed']}** (target >= {t['removed_pct_min']:.0f} %)",
            f"- search: {r['solver']['neighbourhoods']} neighbourhoods, "
            f"{r['solver']['improvements']} improved, {r['solver']['passes']} passes, "
            f"timed out: {r['solver']['timed_out']}",
            "",
            "Command: `"
            + " ".join(["python -m benchmarks.batch_bench", r.get("argv", "")]).strip()
            + "`",
            f"Run {r['date']} on Python {r['machine']['python']}, {r['machine']['platform']}.",
            "",
        ]
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--orders", type=int, default=10_000)
    parser.add_argument("--nodes", type=int, default=200)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--time-limit", type=float, default=55.0)
    parser.add_argument("--quick", action="store_true", help="1,000 orders over 50 nodes")
    args = parser.parse_args(argv)
    if args.quick:
        args.orders, args.nodes = 1_000, 50
    result = run(args.orders, args.nodes, args.time_limit, args.seed)
    result["argv"] = " ".join(sys.argv[1:] if argv is None else argv)
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "batch.json").write_text(json.dumps(result, indent=2) + "\n")
    md = markdown(result)
    (RESULTS / "batch.md").write_text(md)
    print(md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
