"""Prometheus metrics: request counts and latency histograms per route, ledger outcomes.

Each worker counts in memory and writes a snapshot to ``<dir>/<pid>.json`` every second; the
worker that serves ``/metrics`` adds up every snapshot written in the last minute (its own
counted live), so a scrape sees the whole service whichever worker answers it.
"""

from __future__ import annotations

import bisect
import json
import os
import time
from collections import defaultdict
from pathlib import Path

BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
STALE_S = 60.0
GAUGES = {
    "omnistock_projector_lag_events": "Ledger stream entries not yet in the journal.",
    "omnistock_live_streams": "Live availability streams open.",
}
SUMMED = frozenset({"omnistock_live_streams"})
"""Gauges each worker counts for itself: a scrape shows their sum, not the largest."""


class Metrics:
    def __init__(self, directory: Path | None = None) -> None:
        self._dir = directory
        self.requests: dict[tuple[str, str, str], int] = defaultdict(int)
        # (route, method) -> [bucket counts..., +Inf count, sum]
        self.latency: dict[tuple[str, str], list[float]] = {}
        self.outcomes: dict[str, int] = defaultdict(int)
        # Values every worker measures alike (the projector's lag): a scrape shows the largest;
        # those in SUMMED each worker counts for itself: a scrape shows their sum.
        self.gauges: dict[str, float] = {}

    def observe(self, route: str, method: str, status: int, seconds: float) -> None:
        self.requests[(route, method, str(status))] += 1
        row = self.latency.get((route, method))
        if row is None:
            row = self.latency[(route, method)] = [0.0] * (len(BUCKETS) + 2)
        row[bisect.bisect_left(BUCKETS, seconds)] += 1
        row[-1] += seconds

    def outcome(self, name: str, count: int = 1) -> None:
        self.outcomes[name] += count

    # -- sharing between workers ---------------------------------------------------------------

    def _snapshot(self) -> dict:
        return {
            "requests": [[*k, v] for k, v in self.requests.items()],
            "latency": [[*k, v] for k, v in self.latency.items()],
            "outcomes": dict(self.outcomes),
            "gauges": dict(self.gauges),
        }

    def flush(self) -> None:
        if self._dir is None:
            return
        self._dir.mkdir(parents=True, exist_ok=True)
        path = self._dir / f"{os.getpid()}.json"
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self._snapshot()))
        tmp.replace(path)

    def _merged(self) -> Metrics:
        total = Metrics()
        snapshots = [self._snapshot()]
        if self._dir is not None and self._dir.exists():
            now = time.time()
            for path in self._dir.glob("*.json"):
                if path.stem == str(os.getpid()):
                    continue
                try:
                    if now - path.stat().st_mtime > STALE_S:
                        continue
                    snapshots.append(json.loads(path.read_text()))
                except (OSError, ValueError):
                    continue
        for snap in snapshots:
            for route, method, status, count in snap["requests"]:
                total.requests[(route, method, status)] += count
            for route, method, row in snap["latency"]:
                mine = total.latency.setdefault((route, method), [0.0] * (len(BUCKETS) + 2))
                for i, value in enumerate(row):
                    mine[i] += value
            for name, count in snap["outcomes"].items():
                total.outcomes[name] += count
            for name, value in snap.get("gauges", {}).items():
                if name in SUMMED:
                    total.gauges[name] = total.gauges.get(name, 0) + value
                else:
                    total.gauges[name] = max(total.gauges.get(name, value), value)
        return total

    def render(self) -> str:
        m = self._merged()
        out = [
            "# HELP omnistock_http_requests_total HTTP requests by route, method and status.",
            "# TYPE omnistock_http_requests_total counter",
        ]
        for (route, method, status), count in sorted(m.requests.items()):
            out.append(
                f'omnistock_http_requests_total{{route="{route}",method="{method}",'
                f'status="{status}"}} {count}'
            )
        out += [
            "# HELP omnistock_http_request_duration_seconds HTTP request latency by route.",
            "# TYPE omnistock_http_request_duration_seconds histogram",
        ]
        for (route, method), row in sorted(m.latency.items()):
            labels = f'route="{route}",method="{method}"'
            cumulative = 0.0
            for bound, count in zip((*BUCKETS, "+Inf"), row[:-1], strict=True):
                cumulative += count
                out.append(
                    f'omnistock_http_request_duration_seconds_bucket{{{labels},le="{bound}"}} '
                    f"{int(cumulative)}"
                )
            out.append(f"omnistock_http_request_duration_seconds_sum{{{labels}}} {row[-1]:.6f}")
            out.append(
                f"omnistock_http_request_duration_seconds_count{{{labels}}} {int(cumulative)}"
            )
        out += [
            "# HELP omnistock_ledger_outcomes_total Ledger outcomes: reserved, short, replayed, "
            "committed, released, ordered, expired (by the sweeper), journaled (by the projector), "
            "dry_read (a read answered without writing, Valkey being at maxmemory).",
            "# TYPE omnistock_ledger_outcomes_total counter",
        ]
        for name, count in sorted(m.outcomes.items()):
            out.append(f'omnistock_ledger_outcomes_total{{outcome="{name}"}} {count}')
        for name, (help_text, value) in sorted(
            (n, (GAUGES.get(n, n), v)) for n, v in m.gauges.items()
        ):
            out += [f"# HELP {name} {help_text}", f"# TYPE {name} gauge", f"{name} {value:g}"]
        return "\n".join(out) + "\n"
