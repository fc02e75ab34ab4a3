"""The ledger benchmark runs end to end and writes a complete report (its targets are not checked
here: throughput on a shared machine says nothing about correctness)."""

from __future__ import annotations

import json
from pathlib import Path

from benchmarks import ledger_bench

ARM_FIGURES = (
    "ops_per_s",
    "p50_ms",
    "p99_ms",
    "client_cpu_usec_per_op",
    "script_usec_per_op",
    "server_cpu_usec_per_op",
)


def test_quick_benchmark_reports_every_arm_and_leaves_no_stock_reserved(tmp_path: Path) -> None:
    argv = ["--seconds", "0.3", "--warmup", "0.1", "--rounds", "1", "--no-cluster"]
    code = ledger_bench.main([*argv, "--out", str(tmp_path)])

    assert code == 0
    report = json.loads((tmp_path / "ledger.json").read_text())
    assert report["machine"]["durability"] == "strict"
    assert report["machine"]["cpu_count"] >= 1
    assert report["machine"]["allocator"] == "mimalloc"
    [single] = report["targets"]
    assert single["target"] == "single"
    assert single["appendfsync"] == "always"
    assert set(single["arms"]) == {"omnistock", "bare", "ceiling", "ceiling_batched", "naive"}
    for arm in single["arms"].values():
        for figure in ARM_FIGURES:
            assert arm[figure] > 0, figure
        assert arm["p99_ms"] >= arm["p50_ms"]
        [only_round] = arm["rounds"]
        assert only_round["ops"] > 0
        assert only_round["script_calls"] > 0
        assert only_round["reserved_left"] == 0
    assert single["ratios"]["omnistock_vs_naive"] > 0
    assert single["ratios"]["omnistock_vs_ceiling"] > 0
    assert single["ratios"]["omnistock_vs_ceiling_batched"] > 0
    assert single["ratios"]["bare_vs_ceiling"] > 0
    fresh = single["reserve_only"]
    assert fresh["reserves"] > 0
    assert fresh["reserve_script_usec_per_op"] > 0
    assert fresh["release_script_usec_per_op"] > 0
    assert "| single | omnistock |" in (tmp_path / "ledger.md").read_text()
