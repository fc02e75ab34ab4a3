"""Benchmark suite: runs every benchmark, then one table of headline figures and the plots.

``python -m benchmarks.suite`` runs, one after another (never two at once: each one's figures
are ratios against a peer measured in the same run, and two at once would share the cores),
``ledger``, ``http``, ``routing``, ``batch`` and ``peer``, each as its own subprocess
``python -m benchmarks.<name>_bench`` with its own options, and reads the JSON report each
writes to ``benchmarks/results/``. Then it writes ``suite.json`` and ``SUITE.md`` there: one
markdown table with a row per headline figure (benchmark, figure, omnistock's value, the peer's
value, their ratio, the target, whether it is met), with the machine, the date, and the date and
command of every report the table was built from; and PNG plots (``benchmarks.plots``).

The headline figures, and the peer each is measured against:

* ledger: ops/s of omnistock against the naive peer (the same function, one FCALL per
  operation) and against the ceiling (a trivial one-key script through the same client), per
  target (single server, 3-shard cluster);
* http: closed-loop req/s of reserve-release against its no-op POST, of availability against
  its no-op GET, and the paced p99 of each (judged at half of saturation) beside its no-op's;
* routing: p99 decision time at 500 nodes for orders of 1-5 lines, the mean gap to a proven
  optimum, and the saving against the ``closest`` rule;
* batch: total cost and shipments of batch planning against one-by-one greedy planning, the
  share of avoidable splits removed, and the time taken;
* peer: ops/s of omnistock against the PostgreSQL row-lock ledger on a hot SKU and on uniform
  SKUs, the p99 of each, and the oversell check.

Targets are reported, not asserted. The exit code is 1 when a benchmark that ran exited
non-zero (each does only on a correctness failure or an error); the table is written anyway.

Options: ``--only ledger,peer`` runs a subset (the table still covers every report present);
``--quick`` passes each benchmark its short options (the whole suite in a few minutes);
``--from-results`` runs nothing and rebuilds the table and plots from the JSON already there;
``--args NAME='...'`` adds options to one benchmark's command line.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import shlex
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmarks import plots

ROOT = Path(__file__).resolve().parent.parent
RESULTS_DIR = Path(__file__).resolve().parent / "results"


@dataclass(frozen=True)
class Benchmark:
    module: str
    out_flag: str | None
    """The option that names the results directory; None when the benchmark has none and
    always writes to ``benchmarks/results``."""
    quick: tuple[str, ...]


BENCHMARKS: dict[str, Benchmark] = {
    "ledger": Benchmark("benchmarks.ledger_bench", "--out", ("--quick", "--rounds", "1")),
    "http": Benchmark("benchmarks.http_bench", "--out", ("--quick",)),
    "routing": Benchmark("benchmarks.routing_bench", "--out", ("--quick",)),
    "batch": Benchmark("benchmarks.batch_bench", None, ("--quick", "--time-limit", "10")),
    "peer": Benchmark("benchmarks.peer_bench", "--results-dir", ("--quick",)),
}


# -- headline figures -----------------------------------------------------------------------


def row(
    benchmark: str,
    figure: str,
    unit: str,
    omnistock: float | None,
    peer: float | None = None,
    ratio: float | None = None,
    target: str | None = None,
    met: bool | None = None,
) -> dict[str, Any]:
    return {
        "benchmark": benchmark,
        "figure": figure,
        "unit": unit,
        "omnistock": omnistock,
        "peer": peer,
        "ratio": ratio,
        "target": target,
        "met": met,
    }


def _target(targets: Sequence[Mapping[str, Any]], prefix: str) -> Mapping[str, Any]:
    """The first entry of a report's target list whose name starts with ``prefix``."""
    for t in targets:
        if str(t.get("name", "")).startswith(prefix):
            return t
    return {}


def _goal(t: Mapping[str, Any], *, ratio: bool = False) -> str | None:
    """A report's goal as text: ``< 10 ms``; a ratio's as ``>= 0.60x``."""
    goal = t.get("goal")
    if goal is None:
        return None
    unit = str(t.get("unit", "")).strip()
    if ratio or unit == "x":
        return f"{goal}x"
    return f"{goal} {unit}".strip()


def ledger_rows(r: Mapping[str, Any]) -> list[dict[str, Any]]:
    rows = []
    for t in r["targets"]:
        arms, ratios, goals = t["arms"], t["ratios"], t["targets"]
        ours = arms["omnistock"]["ops_per_s"]
        rows += [
            row(
                "ledger",
                f"{t['target']}: ops/s vs naive peer (one FCALL per op)",
                "ops/s",
                ours,
                arms["naive"]["ops_per_s"],
                ratios["omnistock_vs_naive"],
                f">= {goals['vs_naive']['goal']:g}x",
                goals["vs_naive"]["pass"],
            ),
            row(
                "ledger",
                f"{t['target']}: ops/s vs ceiling (trivial script, same client)",
                "ops/s",
                ours,
                arms["ceiling"]["ops_per_s"],
                ratios["omnistock_vs_ceiling"],
                f">= {goals['vs_ceiling']['goal']:g}x",
                goals["vs_ceiling"]["pass"],
            ),
        ]
    return rows


def http_rows(r: Mapping[str, Any]) -> list[dict[str, Any]]:
    sc, ratios, targets = r["scenarios"], r["ratios"], r["targets"]
    rows = []
    for scenario, noop in (("reserve-release", "noop-post"), ("availability", "noop-get")):
        t = _target(targets, f"{scenario} / {noop} throughput")
        rows.append(
            row(
                "http",
                f"{scenario}: req/s vs {noop} (closed loop)",
                "req/s",
                sc[scenario]["throughput_rps"],
                sc[noop]["throughput_rps"],
                ratios[f"{scenario}_vs_{noop}"],
                _goal(t, ratio=True),
                t.get("met"),
            )
        )
    level = r["paced"]["levels"][0]
    for scenario, noop in (("reserve-release", "noop-post"), ("availability", "noop-get")):
        paced = level["scenarios"]
        t = _target(targets, f"{scenario} p99 at")
        rows.append(
            row(
                "http",
                f"{scenario}: paced p99 at {level['label']} (peer: {noop})",
                "ms",
                paced[scenario]["p99_ms"],
                paced[noop]["p99_ms"],
                None,
                _goal(t),
                t.get("met"),
            )
        )
    return rows


def routing_rows(r: Mapping[str, Any]) -> list[dict[str, Any]]:
    t = r["targets"]
    p99, gap = t["p99_ms_500_nodes_1_5_lines"], t["mean_gap_pct"]
    rows = [
        row(
            "routing",
            "p99 decision time, 500 nodes, 1-5 lines",
            "ms",
            p99["value"],
            target=f"< {p99['target']:g} ms",
            met=p99["pass"],
        ),
        row(
            "routing",
            "mean gap to a proven optimum",
            "%",
            gap["value"],
            target=f"< {gap['target']:g} %",
            met=gap["pass"],
        ),
    ]
    for size in r["sizes"]:
        if size["nodes"] == 500:
            rows.append(
                row(
                    "routing",
                    "cost saving vs the `closest` rule, 500 nodes (mean per order)",
                    "%",
                    size["savings"]["closest"]["mean_pct"],
                )
            )
    return rows


def batch_rows(r: Mapping[str, Any]) -> list[dict[str, Any]]:
    b, g, t = r["batch"], r["greedy_one_by_one"], r["targets"]
    orders = r["instance"]["orders"]
    rows = [
        row(
            "batch",
            f"total cost, {orders:,} orders (peer: one-by-one greedy; lower is better)",
            "",
            b["total_cost"],
            g["total_cost"],
            b["total_cost"] / g["total_cost"] if g["total_cost"] else None,
        ),
        row(
            "batch",
            "shipments (peer: one-by-one greedy; lower is better)",
            "",
            b["shipments"],
            g["shipments"],
            b["shipments"] / g["shipments"] if g["shipments"] else None,
        ),
        row(
            "batch",
            "avoidable split shipments removed",
            "%",
            r["avoidable_splits_removed_pct"],
            target=f">= {t['removed_pct_min']:g} %",
            met=t["removed"] == "PASS",
        ),
        row(
            "batch",
            "wall time, baseline included",
            "s",
            r["seconds"],
            target=f"< {t['seconds_max']:g} s",
            met=t["time"] == "PASS",
        ),
    ]
    return rows


def peer_rows(r: Mapping[str, Any]) -> list[dict[str, Any]]:
    rows = []
    labels = {"hot": "hot SKU", "uniform": f"uniform, {r['config']['skus']:,} SKUs"}
    for (workload, w), t in zip(r["workloads"].items(), r["targets"], strict=True):
        ours, theirs = w["arms"]["omnistock"], w["arms"]["peer"]
        label = labels.get(workload, workload)
        rows += [
            row(
                "peer",
                f"{label}: ops/s vs PostgreSQL row locks",
                "ops/s",
                ours["ops_per_s"],
                theirs["ops_per_s"],
                w["ratio"],
                _goal(t),
                t["met"],
            ),
            row(
                "peer",
                f"{label}: p99 per operation",
                "ms",
                ours["p99_ms"],
                theirs["p99_ms"],
            ),
        ]
    over = r["oversell"]
    if {"omnistock", "peer"} <= set(over):
        rows.append(
            row(
                "peer",
                f"units oversold, {over['omnistock']['on_hand']} on hand, "
                f"{over['omnistock']['tasks']} tasks reserving until refused",
                "",
                over["omnistock"]["oversold"],
                over["peer"]["oversold"],
                target="0, every unit sold",
                met=over["omnistock"]["ok"] and over["peer"]["ok"],
            )
        )
    return rows


EXTRACTORS: dict[str, Callable[[Mapping[str, Any]], list[dict[str, Any]]]] = {
    "ledger": ledger_rows,
    "http": http_rows,
    "routing": routing_rows,
    "batch": batch_rows,
    "peer": peer_rows,
}


def headline_rows(results: Mapping[str, Mapping[str, Any]]) -> tuple[list[dict], list[str]]:
    """Every headline row of the reports at hand, in suite order, and a note for each report
    that could not be read (its rows are left out, the others kept)."""
    rows: list[dict[str, Any]] = []
    notes = []
    for name, extract in EXTRACTORS.items():
        if name not in results:
            continue
        try:
            rows += extract(results[name])
        except (KeyError, TypeError, ValueError, IndexError, ZeroDivisionError) as exc:
            notes.append(f"{name}.json: not read ({type(exc).__name__}: {exc})")
    return rows, notes


def correctness(results: Mapping[str, Mapping[str, Any]]) -> dict[str, str]:
    """What each report says about its own correctness checks (the benchmarks' exit codes
    depend on them), in a few words."""
    out = {}
    if "ledger" in results:
        left = sum(
            r["reserved_left"]
            for t in results["ledger"].get("targets", [])
            for a in t["arms"].values()
            for r in a["rounds"]
        )
        out["ledger"] = f"units left reserved: {left}"
    if "http" in results:
        h = results["http"]
        out["http"] = (
            f"units left reserved: {h.get('reserved_left')}; problems: {len(h.get('problems', []))}"
        )
    if "peer" in results:
        p = results["peer"]
        oks = {name: s.get("ok") for name, s in p.get("oversell", {}).items()}
        out["peer"] = f"oversell checks passed: {oks}; problems: {len(p.get('problems', []))}"
    return out


# -- formatting -----------------------------------------------------------------------------


def fmt(value: float | None, unit: str) -> str:
    if value is None:
        return ""
    if unit in ("ops/s", "req/s"):
        return f"{value:,.0f}"
    if unit == "ms":
        return f"{value:.2f} ms"
    if unit == "%":
        return f"{value:.2f} %"
    if unit == "s":
        return f"{value:.1f} s"
    if isinstance(value, float) and not value.is_integer():
        return f"{value:,.2f}"
    return f"{value:,.0f}"


def fmt_ratio(ratio: float | None) -> str:
    if ratio is None:
        return ""
    return f"{ratio:.1f}x" if ratio >= 10 else f"{ratio:.2f}x"


def fmt_met(met: bool | None) -> str:
    return "" if met is None else ("yes" if met else "**no**")


def markdown_table(rows: Sequence[Mapping[str, Any]]) -> str:
    out = [
        "| benchmark | figure | omnistock | peer | ratio | target | met? |",
        "| --- | --- | ---: | ---: | ---: | --- | --- |",
    ]
    for r in rows:
        out.append(
            f"| {r['benchmark']} | {r['figure']} | {fmt(r['omnistock'], r['unit'])} | "
            f"{fmt(r['peer'], r['unit'])} | {fmt_ratio(r['ratio'])} | {r['target'] or ''} | "
            f"{fmt_met(r['met'])} |"
        )
    return "\n".join(out) + "\n"


def suite_markdown(report: Mapping[str, Any]) -> str:
    m = report["machine"]
    out = [
        "# Benchmark suite",
        "",
        f"Built {report['date']} on {m['cpu_count']} CPUs, {m['platform']}, Python "
        f"{m['python']}. Every ratio compares omnistock with a peer measured in the same run "
        "(arms interleaved in rounds, medians), because the machine is shared; the reports "
        "below may come from different runs, each with its own date.",
        "",
        markdown_table(report["rows"]),
        "## Sources",
        "",
        "| benchmark | report | date | command | this run |",
        "| --- | --- | --- | --- | --- |",
    ]
    for name, s in report["sources"].items():
        run = report["runs"].get(name)
        ran = (
            f"exit {run['exit_code']} after {run['seconds']:.0f} s"
            if run
            else "not run (report reused)"
        )
        out.append(
            f"| {name} | `{s['file']}` | {s.get('date') or '?'} | "
            f"`{s.get('command') or '?'}` | {ran} |"
        )
    out.append("")
    if report["correctness"]:
        out += [
            "Correctness, as each report records it: "
            + "; ".join(f"{k}: {v}" for k, v in report["correctness"].items())
            + ".",
            "",
        ]
    if report["notes"]:
        out += ["Notes: " + "; ".join(report["notes"]) + ".", ""]
    drawn = [f"`{Path(p).name}`" for p in report["plots"].values() if str(p).endswith(".png")]
    if drawn:
        out += ["Plots: " + ", ".join(drawn) + ".", ""]
    return "\n".join(out)


# -- reading the reports --------------------------------------------------------------------


def _command(name: str, report: Mapping[str, Any]) -> str | None:
    config = report.get("config")
    if isinstance(config, Mapping) and config.get("command"):
        return str(config["command"])
    module = BENCHMARKS[name].module
    if "argv" in report:  # batch_bench records only its arguments
        return f"python -m {module} {report['argv']}".strip()
    if isinstance(config, Mapping) and "quick" in config:  # routing_bench records its options
        return f"python -m {module}{' --quick' if config['quick'] else ''}"
    return None


def load_results(results_dir: Path) -> tuple[dict[str, dict], dict[str, dict], list[str]]:
    """Every report present: (reports by name, their sources, notes on the missing/unreadable)."""
    results, sources, notes = {}, {}, []
    for name in BENCHMARKS:
        path = results_dir / f"{name}.json"
        if not path.exists():
            notes.append(f"no {path.name}")
            continue
        try:
            report = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError) as exc:
            notes.append(f"{path.name}: unreadable ({exc})")
            continue
        results[name] = report
        sources[name] = {
            "file": str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else str(path),
            "date": report.get("date"),
            "command": _command(name, report),
        }
    return results, sources, notes


def build(results_dir: Path, runs: Mapping[str, Any]) -> dict[str, Any]:
    """Reads the reports, writes suite.json, SUITE.md and the plots; returns the suite report."""
    results, sources, notes = load_results(results_dir)
    rows, unread = headline_rows(results)
    plotted = plots.write_all(results, results_dir)
    notes += unread + [f"{name}.png {p}" for name, p in plotted.items() if isinstance(p, str)]
    report = {
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "machine": {
            "cpu_count": os.cpu_count(),
            "platform": platform.platform(),
            "python": platform.python_version(),
            "load_average": [round(x, 2) for x in os.getloadavg()],
        },
        "runs": dict(runs),
        "sources": sources,
        "rows": rows,
        "correctness": correctness(results),
        "plots": {name: p.name if isinstance(p, Path) else p for name, p in plotted.items()},
        "notes": notes,
    }
    results_dir.mkdir(parents=True, exist_ok=True)
    (results_dir / "suite.json").write_text(json.dumps(report, indent=2) + "\n")
    (results_dir / "SUITE.md").write_text(suite_markdown(report))
    return report


# -- running --------------------------------------------------------------------------------


def command(name: str, *, quick: bool, results_dir: Path, extra: Sequence[str]) -> list[str]:
    bench = BENCHMARKS[name]
    argv = [sys.executable, "-m", bench.module, *(bench.quick if quick else ())]
    if bench.out_flag and results_dir != RESULTS_DIR:
        argv += [bench.out_flag, str(results_dir)]
    return argv + list(extra)


def run_one(name: str, argv: Sequence[str], results_dir: Path) -> dict[str, Any]:
    print(f"\n== {name}: {shlex.join(argv[1:])}", file=sys.stderr, flush=True)
    started = time.perf_counter()
    code = subprocess.call(argv, cwd=ROOT)
    seconds = time.perf_counter() - started
    if BENCHMARKS[name].out_flag is None and results_dir != RESULTS_DIR:
        # No option names its results directory: its report is copied from the default one.
        for suffix in (".json", ".md"):
            src = RESULTS_DIR / f"{name}{suffix}"
            if src.exists():
                shutil.copy2(src, results_dir / src.name)
    print(f"== {name}: exit {code} after {seconds:.0f} s", file=sys.stderr, flush=True)
    return {"command": shlex.join(argv[1:]), "exit_code": code, "seconds": seconds}


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m benchmarks.suite", description=__doc__.split("\n")[0]
    )
    p.add_argument("--only", default="", help=f"comma-separated subset of {','.join(BENCHMARKS)}")
    p.add_argument("--quick", action="store_true", help="each benchmark's short options")
    p.add_argument(
        "--from-results", action="store_true", help="run nothing: rebuild table and plots"
    )
    p.add_argument(
        "--args",
        action="append",
        default=[],
        metavar="NAME=ARGS",
        help="extra options for one benchmark, e.g. --args peer='--seconds 3' (repeatable)",
    )
    p.add_argument("--results-dir", type=Path, default=RESULTS_DIR, help="reports and outputs")
    a = p.parse_args(argv)
    only = [n.strip() for n in a.only.split(",") if n.strip()]
    unknown = [n for n in only if n not in BENCHMARKS]
    if unknown:
        p.error(f"--only: unknown {unknown}; known: {list(BENCHMARKS)}")
    a.only = only or list(BENCHMARKS)
    extra: dict[str, list[str]] = {}
    for item in a.args:
        name, sep, rest = item.partition("=")
        if not sep or name not in BENCHMARKS:
            p.error(f"--args: expected NAME=ARGS with NAME one of {list(BENCHMARKS)}: {item!r}")
        extra.setdefault(name, []).extend(shlex.split(rest))
    a.extra = extra
    a.results_dir = a.results_dir.resolve()
    return a


def main(argv: Sequence[str] | None = None) -> int:
    a = parse_args(argv)
    runs: dict[str, Any] = {}
    if not a.from_results:
        a.results_dir.mkdir(parents=True, exist_ok=True)
        for name in a.only:
            cmd = command(
                name, quick=a.quick, results_dir=a.results_dir, extra=a.extra.get(name, ())
            )
            runs[name] = run_one(name, cmd, a.results_dir)
    report = build(a.results_dir, runs)
    print(suite_markdown(report))
    failed = {name: r["exit_code"] for name, r in runs.items() if r["exit_code"] != 0}
    if failed:
        print(f"SUITE: benchmarks exited non-zero: {failed}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
