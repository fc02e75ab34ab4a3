"""The HTTP benchmark runs end to end against a real ``omnistock serve``, closed loop and paced,
and reports its verdicts (the targets are not checked here: throughput and latency on a shared
machine say nothing about correctness, but a failed run, a non-2xx answer or a reservation left
behind does)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SCENARIOS = ("noop-get", "noop-post", "availability", "reserve-release")
VERDICT_LINES = (
    "reserve-release / noop-post throughput:",
    "availability / noop-get throughput:",
    "reserve-release p99 at 50% of saturation (",
    "availability p99 at 50% of saturation (",
    "reserve-release closed-loop p99 at saturation (",
    "availability closed-loop p99 at saturation (",
    "## Paced (open loop, below saturation)",
    "Other work on the machine during the measured windows",
)


def test_quick_http_benchmark_runs_clean_and_prints_its_verdicts(tmp_path: Path) -> None:
    argv = ["--quick", "--workers", "1", "--out", str(tmp_path)]
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks.http_bench", *argv],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=180,
    )

    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-5000:]
    for line in VERDICT_LINES:
        assert line in done.stdout, line
    for scenario in ("reserve-release", "availability"):
        [verdict] = [
            line
            for line in done.stdout.splitlines()
            if line.startswith(f"- {scenario} p99 at 50% of saturation (")
        ]
        assert " req/s offered): " in verdict, verdict
        assert verdict.endswith(("(target < 10): met", "(target < 10): not met")), verdict
    report = json.loads((tmp_path / "http.json").read_text())
    assert report["reserved_left"] == 0
    assert report["problems"] == []
    for scenario in SCENARIOS:
        [only_round] = report["scenarios"][scenario]["rounds"]
        assert only_round["mode"] == "closed", scenario
        assert only_round["requests"] > 0, scenario
        assert only_round["ok"] == only_round["requests"], scenario
    [level] = report["paced"]["levels"]
    assert level["fraction"] == 0.5
    for scenario in SCENARIOS:
        figures = level["scenarios"][scenario]
        closed = report["scenarios"][scenario]["throughput_rps"]
        assert abs(figures["offered_rps"] - 0.5 * closed) <= 1, scenario
        assert figures["p99_ms"] is not None, scenario
        [only_round] = figures["rounds"]
        assert only_round["mode"] == "paced", scenario
        assert only_round["requests"] > 0, scenario
        assert only_round["ok"] == only_round["requests"], scenario
        assert only_round["achieved_rps"] > 0, scenario
