"""`python -m load.run` end to end, small: it starts its own `omnistock serve`, seeds 50 SKUs
over a few nodes, runs locust (as a subprocess, never imported here) for 8 s with the flash-sale
shape, and prints the SLO verdict and the stock checks. Latency objectives are relaxed to what
any machine meets (this is about the machinery, not the numbers); failures are not."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
TIMEOUT_S = 150


def test_load_run_small_flash_sale(tmp_path: Path) -> None:
    slo_file = tmp_path / "slo.toml"
    slo_file.write_text("error_rate = 0.001\n[p99_ms]\ndefault = 5000\n")
    results = tmp_path / "results"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OMNISTOCK_", "LOAD_"))}
    done = subprocess.run(
        [
            sys.executable, "-m", "load.run",
            "--duration", "8s", "--users", "6", "--spawn-rate", "6", "--shape", "flash",
            "--skus", "50", "--stores", "8", "--warehouses", "1", "--hot", "2",
            "--workers", "1", "--slo-file", str(slo_file), "--results", str(results),
        ],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=TIMEOUT_S,
    )  # fmt: skip
    out = done.stdout + done.stderr
    assert done.returncode == 0, out
    for name in ("load_stats.csv", "load_failures.csv", "report.html", "manifest.json"):
        assert (results / name).stat().st_size > 0, name
    assert "POST,/v1/orders," in (results / "load_stats.csv").read_text()
    assert "seeded 9 nodes, 50 SKUs" in out
    assert "SLO verdict: PASS" in out
    assert "error rate: 0/" in out
    assert "oversold check:" in out and "0 with reserved + held > on_hand: ok" in out
    assert "conservation check:" in out and "0 mismatches: ok" in out
    assert "OVERALL: PASS" in out
    assert "OVERALL: PASS" in (results / "verdict.txt").read_text()
    assert "flash sale: spike phase" in (results / "locust.log").read_text()
    assert list(results.glob("changes-*.jsonl"))
    assert "server stopped (exit 0)" in out
