"""The suite's table and plots are pure functions of the benchmarks' JSON reports: checked here
on small hand-written reports shaped like the real ones, with no benchmark run."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from benchmarks import plots, suite

PNG = b"\x89PNG\r\n\x1a\n"


def _arm(ops: float, p99: float = 3.0) -> dict[str, Any]:
    return {"ops_per_s": ops, "p50_ms": p99 / 2, "p99_ms": p99, "rounds": [{"reserved_left": 0}]}


def ledger_report() -> dict[str, Any]:
    return {
        "date": "2026-01-01T00:00:00+00:00",
        "config": {"command": "python -m benchmarks.ledger_bench"},
        "targets": [
            {
                "target": "single",
                "arms": {
                    "omnistock": _arm(20000),
                    "naive": _arm(8000),
                    "ceiling": _arm(50000),
                    "ceiling_batched": _arm(80000),
                },
                "ratios": {"omnistock_vs_naive": 2.5, "omnistock_vs_ceiling": 0.4},
                "targets": {
                    "vs_naive": {"goal": 2.0, "pass": True},
                    "vs_ceiling": {"goal": 0.7, "pass": False},
                },
            }
        ],
    }


def http_report() -> dict[str, Any]:
    scenarios = {"reserve-release": 6000, "noop-post": 12000, "availability": 13000}
    scenarios |= {"noop-get": 22000}
    paced = {name: {"p99_ms": 5.0 + i} for i, name in enumerate(scenarios)}
    return {
        "date": "2026-01-02T00:00:00+00:00",
        "config": {"command": "python -m benchmarks.http_bench", "connections": 64},
        "scenarios": {name: {"throughput_rps": rps} for name, rps in scenarios.items()},
        "ratios": {"reserve-release_vs_noop-post": 0.5, "availability_vs_noop-get": 13 / 22},
        "targets": [
            {
                "name": "reserve-release / noop-post throughput",
                "value": 0.5,
                "unit": "",
                "goal": ">= 0.60",
                "met": False,
            },
            {
                "name": "availability / noop-get throughput",
                "value": 0.59,
                "unit": "",
                "goal": ">= 0.70",
                "met": False,
            },
            {
                "name": "reserve-release p99 at 50% of saturation (3000 req/s offered)",
                "value": 5.0,
                "unit": " ms",
                "goal": "< 10",
                "met": True,
            },
            {
                "name": "availability p99 at 50% of saturation (6500 req/s offered)",
                "value": 7.0,
                "unit": " ms",
                "goal": "< 10",
                "met": True,
            },
        ],
        "paced": {"levels": [{"label": "50% of saturation", "scenarios": paced}]},
        "reserved_left": 0,
        "problems": [],
    }


def routing_report() -> dict[str, Any]:
    def size(nodes: int, p99: float) -> dict[str, Any]:
        buckets = {b: {"p50_ms": p99 / 10, "p99_ms": p99} for b in ("1-5", "6-10", "all")}
        return {
            "nodes": nodes,
            "buckets": buckets,
            "savings": {"closest": {"mean_pct": 12.0}},
        }

    return {
        "benchmark": "routing",
        "date": "2026-01-03T00:00:00+00:00",
        "config": {"quick": True},
        "sizes": [size(50, 4.0), size(500, 2.5), size(2000, 11.0)],
        "targets": {
            "p99_ms_500_nodes_1_5_lines": {"value": 2.5, "target": 10.0, "pass": True},
            "mean_gap_pct": {"value": 0.0, "target": 0.1, "pass": True},
        },
    }


def batch_report() -> dict[str, Any]:
    return {
        "date": "2026-01-04T00:00:00+00:00",
        "argv": "--quick",
        "instance": {"orders": 1000},
        "seconds": 12.5,
        "batch": {"total_cost": 900.0, "shipments": 1100, "split_orders": 100},
        "greedy_one_by_one": {"total_cost": 1000.0, "shipments": 1200, "split_orders": 180},
        "avoidable_splits_removed_pct": 55.0,
        "targets": {
            "removed_pct_min": 40.0,
            "seconds_max": 60.0,
            "removed": "PASS",
            "time": "PASS",
        },
    }


def peer_report() -> dict[str, Any]:
    def workload(ours: float, theirs: float) -> dict[str, Any]:
        return {
            "arms": {"omnistock": _arm(ours, 5.0), "peer": _arm(theirs, 400.0)},
            "ratio": ours / theirs,
            "per_round_ratio": [ours / theirs],
        }

    def oversell(ok: bool) -> dict[str, Any]:
        return {"on_hand": 100, "tasks": 64, "oversold": 0 if ok else 3, "ok": ok}

    return {
        "benchmark": "peer",
        "date": "2026-01-05T00:00:00+00:00",
        "config": {"command": "python -m benchmarks.peer_bench", "skus": 10000, "tasks": 64},
        "workloads": {"hot": workload(20000, 500), "uniform": workload(25000, 2500)},
        "targets": [
            {"name": "hot", "value": 40.0, "unit": "x", "goal": ">= 25", "met": True},
            {"name": "uniform", "value": 10.0, "unit": "x", "goal": "> 1", "met": True},
        ],
        "oversell": {"omnistock": oversell(True), "peer": oversell(True)},
        "problems": [],
    }


REPORTS = {
    "ledger": ledger_report,
    "http": http_report,
    "routing": routing_report,
    "batch": batch_report,
    "peer": peer_report,
}


def _by_figure(rows: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {f"{r['benchmark']}: {r['figure']}": r for r in rows}


def test_headline_rows_take_each_figure_against_its_peer_with_its_target() -> None:
    rows, notes = suite.headline_rows({name: make() for name, make in REPORTS.items()})

    assert notes == []
    assert [r["benchmark"] for r in rows] == sorted(
        (r["benchmark"] for r in rows), key=list(REPORTS).index
    )
    by = _by_figure(rows)
    naive = by["ledger: single: ops/s vs naive peer (one FCALL per op)"]
    assert (naive["omnistock"], naive["peer"], naive["ratio"]) == (20000, 8000, 2.5)
    assert (naive["target"], naive["met"]) == (">= 2x", True)
    assert by["ledger: single: ops/s vs ceiling (trivial script, same client)"]["met"] is False
    rr = by["http: reserve-release: req/s vs noop-post (closed loop)"]
    assert (rr["omnistock"], rr["peer"], rr["target"], rr["met"]) == (
        6000,
        12000,
        ">= 0.60x",
        False,
    )
    paced = by["http: reserve-release: paced p99 at 50% of saturation (peer: noop-post)"]
    assert (paced["omnistock"], paced["peer"], paced["target"], paced["met"]) == (
        5.0,
        6.0,
        "< 10 ms",
        True,
    )
    p99 = by["routing: p99 decision time, 500 nodes, 1-5 lines"]
    assert (p99["omnistock"], p99["target"], p99["met"]) == (2.5, "< 10 ms", True)
    cost = by["batch: total cost, 1,000 orders (peer: one-by-one greedy; lower is better)"]
    assert (cost["omnistock"], cost["peer"], cost["ratio"]) == (900.0, 1000.0, 0.9)
    hot = by["peer: hot SKU: ops/s vs PostgreSQL row locks"]
    assert (hot["ratio"], hot["target"], hot["met"]) == (40.0, ">= 25x", True)
    uniform = by["peer: uniform, 10,000 SKUs: ops/s vs PostgreSQL row locks"]
    assert (uniform["ratio"], uniform["target"]) == (10.0, "> 1x")
    oversold = [r for r in rows if r["figure"].startswith("units oversold")]
    assert [(r["omnistock"], r["peer"], r["met"]) for r in oversold] == [(0, 0, True)]


def test_a_failed_oversell_check_is_a_missed_row() -> None:
    report = peer_report()
    report["oversell"]["peer"] = {"on_hand": 100, "tasks": 64, "oversold": 3, "ok": False}

    rows, _ = suite.headline_rows({"peer": report})

    [oversold] = [r for r in rows if r["figure"].startswith("units oversold")]
    assert (oversold["peer"], oversold["met"]) == (3, False)


def test_an_unreadable_report_is_noted_and_the_others_kept() -> None:
    broken = peer_report()
    del broken["workloads"]

    rows, notes = suite.headline_rows({"peer": broken, "batch": batch_report()})

    assert {r["benchmark"] for r in rows} == {"batch"}
    assert len(notes) == 1 and notes[0].startswith("peer.json: not read (KeyError")


def test_markdown_table_has_one_line_per_row_with_formatted_figures() -> None:
    rows, _ = suite.headline_rows({"peer": peer_report(), "routing": routing_report()})

    table = suite.markdown_table(rows).splitlines()

    assert table[0] == "| benchmark | figure | omnistock | peer | ratio | target | met? |"
    assert len(table) == 2 + len(rows)
    assert (
        "| peer | hot SKU: ops/s vs PostgreSQL row locks | 20,000 | 500 | 40.0x | >= 25x | yes |"
        in table
    )
    assert "| routing | mean gap to a proven optimum | 0.00 % |  |  | < 0.1 % | yes |" in table


@pytest.mark.parametrize("name", list(plots.PLOTS))
def test_each_plot_writes_a_png(name: str, tmp_path: Path) -> None:
    path = plots.PLOTS[name](REPORTS[name](), tmp_path / f"{name}.png")

    assert path == tmp_path / f"{name}.png"
    assert path.read_bytes().startswith(PNG)


def test_build_from_results_writes_table_json_and_plots(tmp_path: Path) -> None:
    for name in ("peer", "batch", "routing"):
        (tmp_path / f"{name}.json").write_text(json.dumps(REPORTS[name]()))
    (tmp_path / "http.json").write_text("{not json")

    report = suite.build(tmp_path, runs={})

    saved = json.loads((tmp_path / "suite.json").read_text())
    assert saved["rows"] == report["rows"] and len(saved["rows"]) > 0
    assert set(saved["sources"]) == {"peer", "batch", "routing"}
    assert saved["sources"]["batch"]["command"] == "python -m benchmarks.batch_bench --quick"
    assert saved["sources"]["routing"]["command"] == "python -m benchmarks.routing_bench --quick"
    assert any(n.startswith("http.json: unreadable") for n in saved["notes"])
    assert "no ledger.json" in saved["notes"]
    for name in ("peer", "batch", "routing"):
        assert (tmp_path / f"{name}.png").read_bytes().startswith(PNG)
    md = (tmp_path / "SUITE.md").read_text()
    assert "| peer | hot SKU: ops/s vs PostgreSQL row locks |" in md
    assert "2026-01-05T00:00:00+00:00" in md  # each source's own date


def test_from_results_runs_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "peer.json").write_text(json.dumps(peer_report()))
    monkeypatch.setattr(suite, "run_one", lambda *a: pytest.fail("ran a benchmark"))

    code = suite.main(["--from-results", "--results-dir", str(tmp_path)])

    assert code == 0
    assert (tmp_path / "SUITE.md").exists() and (tmp_path / "peer.png").exists()


def test_quick_commands_pass_each_benchmark_its_short_options(tmp_path: Path) -> None:
    default = suite.command(
        "peer", quick=True, results_dir=suite.RESULTS_DIR, extra=["--tasks", "8"]
    )
    elsewhere = suite.command("ledger", quick=False, results_dir=tmp_path, extra=())

    assert default[1:] == ["-m", "benchmarks.peer_bench", "--quick", "--tasks", "8"]
    assert elsewhere[1:] == ["-m", "benchmarks.ledger_bench", "--out", str(tmp_path)]
