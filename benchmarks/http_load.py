"""HTTP/1.1 load generator for the omnistock HTTP benchmark: closed loop or paced (asyncio).

It runs as its own process (``python -m benchmarks.http_load``), started by
``benchmarks.http_bench`` once per scenario and round, so that its CPU shows up apart from the
server's and the harness never shares an event loop with it. ``--connections`` (64) keep-alive
connections each keep at most one request in flight. Two modes:

* closed loop (no ``--rate``, the default): the next request leaves when the previous response
  has been read, so throughput and latency are those of a closed loop of 64 clients at
  saturation. Latency is measured from the actual send, and by Little's law its mean is
  ``connections / throughput``: it is mostly queueing, not what a request costs at a given load.
* paced, open loop (``--rate R``, requests/s over all connections): connection i sends on its own
  fixed schedule, one slot every ``N/R`` s, its first slot shifted by i/N of that interval, so
  that the N schedules together send one request every ``1/R`` s. Latency counts from the
  slot's *scheduled* time, not from the actual send: a connection that is still waiting for the
  previous response when a slot comes due sends as soon as it is free (a slot is never skipped),
  and the wait counts against that request, so a stall is charged to every request scheduled
  behind it (no coordinated omission). An idle connection's timer is set 1 ms before its slot,
  because uvloop's timers count whole milliseconds and fire up to about a millisecond late (a
  client artifact that would otherwise be charged to the server); a request that leaves before
  its slot counts from its actual send, so a latency is never shorter than the round trip. A
  request belongs to the measured window when its scheduled time does; after the window no
  further slot is scheduled, but every request already scheduled is completed and counted,
  however late (no survivorship bias at overload). Reported: the offered rate, the achieved
  rate (responses completed within the window per second), ``send_delay`` (how long requests
  waited in the client after their scheduled time) and ``queued_behind`` (slots that came due
  while the previous response was still outstanding). With one request in flight per
  connection, an offered rate is only reachable while the mean latency stays below ``N/R``.

Every request is pre-encoded bytes; per request only the ``Idempotency-Key`` (and a release's
path) is spliced in. A response is parsed only as far as needed to find where it ends: status
line, ``Content-Length`` or chunked coding, ``Connection: close``. A request that meets a
transport error is sent again, same bytes and same key (which the API's idempotency makes safe),
after reconnecting; its latency then counts from the first attempt and each error is counted.

Scenarios (``--scenario``):

* ``noop-get``: ``GET /v1/diagnostics/noop``;
* ``noop-post``: ``POST /v1/diagnostics/noop`` with an ``Idempotency-Key`` and a JSON body
  ``{"pad":"xx..."}`` padded to the byte length of the reservation body of the same connection:
  the peer of ``reserve-release`` with the same bytes on the wire and no ledger behind it;
* ``availability``: ``GET /v1/availability/{sku}``, connection i starting at SKU i and cycling;
* ``reserve-release``: each connection loops ``POST /v1/reservations`` (one line, qty 1, of SKU
  i mod the SKU count at ``--node``, a fresh key each time), reads ``reservation_id`` from the
  201 body, then ``POST /v1/reservations/{id}/release`` with its own fresh key. Each is one
  request timed on its own; reserve and release latencies are also reported apart. A connection
  stops only after a release, so no reservation is left behind by the load itself. Paced, a
  pair counts as two requests of the rate: pairs are scheduled at R/2 pairs/s in all (one slot
  every ``2N/R`` s per connection); the reserve counts from its pair's scheduled time, the
  release, sent as soon as the reserve's answer is read, counts from the reserve's completion,
  which is when it was due (so the reserve carries any client-side wait, and the release
  measures its own round trip).

All requests carry ``Host`` and ``Authorization: Bearer <key>``; POSTs also ``Content-Type:
application/json``. After ``--warmup`` seconds (paced at the same rate in paced mode), the
next ``--seconds`` are measured; ``outside_window`` reports what happened during warm-up and
drain. One JSON object goes to stdout: requests, ok (2xx), non_2xx by status, errors,
throughput_rps, p50/p90/p99/max latency in ms, the client's CPU per request and, with
``--server-pid``, the CPU of that process and all its descendants per request (Linux /proc),
and how many cores the rest of the machine kept busy meanwhile (``other_cpu_cores``).

``--check`` is a self-test: it starts a stdlib stub of the endpoints above in a subprocess, runs
every scenario briefly against it, closed loop and paced, and checks the stub's view (every
request authorized, every key fresh, noop and reserve bodies of equal length, no reservation
left, chunked and ``Connection: close`` responses handled) and that the paced runs achieved
their offered rate; the closed-loop req/s it prints are a rough ceiling only (16 connections,
1 s, the stub on the same cores).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import secrets
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

SCENARIOS = ("noop-get", "noop-post", "availability", "reserve-release")
DEFAULT_NODE = "bench-node"
DEFAULT_KEY = "bench-admin-key-0123456789"
DEFAULT_SKUS = ",".join(f"bench-sku-{i:03d}" for i in range(64))
TTL_S = 900
MAX_ATTEMPTS = 5
DRAIN_TIMEOUT_S = 30.0
ROOT = Path(__file__).resolve().parent.parent

RequestMaker = Callable[[int], bytes]


class ProtocolError(Exception):
    """The server answered something this client cannot frame or use."""


# -- requests ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Target:
    host: str
    port: int
    key: str

    @classmethod
    def from_url(cls, url: str, key: str) -> Target:
        parts = urlsplit(url)
        return cls(parts.hostname or "127.0.0.1", parts.port or 80, key)

    def head(self, method: str, path: str | bytes) -> bytes:
        if isinstance(path, str):
            path = path.encode()
        return b"%s %s HTTP/1.1\r\nHost: %s:%d\r\nAuthorization: Bearer %s\r\n" % (
            method.encode(),
            path,
            self.host.encode(),
            self.port,
            self.key.encode(),
        )

    def post(self, path: str | bytes, body: bytes) -> tuple[bytes, bytes]:
        """The bytes before and after the Idempotency-Key value of a POST with this body."""
        prefix = self.head("POST", path) + (
            b"Content-Type: application/json\r\nContent-Length: %d\r\nIdempotency-Key: " % len(body)
        )
        return prefix, b"\r\n\r\n" + body


def reserve_body(node: str, sku: str) -> bytes:
    line = {"node_id": node, "sku": sku, "qty": 1}
    return json.dumps({"lines": [line], "ttl_s": TTL_S}, separators=(",", ":")).encode()


def noop_body(length: int) -> bytes:
    """A JSON body of exactly ``length`` bytes, so the no-op POST carries what a reserve does."""
    empty = b'{"pad":""}'
    if length < len(empty):
        raise ValueError(f"cannot pad a JSON body to {length} bytes")
    return b'{"pad":"' + b"x" * (length - len(empty)) + b'"}'


@dataclass(frozen=True)
class Plan:
    """What the connections of one scenario send; ``token`` keeps keys unique across runs."""

    scenario: str
    target: Target
    node: str
    skus: Sequence[str]
    token: str

    def key_prefix(self, i: int, kind: str) -> bytes:
        return f"{self.token}-{i:x}-{kind}".encode()

    def single(self, i: int) -> RequestMaker:
        """Connection ``i``'s request maker for the one-request scenarios."""
        t = self.target
        if self.scenario == "noop-get":
            request = t.head("GET", "/v1/diagnostics/noop") + b"\r\n"
            return lambda _seq: request
        if self.scenario == "availability":
            n = len(self.skus)
            requests = [
                t.head("GET", f"/v1/availability/{self.skus[(i + k) % n]}") + b"\r\n"
                for k in range(n)
            ]
            return lambda seq: requests[seq % n]
        if self.scenario == "noop-post":
            size = len(reserve_body(self.node, self.skus[i % len(self.skus)]))
            prefix, suffix = t.post("/v1/diagnostics/noop", noop_body(size))
            key = self.key_prefix(i, "n")
            return lambda seq: b"%s%s%08x%s" % (prefix, key, seq, suffix)
        raise ValueError(self.scenario)

    def reserve(self, i: int) -> RequestMaker:
        body = reserve_body(self.node, self.skus[i % len(self.skus)])
        prefix, suffix = self.target.post("/v1/reservations", body)
        key = self.key_prefix(i, "s")
        return lambda seq: b"%s%s%08x%s" % (prefix, key, seq, suffix)

    def release(self, i: int) -> Callable[[bytes, int], bytes]:
        before, after = self.target.head("POST", b"/v1/reservations/\0/release").split(b"\0")
        after += b"Content-Type: application/json\r\nContent-Length: 0\r\nIdempotency-Key: "
        after += self.key_prefix(i, "r")
        return lambda rid, seq: b"%s%s%s%08x\r\n\r\n" % (before, rid, after, seq)


_RID = b'"reservation_id":"'


def reservation_id(body: bytes) -> bytes:
    """Compact JSON (what msgspec writes) is sliced directly; anything else is parsed."""
    start = body.find(_RID)
    if start >= 0:
        start += len(_RID)
        return body[start : body.index(b'"', start)]
    try:
        return str(json.loads(body)["reservation_id"]).encode()
    except (ValueError, KeyError, TypeError) as exc:
        raise ProtocolError(f"no reservation_id in {body[:200]!r}") from exc


# -- connection -------------------------------------------------------------------------------


class Window:
    """What completed during one phase (warm-up, measured window, drain)."""

    __slots__ = ("errors", "release_samples", "samples", "statuses")

    def __init__(self) -> None:
        self.samples: list[int] = []
        self.release_samples: list[int] = []
        self.statuses: dict[int, int] = {}
        self.errors = 0


class Run:
    """Shared by all connections: the phase's window (swapped, never branched on), stop and,
    paced, every request's record (classified by scheduled time once the run is over)."""

    __slots__ = ("last_error", "records", "stop", "window")

    def __init__(self) -> None:
        self.window = Window()
        self.stop = False
        self.last_error = ""
        self.records: list[Record] = []


# A paced request: (kind, due, sent, done, status, queued), times in perf_counter ns. kind is
# SLOT for a scheduled request (a reserve in reserve-release) and RELEASE for a release; due is
# the scheduled time (a release's is its reserve's completion); queued is whether the slot came
# due while the connection was still waiting for the previous response.
Record = tuple[int, int, int, int, int, bool]
SLOT, RELEASE = 0, 1
# A paced connection's timer is set this long before the slot: uvloop's timers (libuv's) count
# whole milliseconds and fire up to about a millisecond late, which would otherwise be charged
# to the server. A request that leaves early counts from its actual send.
SLOT_LEAD_NS = 1_000_000


class Conn:
    """One keep-alive connection with at most one request in flight."""

    __slots__ = ("reader", "run", "target", "writer")

    def __init__(self, target: Target, run: Run) -> None:
        self.target, self.run = target, run
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def open(self) -> None:
        self.reader, self.writer = await asyncio.open_connection(self.target.host, self.target.port)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
        self.reader = self.writer = None

    async def request(self, request: bytes) -> tuple[int, bytes]:
        """Sends ``request`` and reads its response, reconnecting and resending on a transport
        error (counted in the current window) up to MAX_ATTEMPTS times."""
        for attempt in range(MAX_ATTEMPTS):
            try:
                if self.reader is None:
                    await self.open()
                self.writer.write(request)  # type: ignore[union-attr]
                return await self._response()
            except (OSError, EOFError, ProtocolError, ValueError, asyncio.LimitOverrunError) as e:
                self.run.window.errors += 1
                self.run.last_error = repr(e)
                self.close()
                await asyncio.sleep(0.01 * attempt)
        raise ProtocolError(f"giving up after {MAX_ATTEMPTS} attempts: {self.run.last_error}")

    async def _response(self) -> tuple[int, bytes]:
        reader = self.reader
        head = await reader.readuntil(b"\r\n\r\n")  # type: ignore[union-attr]
        status = int(head[9:12])
        lower = head.lower()
        at = lower.find(b"\r\ncontent-length:")
        if at >= 0:
            end = lower.index(b"\r\n", at + 17)
            size = int(head[at + 17 : end])
            body = await reader.readexactly(size) if size else b""  # type: ignore[union-attr]
        elif b"\r\ntransfer-encoding: chunked" in lower:
            body = await _chunked(reader)  # type: ignore[arg-type]
        elif status in (204, 304) or status < 200:
            body = b""
        else:
            body = await reader.read()  # type: ignore[union-attr]
            self.close()
            return status, body
        if b"\r\nconnection: close" in lower:
            self.close()
        return status, body


async def _chunked(reader: asyncio.StreamReader) -> bytes:
    parts = []
    while True:
        size = int((await reader.readuntil(b"\r\n")).split(b";", 1)[0], 16)
        if size == 0:
            while await reader.readuntil(b"\r\n") != b"\r\n":
                pass
            return b"".join(parts)
        parts.append((await reader.readexactly(size + 2))[:-2])


# -- workers ----------------------------------------------------------------------------------


async def single_worker(conn: Conn, make: RequestMaker) -> None:
    run, clock, seq = conn.run, time.perf_counter_ns, 0
    while not run.stop:
        seq += 1
        request = make(seq)
        t0 = clock()
        status, _ = await conn.request(request)
        t1 = clock()
        w = run.window
        w.samples.append(t1 - t0)
        w.statuses[status] = w.statuses.get(status, 0) + 1


async def reserve_release_worker(
    conn: Conn, reserve: RequestMaker, release: Callable[[bytes, int], bytes]
) -> None:
    """Stops only after a release (or a failed reserve), never holding a reservation."""
    run, clock, seq = conn.run, time.perf_counter_ns, 0
    while not run.stop:
        seq += 1
        request = reserve(seq)
        t0 = clock()
        status, body = await conn.request(request)
        t1 = clock()
        w = run.window
        w.samples.append(t1 - t0)
        w.statuses[status] = w.statuses.get(status, 0) + 1
        if status != 201:
            continue
        request = release(reservation_id(body), seq)
        t1 = clock()
        status, _ = await conn.request(request)
        t2 = clock()
        w = run.window
        w.release_samples.append(t2 - t1)
        w.statuses[status] = w.statuses.get(status, 0) + 1


async def _wait_for_slot(due: int, clock: Callable[[], int]) -> bool:
    """Sleeps until SLOT_LEAD_NS before ``due`` unless ``due`` has passed; returns whether it
    had (the slot queued behind the previous response)."""
    delay = due - clock()
    if delay < 0:
        return True
    if delay > SLOT_LEAD_NS:
        await asyncio.sleep((delay - SLOT_LEAD_NS) / 1e9)
    return False


async def paced_single_worker(
    conn: Conn, make: RequestMaker, first: int, interval: float, end: int
) -> None:
    """One request per slot, slots ``first + k * interval`` before ``end``, none skipped."""
    run, clock, records, seq = conn.run, time.perf_counter_ns, conn.run.records, 0
    while (due := first + int(seq * interval)) < end:
        seq += 1
        request = make(seq)
        queued = await _wait_for_slot(due, clock)
        t0 = clock()
        status, _ = await conn.request(request)
        records.append((SLOT, due, t0, clock(), status, queued))
        if run.stop:
            break


async def paced_reserve_release_worker(
    conn: Conn,
    reserve: RequestMaker,
    release: Callable[[bytes, int], bytes],
    first: int,
    interval: float,
    end: int,
) -> None:
    """One reserve-release pair per slot; the release is due when its reserve completes."""
    run, clock, records, seq = conn.run, time.perf_counter_ns, conn.run.records, 0
    while (due := first + int(seq * interval)) < end:
        seq += 1
        request = reserve(seq)
        queued = await _wait_for_slot(due, clock)
        t0 = clock()
        status, body = await conn.request(request)
        t1 = clock()
        records.append((SLOT, due, t0, t1, status, queued))
        if status == 201:
            request = release(reservation_id(body), seq)
            t2 = clock()
            status, _ = await conn.request(request)
            records.append((RELEASE, t1, t2, clock(), status, False))
        if run.stop:
            break


def slot_interval_ns(plan: Plan, connections: int, rate: float) -> float:
    """Nanoseconds between one connection's slots: a reserve-release slot is two requests."""
    per_slot = 2 if plan.scenario == "reserve-release" else 1
    return per_slot * connections / rate * 1e9


def start_paced_workers(
    plan: Plan, conns: Sequence[Conn], start: int, interval: float, end: int
) -> list[asyncio.Task[None]]:
    """Connection i's first slot is ``i / N`` of an interval after ``start``."""
    n = len(conns)
    coros = []
    for i, c in enumerate(conns):
        first = start + int(i * interval / n)
        if plan.scenario == "reserve-release":
            coros.append(
                paced_reserve_release_worker(
                    c, plan.reserve(i), plan.release(i), first, interval, end
                )
            )
        else:
            coros.append(paced_single_worker(c, plan.single(i), first, interval, end))
    return [asyncio.create_task(c) for c in coros]


def start_workers(plan: Plan, conns: Sequence[Conn]) -> list[asyncio.Task[None]]:
    if plan.scenario == "reserve-release":
        coros = [
            reserve_release_worker(c, plan.reserve(i), plan.release(i)) for i, c in enumerate(conns)
        ]
    else:
        coros = [single_worker(c, plan.single(i)) for i, c in enumerate(conns)]
    return [asyncio.create_task(c) for c in coros]


# -- measurement ------------------------------------------------------------------------------


@dataclass(frozen=True)
class LoadOptions:
    scenario: str
    connections: int = 64
    seconds: float = 5.0
    warmup_s: float = 1.0
    node: str = DEFAULT_NODE
    skus: tuple[str, ...] = tuple(DEFAULT_SKUS.split(","))
    server_pid: int | None = None
    rate: float | None = None


def process_tree(pid: int) -> dict[int, int]:
    """``pid`` and its live descendants, each with its user+system CPU in clock ticks, from
    /proc (empty off Linux or once ``pid`` is gone)."""
    parents: dict[int, int] = {}
    ticks: dict[int, int] = {}
    try:
        entries = [e.name for e in os.scandir("/proc") if e.name.isdigit()]
    except OSError:
        return {}
    for name in entries:
        try:
            with open(f"/proc/{name}/stat", "rb") as f:
                fields = f.read().rsplit(b")", 1)[1].split()
        except OSError:
            continue
        if fields[0] != b"Z":
            parents[int(name)] = int(fields[1])
            ticks[int(name)] = int(fields[11]) + int(fields[12])
    if pid not in ticks:
        return {}
    tree, frontier = {pid}, [pid]
    while frontier:
        parent = frontier.pop()
        kids = [c for c, p in parents.items() if p == parent and c not in tree]
        tree.update(kids)
        frontier += kids
    return {p: ticks[p] for p in tree}


def tree_cpu_s(pid: int | None) -> float | None:
    """CPU seconds of ``pid`` and its descendants (granian workers and the embedded Valkey are
    children of ``omnistock serve``), or None when unknown."""
    tree = process_tree(pid) if pid is not None else {}
    return sum(tree.values()) / os.sysconf("SC_CLK_TCK") if tree else None


def machine_cpu_s() -> float | None:
    """Busy CPU seconds of the whole machine so far (all CPUs, /proc/stat), or None."""
    try:
        with open("/proc/stat", "rb") as f:
            fields = [int(x) for x in f.readline().split()[1:]]
    except (OSError, ValueError):
        return None
    idle = sum(fields[3:5])  # idle, iowait
    busy = sum(fields[:8]) - idle  # user, nice, system, irq, softirq, steal
    return busy / os.sysconf("SC_CLK_TCK")


def other_cpu(
    machine: float | None, client: float, server: float | None, elapsed: float
) -> dict[str, float | None]:
    """Cores busy on the machine during the window, and those busy with neither the load
    generator nor the server's process tree (other work on the shared machine, plus kernel
    work charged to no process)."""
    if machine is None or elapsed <= 0:
        return {"machine_cpu_cores": None, "other_cpu_cores": None}
    other = None if server is None else max(0.0, machine - client - server) / elapsed
    return {"machine_cpu_cores": machine / elapsed, "other_cpu_cores": other}


def latency_ms(samples: Sequence[int]) -> dict[str, float | None]:
    """Nearest-rank quantiles, the same rule as the ledger benchmark."""
    ordered = sorted(samples)
    if not ordered:
        return {"p50_ms": None, "p90_ms": None, "p99_ms": None, "max_ms": None}

    def q(p: float) -> float:
        return ordered[min(len(ordered) - 1, max(0, int(p * len(ordered) + 0.5) - 1))] / 1e6

    return {"p50_ms": q(0.50), "p90_ms": q(0.90), "p99_ms": q(0.99), "max_ms": ordered[-1] / 1e6}


def counts(window: Window) -> dict[str, Any]:
    ok = sum(n for s, n in window.statuses.items() if 200 <= s < 300)
    return {
        "requests": sum(window.statuses.values()),
        "ok": ok,
        "non_2xx": {str(s): n for s, n in sorted(window.statuses.items()) if not 200 <= s < 300},
        "errors": window.errors,
    }


async def run_load(url: str, key: str, opts: LoadOptions) -> dict[str, Any]:
    """Opens every connection, warms up, measures one window, then lets every connection finish
    its loop (a reserve-release pair included) before closing. Paced when ``opts.rate`` is set."""
    if opts.rate is not None:
        return await run_paced(url, key, opts)
    plan = Plan(opts.scenario, Target.from_url(url, key), opts.node, opts.skus, _token())
    run = Run()
    conns = [Conn(plan.target, run) for _ in range(opts.connections)]
    await asyncio.gather(*(c.open() for c in conns))
    tasks = start_workers(plan, conns)
    warm, measured, drain = run.window, Window(), Window()
    await asyncio.sleep(opts.warmup_s)
    machine0 = machine_cpu_s()
    server0, cpu0, start = tree_cpu_s(opts.server_pid), time.process_time(), time.perf_counter()
    run.window = measured
    await asyncio.sleep(opts.seconds)
    run.window = drain
    elapsed, cpu = time.perf_counter() - start, time.process_time() - cpu0
    server1, machine1 = tree_cpu_s(opts.server_pid), machine_cpu_s()
    run.stop = True
    done, pending = await asyncio.wait(tasks, timeout=DRAIN_TIMEOUT_S)
    for task in pending:
        task.cancel()
    failures = [repr(t.exception()) for t in done if t.exception() is not None]
    for conn in conns:
        conn.close()
    server_cpu = None if server0 is None or server1 is None else server1 - server0
    machine = None if machine0 is None or machine1 is None else machine1 - machine0
    return summary(plan, opts, measured, [warm, drain], elapsed, cpu, server_cpu) | {
        "mode": "closed",
        **other_cpu(machine, cpu, server_cpu, elapsed),
        "unfinished_connections": len(pending),
        "failed_connections": len(failures),
        "failures": failures[:5],
        "last_error": run.last_error,
    }


async def _sleep_until(deadline: int) -> None:
    """Sleeps until perf_counter_ns reaches ``deadline`` (again if a coarse timer woke it early;
    twice is enough, the early wake-up being at most a few milliseconds)."""
    for _ in range(2):
        delay = deadline - time.perf_counter_ns()
        if delay > 0:
            await asyncio.sleep(delay / 1e9)


async def run_paced(url: str, key: str, opts: LoadOptions) -> dict[str, Any]:
    """Schedules slots from warm-up to the end of the measured window, then waits for every
    scheduled request to complete (the drain). Transport errors are counted by when they
    happen; answers and latencies by when their request was scheduled."""
    assert opts.rate is not None and opts.rate > 0
    plan = Plan(opts.scenario, Target.from_url(url, key), opts.node, opts.skus, _token())
    run = Run()
    conns = [Conn(plan.target, run) for _ in range(opts.connections)]
    await asyncio.gather(*(c.open() for c in conns))
    clock = time.perf_counter_ns
    interval = slot_interval_ns(plan, opts.connections, opts.rate)
    start = clock() + 1_000_000
    w0 = start + int(opts.warmup_s * 1e9)
    w1 = w0 + int(opts.seconds * 1e9)
    tasks = start_paced_workers(plan, conns, start, interval, w1)
    warm, measured_errors, drain = run.window, Window(), Window()
    await _sleep_until(w0)
    machine0 = machine_cpu_s()
    server0, cpu0, t0 = tree_cpu_s(opts.server_pid), time.process_time(), clock()
    run.window = measured_errors
    await _sleep_until(w1)
    run.window = drain
    t1, cpu = clock(), time.process_time() - cpu0
    server1, machine1 = tree_cpu_s(opts.server_pid), machine_cpu_s()
    done, pending = await asyncio.wait(tasks, timeout=DRAIN_TIMEOUT_S)
    if pending:
        run.stop = True
        done2, pending = await asyncio.wait(pending, timeout=DRAIN_TIMEOUT_S)
        done |= done2
    for task in pending:
        task.cancel()
    failures = [repr(t.exception()) for t in done if t.exception() is not None]
    for conn in conns:
        conn.close()
    server_cpu = None if server0 is None or server1 is None else server1 - server0
    machine = None if machine0 is None or machine1 is None else machine1 - machine0
    window = (w0, w1, t0, t1)
    errors = (measured_errors.errors, warm.errors + drain.errors)
    return paced_summary(plan, opts, run.records, window, errors, cpu, server_cpu) | {
        **other_cpu(machine, cpu, server_cpu, (t1 - t0) / 1e9),
        "unfinished_connections": len(pending),
        "failed_connections": len(failures),
        "failures": failures[:5],
        "last_error": run.last_error,
    }


def paced_summary(
    plan: Plan,
    opts: LoadOptions,
    records: Sequence[Record],
    window: tuple[int, int, int, int],
    errors: tuple[int, int],
    client_cpu: float,
    server_cpu: float | None,
) -> dict[str, Any]:
    """``window`` is the scheduled window (w0, w1) and the wall-clock one it was measured over
    (t0, t1): latencies and answers of requests due in [w0, w1), rate and CPU of responses
    completed in [t0, t1)."""
    w0, w1, t0, t1 = window
    measured, outside = Window(), Window()
    measured.errors, outside.errors = errors
    completed, slots, queued, delays = 0, 0, 0, []
    for kind, due, sent, done, status, was_queued in records:
        if t0 <= done < t1:
            completed += 1
        w = measured if w0 <= due < w1 else outside
        w.statuses[status] = w.statuses.get(status, 0) + 1
        if w is not measured:
            continue
        latency = done - min(due, sent)
        if kind == SLOT:
            w.samples.append(latency)
            slots += 1
            queued += was_queued
            delays.append(max(0, sent - due))
        else:
            w.release_samples.append(latency)
    elapsed = (t1 - t0) / 1e9
    figures = counts(measured)
    per_request = 1e6 / max(completed, 1)
    delay = latency_ms(delays)
    out = {
        "scenario": plan.scenario,
        "mode": "paced",
        "connections": opts.connections,
        "warmup_s": opts.warmup_s,
        "seconds": elapsed,
        "loop": _loop_name(),
        "offered_rps": opts.rate,
        "achieved_rps": completed / elapsed,
        "completed_in_window": completed,
        **figures,
        "throughput_rps": completed / elapsed,
        **latency_ms(measured.samples + measured.release_samples),
        "slots": slots,
        "queued_behind": queued,
        "send_delay": {k: delay[k] for k in ("p50_ms", "p99_ms", "max_ms")},
        "client_cpu_usec_per_req": client_cpu * per_request,
        "server_cpu_usec_per_req": None if server_cpu is None else server_cpu * per_request,
        "outside_window": counts(outside),
    }
    if plan.scenario == "reserve-release":
        out["reserve"] = {"requests": len(measured.samples), **latency_ms(measured.samples)}
        out["release"] = {
            "requests": len(measured.release_samples),
            **latency_ms(measured.release_samples),
        }
    return out


def summary(
    plan: Plan,
    opts: LoadOptions,
    measured: Window,
    others: Sequence[Window],
    elapsed: float,
    client_cpu: float,
    server_cpu: float | None,
) -> dict[str, Any]:
    figures = counts(measured)
    per_request = 1e6 / max(figures["requests"], 1)
    outside = Window()
    for w in others:
        outside.errors += w.errors
        for s, n in w.statuses.items():
            outside.statuses[s] = outside.statuses.get(s, 0) + n
    out = {
        "scenario": plan.scenario,
        "connections": opts.connections,
        "warmup_s": opts.warmup_s,
        "seconds": elapsed,
        "loop": _loop_name(),
        **figures,
        "throughput_rps": figures["requests"] / elapsed,
        **latency_ms(measured.samples + measured.release_samples),
        "client_cpu_usec_per_req": client_cpu * per_request,
        "server_cpu_usec_per_req": None if server_cpu is None else server_cpu * per_request,
        "outside_window": counts(outside),
    }
    if plan.scenario == "reserve-release":
        out["reserve"] = {"requests": len(measured.samples), **latency_ms(measured.samples)}
        out["release"] = {
            "requests": len(measured.release_samples),
            **latency_ms(measured.release_samples),
        }
    return out


def _token() -> str:
    """Unique per process, so keys never repeat across rounds, runs or restarts."""
    return f"{time.time_ns() // 1_000_000_000:x}{secrets.token_hex(4)}"


def _loop_name() -> str:
    return type(asyncio.get_running_loop()).__module__.split(".")[0]


def run_async(coro: Any) -> Any:
    """uvloop if it happens to be importable (it is not a dependency), else the stdlib loop."""
    try:
        import uvloop  # type: ignore[import-not-found]
    except ImportError:
        return asyncio.run(coro)
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(coro)


# -- self-test --------------------------------------------------------------------------------


class Stub:
    """The endpoints the scenarios use, in memory, plus what it saw (``GET /stub/report``).
    Availability answers chunked and every reserve answer alternates compact and spaced JSON, so
    both framings and both ``reservation_id`` paths of the client are exercised."""

    def __init__(self, key: str) -> None:
        self.auth = b"Bearer " + key.encode()
        self.keys: set[bytes] = set()
        self.report: dict[str, Any] = {"unauthorized": 0, "bad": 0, "posts": 0, "closes": 0}
        self.body_lengths: dict[str, set[int]] = {"noop": set(), "reserve": set()}
        self.held: dict[str, str] = {}
        self.seq = 0

    def handle(self, method: bytes, path: bytes, h: dict[bytes, bytes], body: bytes) -> Any:
        if path == b"/stub/report":
            lengths = {k: sorted(v) for k, v in self.body_lengths.items()}
            return 200, {**self.report, "held": len(self.held), "body_lengths": lengths}
        if h.get(b"authorization") != self.auth:
            self.report["unauthorized"] += 1
            return 401, {"detail": "unauthorized"}
        if method == b"POST":
            self.report["posts"] += 1
            key = h.get(b"idempotency-key")
            if key is None or key in self.keys or h.get(b"content-type") != b"application/json":
                self.report["bad"] += 1
            self.keys.add(key or b"")
        parts = path.decode().split("/")
        return self._route(method, parts, body)

    def _route(self, method: bytes, parts: list[str], body: bytes) -> Any:
        if parts[1:] == ["v1", "diagnostics", "noop"]:
            if method == b"POST":
                self.body_lengths["noop"].add(len(body))
                json.loads(body)
            return 200, {"ok": True}
        if parts[1:3] == ["v1", "availability"] and len(parts) == 4:
            return 200, {"sku": parts[3], "available": 5, "nodes": [{"node_id": "n"}]}, "chunked"
        if method == b"POST" and parts[1:] == ["v1", "reservations"]:
            self.body_lengths["reserve"].add(len(body))
            self.seq += 1
            rid = f"res-{self.seq}"
            self.held[rid] = json.loads(body)["lines"][0]["sku"]
            return 201, {"reservation_id": rid, "status": "active"}, self.seq % 2
        if method == b"POST" and parts[1:3] == ["v1", "reservations"] and parts[4:] == ["release"]:
            return (200, {"status": "released"}) if self.held.pop(parts[3], None) else (404, {})
        return 404, {"detail": "not found"}


def _encode(answer: Any, close: bool) -> bytes:
    status, payload, *style = answer
    spaced = style == [1]
    data = json.dumps(payload, separators=(", ", ": ") if spaced else (",", ":")).encode()
    head = b"HTTP/1.1 %d X\r\ncontent-type: application/json\r\n" % status
    if close:
        head += b"Connection: close\r\n"
    if style == ["chunked"]:
        half = len(data) // 2
        chunks = b"%x\r\n%s\r\n%x\r\n%s\r\n0\r\n\r\n" % (
            half,
            data[:half],
            len(data) - half,
            data[half:],
        )
        return head + b"Transfer-Encoding: chunked\r\n\r\n" + chunks
    return head + b"Content-Length: %d\r\n\r\n%s" % (len(data), data)


async def _stub_connection(stub: Stub, reader: Any, writer: Any) -> None:
    served = 0
    try:
        while True:
            head = await reader.readuntil(b"\r\n\r\n")
            line, *lines = head[:-4].split(b"\r\n")
            method, path, _ = line.split(b" ")
            headers = {k.strip().lower(): v.strip() for k, v in (x.split(b":", 1) for x in lines)}
            size = int(headers.get(b"content-length", b"0"))
            body = await reader.readexactly(size) if size else b""
            served += 1
            close = served % 500 == 0
            writer.write(_encode(stub.handle(method, path, headers, body), close))
            if close:
                stub.report["closes"] += 1
                await writer.drain()
                break
    except (asyncio.IncompleteReadError, ConnectionError):
        pass
    writer.close()


async def serve_stub(key: str) -> None:
    """Prints its port on stdout, then serves until killed."""
    stub = Stub(key)
    server = await asyncio.start_server(lambda r, w: _stub_connection(stub, r, w), "127.0.0.1", 0)
    print(server.sockets[0].getsockname()[1], flush=True)
    async with server:
        await server.serve_forever()


def self_check(key: str) -> int:
    """Runs every scenario against the stub and checks both sides; prints a JSON verdict."""
    stub = subprocess.Popen(
        [sys.executable, "-m", "benchmarks.http_load", "--stub-server", "--key", key],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        url = f"http://127.0.0.1:{int(stub.stdout.readline())}"  # type: ignore[union-attr]
        results = {
            s: run_async(run_load(url, key, LoadOptions(s, 16, 1.0, 0.2))) for s in SCENARIOS
        }
        paced = {
            s: run_async(run_load(url, key, LoadOptions(s, 16, 1.0, 0.2, rate=CHECK_RATE)))
            for s in SCENARIOS
        }
        report = run_async(_fetch_json(url, key, "/stub/report"))
    finally:
        stub.kill()
        stub.wait()
    problems = _check_problems(results, report)
    problems += _check_problems({f"paced {s}": r for s, r in paced.items()}, {**report, "held": 0})
    problems += [
        f"paced {s}: achieved {r['achieved_rps']:.0f} of {CHECK_RATE:.0f} req/s offered"
        for s, r in paced.items()
        if abs(r["achieved_rps"] / CHECK_RATE - 1) > 0.15
    ]
    ceiling = {s: round(r["throughput_rps"]) for s, r in results.items()}
    paced_p99 = {s: r["p99_ms"] for s, r in paced.items()}
    print(
        json.dumps(
            {
                "ok": not problems,
                "problems": problems,
                "stub": report,
                "rps": ceiling,
                f"paced_{CHECK_RATE:.0f}_rps_p99_ms": paced_p99,
            }
        )
    )
    return 1 if problems else 0


CHECK_RATE = 800.0


def _check_problems(results: dict[str, dict[str, Any]], report: dict[str, Any]) -> list[str]:
    problems = [
        f"{s}: {r['requests']} requests, {r['ok']} ok, {r['errors']} errors, failures "
        f"{r['failures']}"
        for s, r in results.items()
        if not r["requests"] or r["ok"] != r["requests"] or r["errors"] or r["failures"]
    ]
    if report["unauthorized"] or report["bad"] or report["held"]:
        problems.append(f"stub saw unauthorized/bad requests or held reservations: {report}")
    lengths = report["body_lengths"]
    if len({n for ns in lengths.values() for n in ns}) != 1 or not all(lengths.values()):
        problems.append(f"noop and reserve bodies differ in length: {lengths}")
    if not report["closes"]:
        problems.append("no Connection: close was exercised")
    return problems


async def _fetch_json(url: str, key: str, path: str) -> Any:
    conn = Conn(Target.from_url(url, key), Run())
    status, body = await conn.request(conn.target.head("GET", path) + b"\r\n")
    conn.close()
    if status != 200:
        raise ProtocolError(f"GET {path}: {status}")
    return json.loads(body)


# -- entry point ------------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m benchmarks.http_load", description=__doc__.split("\n")[0]
    )
    p.add_argument("--url", default="http://127.0.0.1:8000", help="server base URL")
    p.add_argument("--scenario", choices=SCENARIOS)
    p.add_argument("--connections", type=int, default=64, help="connections (default 64)")
    p.add_argument("--seconds", type=float, default=5.0, help="measured seconds (default 5)")
    p.add_argument("--warmup", type=float, default=1.0, help="warm-up seconds (default 1)")
    p.add_argument("--key", default=DEFAULT_KEY, help="API key sent as Bearer token")
    p.add_argument("--node", default=DEFAULT_NODE, help="node of the reserved lines")
    p.add_argument("--skus", default=DEFAULT_SKUS, help="comma-separated SKUs")
    p.add_argument("--server-pid", type=int, help="report this process tree's CPU per request")
    p.add_argument(
        "--rate",
        type=float,
        help="paced (open loop): requests/s over all connections, latency from each request's "
        "scheduled time (a reserve-release pair is two requests); default: closed loop",
    )
    p.add_argument("--check", action="store_true", help="self-test against a stdlib stub")
    p.add_argument("--stub-server", action="store_true", help=argparse.SUPPRESS)
    a = p.parse_args(argv)
    if not (a.check or a.stub_server or a.scenario):
        p.error("--scenario is required (or --check)")
    if a.connections < 1 or a.seconds <= 0 or a.warmup < 0 or not a.skus:
        p.error("need --connections >= 1, --seconds > 0, --warmup >= 0 and some --skus")
    if a.rate is not None and not a.rate > 0:
        p.error("need --rate > 0")
    return a


def main(argv: Sequence[str] | None = None) -> int:
    a = parse_args(argv)
    if a.stub_server:
        run_async(serve_stub(a.key))
        return 0
    if a.check:
        return self_check(a.key)
    opts = LoadOptions(
        a.scenario,
        a.connections,
        a.seconds,
        a.warmup,
        a.node,
        tuple(a.skus.split(",")),
        a.server_pid,
        a.rate,
    )
    result = run_async(run_load(a.url, a.key, opts))
    print(json.dumps(result))
    return 0 if result["requests"] else 1


if __name__ == "__main__":
    sys.exit(main())
