"""The projector benchmark runs end to end in a short round and writes a complete report (its
figures are not checked here: CPU time on a shared machine says nothing about correctness; the
benchmark itself fails when a round's events are not journaled exactly once)."""

from __future__ import annotations

import json
from pathlib import Path

from benchmarks import projector_bench


def test_short_projector_benchmark_journals_every_event_once_and_reports_both_arms(
    tmp_path: Path,
) -> None:
    code = projector_bench.main(
        ["--seconds", "1", "--rounds", "1", "--rate", "500", "--out", str(tmp_path)]
    )

    assert code == 0
    report = json.loads((tmp_path / "projector.json").read_text())
    assert set(report["arms"]) == {"linger", "eager"}
    for arm in report["arms"].values():
        [only_round] = arm["rounds"]
        assert only_round["events"] > 0
        assert only_round["batches"] > 0
        assert only_round["cpu_usec_per_event"] > 0
    assert report["linger_vs_eager_cpu"] > 0
    assert "| linger | 25 |" in (tmp_path / "projector.md").read_text()
