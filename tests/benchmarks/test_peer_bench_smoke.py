"""The peer benchmark runs end to end in quick mode against its own Valkey and PostgreSQL, passes
its correctness checks and writes its report where it is told (its targets are not checked here:
throughput on a shared machine says nothing about correctness)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_quick_peer_benchmark_runs_clean_and_writes_its_report(tmp_path: Path) -> None:
    committed = ROOT / "benchmarks" / "results" / "peer.json"
    before = committed.stat().st_mtime_ns if committed.exists() else None
    argv = ["--quick", "--seconds", "0.5", "--skus", "2000", "--results-dir", str(tmp_path)]
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks.peer_bench", *argv],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=180,
    )

    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-5000:]
    report = json.loads((tmp_path / "peer.json").read_text())
    assert report["problems"] == []
    assert report["machine"]["durability"]["omnistock"] == "strict (appendfsync always)"
    assert report["machine"]["durability"]["peer"].startswith("fsync on, synchronous_commit on")
    assert set(report["workloads"]) == {"hot", "uniform"}
    for workload in report["workloads"].values():
        assert workload["ratio"] > 0
        for arm in ("omnistock", "peer"):
            figures = workload["arms"][arm]
            assert figures["ops_per_s"] > 0
            assert 0 < figures["p50_ms"] <= figures["p99_ms"]
            [only_round] = figures["rounds"]
            assert only_round["reserved_left"] == 0
    for store in ("omnistock", "peer"):
        check = report["oversell"][store]
        assert check["ok"], check
        assert check["successful_reserves"] == check["on_hand"] == check["reserved_read_back"]
        assert check["oversold"] == 0
    assert [t["goal"] for t in report["targets"]] == [">= 25", "> 1"]
    assert "| hot | peer |" in (tmp_path / "peer.md").read_text()
    assert (committed.stat().st_mtime_ns if committed.exists() else None) == before
