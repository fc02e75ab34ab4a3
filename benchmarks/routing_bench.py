"""Routing benchmark: decision time, gap to a proven optimum, and savings against the rules.

For each network size (50, 500 and 2,000 nodes; `--quick`: 50 and 500) a network, a long-tail
stock snapshot and a set of orders of 1 to 10 lines are generated on real US geography
(`benchmarks.geo`, seeded). Then, per order:

* decision time: `time.perf_counter` around `route(network, stock, order)` with the defaults
  (`strategy="cost"`, 50 ms deterministic budget), so model building and solving are included;
  each order is timed `--repeats` times (3; the plan is deterministic) and its median kept, to
  damp noise on a shared machine; p50 / p99 per order-size bucket (1-5, 6-10 lines), overall
  and per solver status;
* the same order under `closest` and `priority`; the saving of `cost` is
  `(rule_cost - cost) / rule_cost`, over orders that both plans fulfil in full;
* for an evenly spaced sample (`--gap-sample`), a reference optimum: `route(...,
  time_limit_ms=--gap-ms, deterministic=False)`; when that run cannot prove optimality because
  the engine capped its candidates (`pruned_may_lose_optimum`), the unpruned CP-SAT model is
  solved instead, with the same time limit (through engine internals; skipped if they change).
  Gaps are taken only against proven optima: `(cost - optimum) / optimum`.

Prints a markdown table, writes `routing.json`, `routing.md` and `routing.svg` (or `routing.png`
when matplotlib is installed) to `--out`. Targets (reported, not asserted; exit code 0):
p99 < 10 ms at 500 nodes for orders of up to 5 lines; mean gap to the optimum < 0.1 %.
"""

from __future__ import annotations

import argparse
import datetime as dt
import gc
import json
import math
import os
import platform
import sys
import time
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import msgspec
import numpy as np

from benchmarks import geo
from omnistock.routing import Network, Plan, RouteRequest, route

RESULTS_DIR = Path(__file__).resolve().parent / "results"
SIZES = (50, 500, 2000)
QUICK_SIZES = (50, 500)
BUCKETS = (("1-5", 1, 5), ("6-10", 6, 10))
TARGET_P99_MS = 10.0
TARGET_P99_SIZE = 500
TARGET_P99_BUCKET = "1-5"
TARGET_MEAN_GAP_PCT = 0.1
WARMUP_ORDERS = 5


def _pct(values: Sequence[float], q: float) -> float | None:
    return float(np.percentile(np.asarray(values, dtype=float), q)) if values else None


def _mean(values: Sequence[float]) -> float | None:
    return float(np.mean(values)) if values else None


def _units(plan: Plan) -> int:
    return sum(line.qty for s in plan.shipments for line in s.lines)


def _full_model_optimum(
    network: Network, stock: dict[str, dict[str, int]], order: RouteRequest, limit_ms: float
) -> tuple[float, int, bool] | None:
    """(cost, units, proven) of the unpruned CP-SAT model, or None if the internals moved."""
    try:
        from omnistock.routing import cpsat, engine, greedy

        skus, qtys, store = engine._validate(network, order)
        problem = engine._problem(network, stock, order, skus, qtys, store)
        hint = greedy.warm_start(problem, order.strategy)
        result = cpsat.solve(problem, order.strategy, hint, limit_ms, deterministic=False)
    except (ImportError, AttributeError, TypeError):
        return None
    if result.alloc is None:
        return None
    return problem.cost(result.alloc), int(result.alloc.sum()), bool(result.optimal)


def _reference(
    network: Network, stock: dict[str, dict[str, int]], order: RouteRequest, limit_ms: float
) -> dict[str, Any]:
    started = time.perf_counter()
    long = route(network, stock, order, time_limit_ms=limit_ms, deterministic=False)
    ref: dict[str, Any] = {
        "source": "route_long",
        "cost": long.total_cost,
        "units": _units(long),
        "proven": long.solver.optimal,
        "status": long.solver.status,
    }
    if not long.solver.optimal and long.solver.pruned_may_lose_optimum:
        full = _full_model_optimum(network, stock, order, limit_ms)
        if full is not None:
            cost, units, proven = full
            ref.update(source="full_model", cost=cost, units=units, proven=proven)
    ref["seconds"] = time.perf_counter() - started
    return ref


def bench_size(
    n_nodes: int,
    n_orders: int,
    gap_sample: int,
    gap_ms: float,
    seed: int,
    repeats: int = 1,
    log=print,
) -> dict[str, Any]:
    t0 = time.perf_counter()
    network = geo.build_network(n_nodes, seed)
    n_skus = geo.default_skus(n_nodes)
    stock = geo.build_stock(network, n_skus, seed)
    orders = geo.build_orders(network, n_orders + WARMUP_ORDERS, n_skus, seed)
    build_s = time.perf_counter() - t0
    warmup, orders = orders[:WARMUP_ORDERS], orders[WARMUP_ORDERS:]
    for order in warmup:
        route(network, stock, order)

    rows: list[dict[str, Any]] = []
    gc.collect()
    for i, order in enumerate(orders):
        times = []
        for _ in range(repeats):
            started = time.perf_counter()
            plan = route(network, stock, order)
            times.append((time.perf_counter() - started) * 1000.0)
        ms = float(np.median(times))
        closest = route(network, stock, msgspec.structs.replace(order, strategy="closest"))
        priority = route(network, stock, msgspec.structs.replace(order, strategy="priority"))
        rows.append(
            {
                "i": i,
                "lines": len(order.lines),
                "ms": ms,
                "cost": plan.total_cost,
                "units": _units(plan),
                "full": not plan.unfulfilled,
                "shipments": len(plan.shipments),
                "status": plan.solver.status,
                "optimal": plan.solver.optimal,
                "capped": plan.solver.pruned_may_lose_optimum,
                "candidates": plan.solver.candidates,
                "closest": closest.total_cost if not closest.unfulfilled else None,
                "priority": priority.total_cost if not priority.unfulfilled else None,
            }
        )

    # Gap to a proven optimum on an evenly spaced sample.
    sample = sorted({round(k * len(orders) / gap_sample) for k in range(gap_sample)})
    sample = [k for k in sample if k < len(orders)] if gap_sample else []
    gaps: list[dict[str, Any]] = []
    for k in sample:
        ref = _reference(network, stock, orders[k], gap_ms)
        row = rows[k]
        entry = {"i": k, "lines": row["lines"], "status": row["status"], **ref}
        entry["cost_default"] = row["cost"]
        entry["default_proven"] = row["optimal"]
        if ref["proven"] and ref["units"] == row["units"] and ref["cost"] > 0:
            entry["gap_pct"] = (row["cost"] - ref["cost"]) / ref["cost"] * 100.0
        elif ref["proven"] and ref["units"] != row["units"]:
            entry["gap_pct"] = None
            entry["note"] = f"units differ: default {row['units']}, reference {ref['units']}"
        else:
            entry["gap_pct"] = None
        gaps.append(entry)

    result: dict[str, Any] = {
        "nodes": n_nodes,
        "warehouses": geo.warehouse_count(n_nodes),
        "skus": n_skus,
        "stock_entries": sum(len(v) for v in stock.values()),
        "orders": len(orders),
        "generate_s": round(build_s, 3),
        "buckets": {},
    }
    for name, lo, hi in (*BUCKETS, ("all", 1, 10)):
        ms = [r["ms"] for r in rows if lo <= r["lines"] <= hi]
        result["buckets"][name] = {
            "orders": len(ms),
            "p50_ms": _pct(ms, 50),
            "p99_ms": _pct(ms, 99),
            "max_ms": max(ms) if ms else None,
        }
    result["by_status"] = {}
    label = lambda r: r["status"] + (", capped" if r["capped"] else "")  # noqa: E731
    for status in sorted({label(r) for r in rows}):
        ms = [r["ms"] for r in rows if label(r) == status]
        result["by_status"][status] = {
            "orders": len(ms),
            "p50_ms": _pct(ms, 50),
            "p99_ms": _pct(ms, 99),
            "max_ms": max(ms),
        }
    proven_gaps = [g["gap_pct"] for g in gaps if g["gap_pct"] is not None]
    result["gap"] = {
        "sample": len(gaps),
        "reference_proven": sum(1 for g in gaps if g["proven"]),
        "reference_from_full_model": sum(1 for g in gaps if g["source"] == "full_model"),
        "compared": len(proven_gaps),
        "default_proven_in_sample": sum(1 for g in gaps if g["default_proven"]),
        "mean_pct": _mean(proven_gaps),
        "worst_pct": max(proven_gaps) if proven_gaps else None,
        "nonzero": sum(1 for g in proven_gaps if g > 1e-9),
        "orders": gaps,
    }
    savings: dict[str, Any] = {}
    for rule in ("closest", "priority"):
        both = [r for r in rows if r["full"] and r[rule] is not None and r[rule] > 0]
        pct = [(r[rule] - r["cost"]) / r[rule] * 100.0 for r in both]
        savings[rule] = {
            "orders": len(both),
            "mean_pct": _mean(pct),
            "median_pct": _pct(pct, 50),
            "orders_cheaper": sum(1 for p in pct if p > 1e-9),
            "orders_dearer": sum(1 for p in pct if p < -1e-9),
        }
    result["savings"] = savings
    result["solver"] = {
        "status": dict(Counter(r["status"] for r in rows)),
        "proven_optimal": sum(1 for r in rows if r["optimal"]),
        "capped_candidates": sum(1 for r in rows if r["capped"]),
        "fully_fulfilled": sum(1 for r in rows if r["full"]),
        "median_candidates": _pct([r["candidates"] for r in rows], 50),
        "max_candidates": max((r["candidates"] for r in rows), default=0),
    }
    slowest = sorted(rows, key=lambda r: -r["ms"])[:5]
    result["slowest"] = [
        {k: r[k] for k in ("i", "lines", "ms", "status", "optimal", "candidates")} for r in slowest
    ]
    log(
        f"  {n_nodes} nodes: {len(orders)} orders, {len(gaps)} gap runs in "
        f"{time.perf_counter() - t0:.1f} s"
    )
    return result


def _f(value: float | None, digits: int = 2) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def _targets(sizes: list[dict[str, Any]]) -> dict[str, Any]:
    at = next((s for s in sizes if s["nodes"] == TARGET_P99_SIZE), None)
    p99 = at["buckets"][TARGET_P99_BUCKET]["p99_ms"] if at else None
    gaps = [g["gap_pct"] for s in sizes for g in s["gap"]["orders"] if g["gap_pct"] is not None]
    mean_gap = _mean(gaps)
    return {
        "p99_ms_500_nodes_1_5_lines": {
            "value": p99,
            "target": TARGET_P99_MS,
            "pass": p99 is not None and p99 < TARGET_P99_MS,
        },
        "mean_gap_pct": {
            "value": mean_gap,
            "target": TARGET_MEAN_GAP_PCT,
            "pass": mean_gap is not None and mean_gap < TARGET_MEAN_GAP_PCT,
        },
    }


def markdown(report: dict[str, Any]) -> str:
    out = [
        "| nodes | lines | orders | p50 ms | p99 ms | max ms |",
        "|---:|---:|---:|---:|---:|---:|",
    ]
    for s in report["sizes"]:
        for name, b in s["buckets"].items():
            out.append(
                f"| {s['nodes']} | {name} | {b['orders']} | {_f(b['p50_ms'])} | "
                f"{_f(b['p99_ms'])} | {_f(b['max_ms'])} |"
            )
    out += [
        "",
        "| nodes | proven optimal (all orders) | gap: compared / sample | default proven "
        "in sample | mean gap % | worst gap % | saving vs closest % | saving vs priority % |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for s in report["sizes"]:
        g, sv = s["gap"], s["savings"]
        out.append(
            f"| {s['nodes']} | {s['solver']['proven_optimal']}/{s['orders']} | "
            f"{g['compared']}/{g['sample']} | {g['default_proven_in_sample']}/{g['sample']} | "
            f"{_f(g['mean_pct'], 4)} | {_f(g['worst_pct'], 4)} | "
            f"{_f(sv['closest']['mean_pct'])} (n={sv['closest']['orders']}) | "
            f"{_f(sv['priority']['mean_pct'])} (n={sv['priority']['orders']}) |"
        )
    out += [
        "",
        "| nodes | solver status | orders | p50 ms | p99 ms | max ms |",
        "|---:|---|---:|---:|---:|---:|",
    ]
    for s in report["sizes"]:
        for status, b in s["by_status"].items():
            out.append(
                f"| {s['nodes']} | {status} | {b['orders']} | {_f(b['p50_ms'])} | "
                f"{_f(b['p99_ms'])} | {_f(b['max_ms'])} |"
            )
    out.append("")
    for name, t in report["targets"].items():
        verdict = "PASS" if t["pass"] else "MISS"
        out.append(f"- {verdict} {name}: {_f(t['value'], 4)} (target < {t['target']})")
    return "\n".join(out) + "\n"


def svg_plot(report: dict[str, Any]) -> str:
    """A dependency-free grouped bar chart: p50 / p99 per size and order-size bucket."""
    series = [
        ("1-5", "p50_ms", "#9ecae1", "p50, 1-5 lines"),
        ("1-5", "p99_ms", "#3182bd", "p99, 1-5 lines"),
        ("6-10", "p50_ms", "#fdae6b", "p50, 6-10 lines"),
        ("6-10", "p99_ms", "#e6550d", "p99, 6-10 lines"),
    ]
    sizes = report["sizes"]
    values = [s["buckets"][b][k] or 0.0 for s in sizes for b, k, _, _ in series]
    top = max([*values, TARGET_P99_MS]) * 1.15
    w, h, left, bottom, topm, right = 560, 300, 50, 40, 20, 150
    pw, ph = w - left - right, h - bottom - topm
    y = lambda v: topm + ph - v / top * ph  # noqa: E731
    group = pw / max(len(sizes), 1)
    bar = group * 0.8 / len(series)
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" '
        f'font-family="sans-serif" font-size="11">',
        f'<text x="{left}" y="13">route() decision time (ms) per network size</text>',
        f'<line x1="{left}" y1="{topm + ph}" x2="{left + pw}" y2="{topm + ph}" stroke="#000"/>',
        f'<line x1="{left}" y1="{topm}" x2="{left}" y2="{topm + ph}" stroke="#000"/>',
    ]
    step = 10 ** math.floor(math.log10(top / 2)) if top > 0 else 1
    tick = 0.0
    while tick <= top:
        parts.append(
            f'<text x="{left - 4}" y="{y(tick) + 4:.1f}" text-anchor="end">{tick:g}</text>'
            f'<line x1="{left}" y1="{y(tick):.1f}" x2="{left + pw}" y2="{y(tick):.1f}" '
            f'stroke="#eee"/>'
        )
        tick += step
    for i, s in enumerate(sizes):
        x0 = left + i * group + group * 0.1
        for j, (b, k, color, _) in enumerate(series):
            v = s["buckets"][b][k] or 0.0
            parts.append(
                f'<rect x="{x0 + j * bar:.1f}" y="{y(v):.1f}" width="{bar * 0.95:.1f}" '
                f'height="{topm + ph - y(v):.1f}" fill="{color}"><title>{v:.2f} ms</title></rect>'
            )
        parts.append(
            f'<text x="{x0 + group * 0.4:.1f}" y="{topm + ph + 15}" text-anchor="middle">'
            f"{s['nodes']} nodes</text>"
        )
    ty = y(TARGET_P99_MS)
    parts.append(
        f'<line x1="{left}" y1="{ty:.1f}" x2="{left + pw}" y2="{ty:.1f}" stroke="#c00" '
        f'stroke-dasharray="4 3"/>'
    )
    lx = left + pw + 10
    legend = [(c, label) for _, _, c, label in series] + [("#c00", "target p99 (500, 1-5)")]
    for j, (color, label) in enumerate(legend):
        parts.append(
            f'<rect x="{lx}" y="{topm + j * 16}" width="10" height="10" fill="{color}"/>'
            f'<text x="{lx + 14}" y="{topm + j * 16 + 9}">{label}</text>'
        )
    parts.append("</svg>")
    return "\n".join(parts) + "\n"


def _plot(report: dict[str, Any], out: Path) -> Path:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        path = out / "routing.svg"
        path.write_text(svg_plot(report))
        return path
    fig, ax = plt.subplots(figsize=(6, 3.5))
    sizes = [s["nodes"] for s in report["sizes"]]
    for bucket in ("1-5", "6-10"):
        for key, style in (("p50_ms", "--o"), ("p99_ms", "-o")):
            ys = [s["buckets"][bucket][key] for s in report["sizes"]]
            ax.plot(sizes, ys, style, label=f"{key[:3]}, {bucket} lines")
    ax.axhline(TARGET_P99_MS, color="red", linestyle=":", label="target p99")
    ax.set_xscale("log")
    ax.set_xlabel("nodes")
    ax.set_ylabel("ms")
    ax.legend(fontsize=8)
    path = out / "routing.png"
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="sizes 50 and 500, few orders")
    parser.add_argument("--orders", type=int, default=None, help="orders per size (300; quick 20)")
    parser.add_argument("--gap-sample", type=int, default=None, help="gap runs per size (100; 5)")
    parser.add_argument(
        "--repeats", type=int, default=None, help="timed runs per order, median kept (3; 1)"
    )
    parser.add_argument("--gap-ms", type=float, default=2000.0, help="reference time limit")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=RESULTS_DIR)
    args = parser.parse_args(argv)
    n_orders = args.orders or (20 if args.quick else 300)
    gap_sample = args.gap_sample if args.gap_sample is not None else (5 if args.quick else 100)
    gap_sample = min(gap_sample, n_orders)
    repeats = max(1, args.repeats or (1 if args.quick else 3))
    sizes = QUICK_SIZES if args.quick else SIZES

    started = time.perf_counter()
    print(f"routing benchmark: sizes {list(sizes)}, {n_orders} orders each, seed {args.seed}")
    results = [bench_size(n, n_orders, gap_sample, args.gap_ms, args.seed, repeats) for n in sizes]
    report: dict[str, Any] = {
        "benchmark": "routing",
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "config": {
            "quick": args.quick,
            "orders": n_orders,
            "gap_sample": gap_sample,
            "gap_ms": args.gap_ms,
            "repeats": repeats,
            "seed": args.seed,
            "route_defaults": {"time_limit_ms": 50.0, "deterministic": True},
            "geography": "contiguous US, 2,000 largest cities (GeoNames, CC BY 4.0)",
        },
        "machine": {
            "python": platform.python_version(),
            "platform": platform.platform(),
            "cpu_count": os.cpu_count(),
        },
        "sizes": results,
    }
    report["targets"] = _targets(results)
    report["runtime_s"] = round(time.perf_counter() - started, 1)

    args.out.mkdir(parents=True, exist_ok=True)
    table = markdown(report)
    (args.out / "routing.json").write_text(json.dumps(report, indent=2) + "\n")
    header = (
        f"# Routing benchmark\n\n`python -m benchmarks.routing_bench"
        f"{' --quick' if args.quick else ''}` ({report['date']}, {report['runtime_s']} s, "
        f"{os.cpu_count()} CPUs, shared machine). Decision time is wall clock around "
        f"`route()` (default strategy `cost`, 50 ms deterministic budget), model building "
        f"included, median of {repeats} run(s) per order. Networks: contiguous US, GeoNames "
        f"cities (`benchmarks/geo.py`), seed {args.seed}. Gaps are against optima proven by a "
        f"{args.gap_ms:g} ms non-deterministic `route()` run, or, where the engine capped its "
        f"candidates (and so cannot prove optimality), by the unpruned CP-SAT model with the "
        f"same limit.\n\n"
    )
    (args.out / "routing.md").write_text(header + table)
    plot = _plot(report, args.out)
    print(table, end="")
    print(f"wrote {args.out / 'routing.json'}, routing.md, {plot.name} in {report['runtime_s']} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
