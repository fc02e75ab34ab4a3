"""The HTTP benchmark runs end to end against a real ``omnistock serve`` and reports its ratios
(their targets are not checked here: throughput on a shared machine says nothing about
correctness, but a failed run, a non-2xx answer or a reservation left behind does)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
RATIO_LINES = (
    "reserve-release / noop-post throughput:",
    "availability / noop-get throughput:",
    "reserve-release p99 ms:",
    "availability p99 ms:",
)


def test_quick_http_benchmark_runs_clean_and_prints_its_ratios(tmp_path: Path) -> None:
    argv = ["--quick", "--workers", "1", "--out", str(tmp_path)]
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks.http_bench", *argv],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=180,
    )

    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-5000:]
    for line in RATIO_LINES:
        assert line in done.stdout, line
    report = json.loads((tmp_path / "http.json").read_text())
    assert report["reserved_left"] == 0
    assert report["problems"] == []
    for scenario in ("noop-get", "noop-post", "availability", "reserve-release"):
        [only_round] = report["scenarios"][scenario]["rounds"]
        assert only_round["requests"] > 0, scenario
        assert only_round["ok"] == only_round["requests"], scenario
