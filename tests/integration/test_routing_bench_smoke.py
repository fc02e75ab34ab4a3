"""The routing benchmark runs end to end in quick mode and writes a sane report (its targets are
not checked here: timings on a shared machine say nothing about correctness)."""

from __future__ import annotations

import json
from pathlib import Path

from benchmarks import routing_bench


def test_quick_routing_benchmark_writes_a_sane_report(tmp_path: Path) -> None:
    argv = ["--quick", "--orders", "12", "--gap-sample", "3", "--gap-ms", "500"]
    code = routing_bench.main([*argv, "--out", str(tmp_path)])

    assert code == 0
    report = json.loads((tmp_path / "routing.json").read_text())
    assert [s["nodes"] for s in report["sizes"]] == [50, 500]
    for size in report["sizes"]:
        assert size["orders"] == 12
        buckets = size["buckets"]
        assert buckets["1-5"]["orders"] + buckets["6-10"]["orders"] == 12
        assert 0 < buckets["all"]["p50_ms"] <= buckets["all"]["p99_ms"] <= buckets["all"]["max_ms"]
        assert sum(b["orders"] for b in size["by_status"].values()) == 12
        gap = size["gap"]
        assert gap["sample"] == 3
        assert gap["compared"] <= gap["reference_proven"] <= gap["sample"]
        if gap["compared"]:
            # The default plan can never beat a proven optimum (beyond float noise).
            assert gap["mean_pct"] >= -1e-6
            assert gap["worst_pct"] >= gap["mean_pct"] - 1e-9
        for rule in ("closest", "priority"):
            saving = size["savings"][rule]
            assert 0 <= saving["orders"] <= 12
            if saving["orders"]:
                # `cost` minimises cost, so on average it never loses to a rule.
                assert saving["mean_pct"] >= -1e-6
    assert set(report["targets"]) == {"p99_ms_500_nodes_1_5_lines", "mean_gap_pct"}
    markdown = (tmp_path / "routing.md").read_text()
    assert "| 500 | 1-5 |" in markdown
    assert "PASS" in markdown or "MISS" in markdown
    plots = list(tmp_path.glob("routing.png")) + list(tmp_path.glob("routing.svg"))
    assert plots and plots[0].stat().st_size > 0
    if plots[0].suffix == ".svg":
        assert plots[0].read_text().lstrip().startswith("<svg")
