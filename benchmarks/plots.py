"""Plots of the benchmark results: pure functions from a benchmark's JSON report to a PNG file.

matplotlib with the Agg backend (no display needed). Each function takes the report as its
benchmark wrote it (``benchmarks/results/<name>.json``) and the path to write, and returns that
path; ``write_all`` draws every plot whose report is at hand. The suite (``benchmarks.suite``)
calls them after its runs, or alone with ``--from-results``.

* ``peer.png``: ops/s of omnistock and of the PostgreSQL row-lock peer per workload, log scale,
  the ratio written over each pair;
* ``http.png``: req/s of each API scenario beside its no-op peer (closed loop), with the ratio;
* ``routing.png``: decision time p50/p99 against network size per order-size bucket, log x,
  with the p99 target;
* ``ledger.png``: ops/s of omnistock, the naive peer and the two ceilings, per target;
* ``batch.png``: cost and shipments of batch planning against one-by-one greedy planning.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

OMNISTOCK = "#1f77b4"
PEER = "#aaaaaa"
TARGET = "#c00000"


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig: Any, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=100, format="png")
    _pyplot().close(fig)
    return path


def _paired_bars(
    ax: Any,
    groups: list[str],
    ours: list[float],
    theirs: list[float],
    labels: tuple[str, str],
    ratio_fmt: str,
) -> None:
    """Two bars per group, each with its value on top, the ratio ours/theirs over the pair."""
    width = 0.38
    xs = list(range(len(groups)))
    for offset, values, label, color in (
        (-width / 2, ours, labels[0], OMNISTOCK),
        (width / 2, theirs, labels[1], PEER),
    ):
        bars = ax.bar([x + offset for x in xs], values, width, label=label, color=color)
        ax.bar_label(bars, labels=[f"{v:,.0f}" for v in values], fontsize=7, padding=1)
    ax.set_xticks(xs, groups)
    for x, a, b in zip(xs, ours, theirs, strict=True):
        if b > 0:
            ax.annotate(
                ratio_fmt.format(a / b),
                (x, max(a, b)),
                textcoords="offset points",
                xytext=(0, 12),
                ha="center",
                fontsize=9,
                fontweight="bold",
            )


def peer_plot(report: Mapping[str, Any], path: Path) -> Path:
    plt = _pyplot()
    workloads = list(report["workloads"])
    ours = [report["workloads"][w]["arms"]["omnistock"]["ops_per_s"] for w in workloads]
    theirs = [report["workloads"][w]["arms"]["peer"]["ops_per_s"] for w in workloads]
    fig, ax = plt.subplots(figsize=(6, 3.8))
    _paired_bars(ax, workloads, ours, theirs, ("omnistock", "PostgreSQL row locks"), "{:.1f}x")
    ax.set_yscale("log")
    ax.set_ylim(min(ours + theirs) / 3, max(ours + theirs) * 5)
    ax.set_ylabel("ops/s (log scale)")
    tasks = report.get("config", {}).get("tasks", "?")
    ax.set_title(f"reserve + release, {tasks} tasks, every write fsync'd", fontsize=10)
    ax.legend(fontsize=8, loc="upper right")
    return _save(fig, path)


HTTP_PAIRS = (("reserve-release", "noop-post"), ("availability", "noop-get"))


def http_plot(report: Mapping[str, Any], path: Path) -> Path:
    plt = _pyplot()
    scenarios = report["scenarios"]
    pairs = [(s, p) for s, p in HTTP_PAIRS if s in scenarios and p in scenarios]
    ours = [scenarios[s]["throughput_rps"] for s, _ in pairs]
    theirs = [scenarios[p]["throughput_rps"] for _, p in pairs]
    fig, ax = plt.subplots(figsize=(6, 3.8))
    _paired_bars(
        ax,
        [f"{s}\nvs {p}" for s, p in pairs],
        ours,
        theirs,
        ("scenario", "no-op peer (same bytes, no ledger)"),
        "{:.2f}x",
    )
    ax.set_ylim(top=max(ours + theirs) * 1.25)
    ax.set_ylabel("req/s (closed loop)")
    conns = report.get("config", {}).get("connections", "?")
    ax.set_title(f"HTTP API at saturation, {conns} connections", fontsize=10)
    ax.legend(fontsize=8, loc="upper left")
    return _save(fig, path)


def routing_plot(report: Mapping[str, Any], path: Path) -> Path:
    plt = _pyplot()
    sizes = report["sizes"]
    nodes = [s["nodes"] for s in sizes]
    fig, ax = plt.subplots(figsize=(6, 3.8))
    for bucket in ("1-5", "6-10"):
        for key, style in (("p50_ms", "--o"), ("p99_ms", "-o")):
            ys = [s["buckets"].get(bucket, {}).get(key) for s in sizes]
            if all(y is not None for y in ys):
                ax.plot(nodes, ys, style, label=f"{key[:3]}, {bucket} lines")
    goal = report.get("targets", {}).get("p99_ms_500_nodes_1_5_lines", {}).get("target")
    if goal is not None:
        ax.axhline(
            goal,
            color=TARGET,
            linestyle=":",
            label=f"target p99 at 500 nodes, 1-5 lines (< {goal:g} ms)",
        )
    ax.set_xscale("log")
    ax.set_xticks(nodes, [str(n) for n in nodes])
    ax.set_xlabel("nodes in the network")
    ax.set_ylabel("decision time, ms")
    ax.set_title("route() decision time per network size", fontsize=10)
    ax.legend(fontsize=8)
    return _save(fig, path)


LEDGER_ARMS = ("omnistock", "naive", "bare", "ceiling", "ceiling_batched")


def ledger_plot(report: Mapping[str, Any], path: Path) -> Path:
    plt = _pyplot()
    targets = report["targets"]
    fig, ax = plt.subplots(figsize=(6, 3.8))
    width = 0.8 / len(LEDGER_ARMS)
    colors = (OMNISTOCK, PEER, "#9467bd", "#ff7f0e", "#2ca02c")
    for j, (arm, color) in enumerate(zip(LEDGER_ARMS, colors, strict=True)):
        xs = [i + (j - (len(LEDGER_ARMS) - 1) / 2) * width for i in range(len(targets))]
        ys = [t["arms"][arm]["ops_per_s"] if arm in t["arms"] else 0 for t in targets]
        ax.bar(xs, ys, width, label=arm, color=color)
    ax.set_xticks(range(len(targets)), [t["target"] for t in targets])
    ax.set_ylabel("ops/s")
    ax.set_title("ledger reserve + release, strict durability", fontsize=10)
    ax.legend(fontsize=8)
    return _save(fig, path)


def batch_plot(report: Mapping[str, Any], path: Path) -> Path:
    plt = _pyplot()
    batch, greedy = report["batch"], report["greedy_one_by_one"]
    figures = ("total_cost", "shipments", "split_orders")
    fig, axes = plt.subplots(1, len(figures), figsize=(7, 3.2))
    for ax, name in zip(axes, figures, strict=True):
        ax.bar(["greedy", "batch"], [greedy[name], batch[name]], color=[PEER, OMNISTOCK])
        ax.set_title(name.replace("_", " "), fontsize=9)
        if greedy[name]:
            ax.annotate(
                f"{batch[name] / greedy[name]:.2f}x",
                (1, batch[name]),
                textcoords="offset points",
                xytext=(0, 3),
                ha="center",
                fontsize=8,
            )
    orders = report.get("instance", {}).get("orders", "?")
    fig.suptitle(f"{orders} orders: batch planning vs one by one", fontsize=10)
    return _save(fig, path)


PLOTS: dict[str, Callable[[Mapping[str, Any], Path], Path]] = {
    "peer": peer_plot,
    "http": http_plot,
    "routing": routing_plot,
    "ledger": ledger_plot,
    "batch": batch_plot,
}


def write_all(results: Mapping[str, Mapping[str, Any]], out: Path) -> dict[str, Path | str]:
    """One plot per report at hand, ``<name>.png`` in ``out``; a report the plot cannot read
    is named with the reason instead of stopping the others."""
    written: dict[str, Path | str] = {}
    for name, plot in PLOTS.items():
        if name not in results:
            continue
        try:
            written[name] = plot(results[name], out / f"{name}.png")
        except (KeyError, TypeError, ValueError, IndexError) as exc:
            written[name] = f"not drawn: {type(exc).__name__}: {exc}"
    return written
