"""The verdict of a load run: p99 per endpoint and the error rate against their objectives.

Pure functions over the text of locust's `<prefix>_stats.csv` (one row per request type and
name, then `Aggregated`; latencies in ms, percentiles in columns `50%` ... `100%`, `N/A` when
a row has no requests) and an SLO config (`load/slo.toml`: `error_rate` and a `[p99_ms]`
table with a `default`).
"""

from __future__ import annotations

import csv
import io
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from load.outcomes import IN_PROGRESS_SUFFIX, SUFFIX, Outcome

DEFAULT_SLO_FILE = Path(__file__).with_name("slo.toml")
SHORT_SUFFIX = SUFFIX[Outcome.SHORT]
CONFLICT_SUFFIX = SUFFIX[Outcome.CONFLICT]
EXPECTED_SUFFIXES = (SHORT_SUFFIX, CONFLICT_SUFFIX, IN_PROGRESS_SUFFIX)


@dataclass
class Slo:
    error_rate: float = 0.001
    p99_ms: dict[str, float] = field(default_factory=lambda: {"default": 250.0})

    def p99_for(self, endpoint: str) -> float | None:
        return self.p99_ms.get(endpoint, self.p99_ms.get("default"))


def load_slo(path: Path = DEFAULT_SLO_FILE, overrides: list[str] | tuple[str, ...] = ()) -> Slo:
    """The SLOs of a TOML file, then `KEY=VALUE` overrides: `error_rate=0.01`,
    `default=300` or `"POST /v1/orders=300"` (an endpoint's p99 in ms)."""
    with path.open("rb") as f:
        data = tomllib.load(f)
    slo = Slo(
        error_rate=float(data.get("error_rate", 0.001)),
        p99_ms={str(k): float(v) for k, v in data.get("p99_ms", {}).items()},
    )
    for item in overrides:
        key, sep, value = item.rpartition("=")
        if not sep or not key.strip():
            raise ValueError(f"an SLO override is KEY=VALUE, not {item!r}")
        key = key.strip()
        if key == "error_rate":
            slo.error_rate = float(value)
        else:
            slo.p99_ms[key] = float(value)
    return slo


@dataclass(frozen=True)
class Row:
    method: str
    name: str
    requests: int
    failures: int
    p50_ms: float | None
    p99_ms: float | None

    @property
    def endpoint(self) -> str:
        """ "METHOD name" without the suffix of an expected outcome."""
        name = self.name
        for suffix in EXPECTED_SUFFIXES:
            name = name.removesuffix(suffix)
        return f"{self.method} {name}"

    @property
    def label(self) -> str:
        return f"{self.method} {self.name}"


def _ms(text: str) -> float | None:
    text = (text or "").strip()
    return None if text in ("", "N/A") else float(text)


def parse_stats(text: str) -> tuple[list[Row], Row | None]:
    """The rows of a `_stats.csv` and its `Aggregated` row."""
    rows: list[Row] = []
    total: Row | None = None
    for r in csv.DictReader(io.StringIO(text)):
        row = Row(
            method=r["Type"],
            name=r["Name"],
            requests=int(r["Request Count"]),
            failures=int(r["Failure Count"]),
            p50_ms=_ms(r["50%"]),
            p99_ms=_ms(r["99%"]),
        )
        if r["Name"] == "Aggregated":
            total = row
        else:
            rows.append(row)
    return rows, total


@dataclass(frozen=True)
class Judged:
    row: Row
    slo_p99_ms: float | None
    ok: bool


@dataclass
class Verdict:
    rows: list[Judged]
    requests: int
    failures: int
    error_rate: float
    error_rate_slo: float
    shortages: dict[str, int]  # endpoint -> 409 short answers
    conflicts: dict[str, int]  # endpoint -> 409 illegal-transition answers (expected races)

    @property
    def error_rate_ok(self) -> bool:
        return self.requests > 0 and self.error_rate <= self.error_rate_slo

    @property
    def latency_ok(self) -> bool:
        return all(j.ok for j in self.rows)

    @property
    def ok(self) -> bool:
        return self.error_rate_ok and self.latency_ok


def judge(rows: list[Row], total: Row | None, slo: Slo) -> Verdict:
    judged = []
    for row in rows:
        objective = slo.p99_for(row.endpoint)
        ok = objective is None or row.p99_ms is None or row.p99_ms <= objective
        judged.append(Judged(row, objective, ok))
    requests = total.requests if total else sum(r.requests for r in rows)
    failures = total.failures if total else sum(r.failures for r in rows)
    shortages: dict[str, int] = {}
    conflicts: dict[str, int] = {}
    for row in rows:
        if row.name.endswith(SHORT_SUFFIX):
            shortages[row.endpoint] = shortages.get(row.endpoint, 0) + row.requests
        elif row.name.endswith(CONFLICT_SUFFIX):
            conflicts[row.endpoint] = conflicts.get(row.endpoint, 0) + row.requests
    return Verdict(
        rows=judged,
        requests=requests,
        failures=failures,
        error_rate=failures / requests if requests else 0.0,
        error_rate_slo=slo.error_rate,
        shortages=shortages,
        conflicts=conflicts,
    )


def _fmt_ms(value: float | None) -> str:
    return "-" if value is None else f"{value:g}"


def render(verdict: Verdict) -> str:
    """The verdict as a plain-text table and summary lines."""
    header = ("endpoint", "requests", "fails", "p50 ms", "p99 ms", "SLO p99", "ok")
    table = [header]
    for j in verdict.rows:
        table.append(
            (
                j.row.label,
                str(j.row.requests),
                str(j.row.failures),
                _fmt_ms(j.row.p50_ms),
                _fmt_ms(j.row.p99_ms),
                _fmt_ms(j.slo_p99_ms),
                "ok" if j.ok else "FAIL",
            )
        )
    widths = [max(len(r[i]) for r in table) for i in range(len(header))]
    lines = []
    for i, r in enumerate(table):
        cells = [r[0].ljust(widths[0])] + [
            c.rjust(w) for c, w in zip(r[1:], widths[1:], strict=True)
        ]
        lines.append(" | ".join(cells))
        if i == 0:
            lines.append("-+-".join("-" * w for w in widths))
    shortage_total = sum(verdict.shortages.values())
    lines += [
        "",
        f"error rate: {verdict.failures}/{verdict.requests} = {verdict.error_rate:.4%} "
        f"(SLO <= {verdict.error_rate_slo:.4%}): {'ok' if verdict.error_rate_ok else 'FAIL'}",
        f"shortages (409 short stock, expected): {shortage_total}"
        + (
            " (" + ", ".join(f"{k} {v}" for k, v in sorted(verdict.shortages.items())) + ")"
            if verdict.shortages
            else ""
        ),
        f"expected conflicts (409 illegal transition after expiry): "
        f"{sum(verdict.conflicts.values())}",
        f"SLO verdict: {'PASS' if verdict.ok else 'FAIL'}",
    ]
    return "\n".join(lines)
