"""Peer benchmark: omnistock's ledger against a PostgreSQL row-lock ledger, both fsyncing.

The peer is what a retailer would otherwise run (``benchmarks.peer_pg``): stock rows on
PostgreSQL, each reservation one transaction that locks its positions ``FOR UPDATE``, checks,
writes and commits, with ``synchronous_commit = on`` (every commit waits for its WAL flush). It
runs on its own embedded PostgreSQL, in a fresh data directory, over an asyncpg pool with one
connection per task, as a service sized for that concurrency would have (``--peer-pool`` sets
another size, to see how the peer fares with fewer waiters on its locks). omnistock runs as
ledger_bench runs it: ``open_ledger(url, durability="strict")`` on its own embedded Valkey with
``appendfsync always`` (every write is fsync'd before it is acknowledged). Both servers are on
the same disk, and the benchmark refuses to run (exit code 1) unless both report that they
fsync every write.

From one process (plain asyncio, as ledger_bench), ``--tasks`` (64) concurrent tasks each loop:
reserve one line of qty 1, then release that reservation; each call is one operation, timed on
its own, with an operation id of its own (both ledgers are idempotent by operation id). Two
workloads, every arm on the same one in turn:

* ``hot``: every task reserves the same SKU at one node (10,000,000 on hand: never short): all
  the contention lands on one row in the peer, on one key in omnistock;
* ``uniform``: ``--skus`` (10,000) SKUs at one node, each call picks one uniformly at random
  (per task and round a seeded stream, so both arms draw the same SKUs).

Each arm is warmed up (``--warmup``, 1 s), then measured (``--seconds``, 5 s); the two arms
alternate in rounds (``--rounds``, 3; the order flips every round) and the median over rounds is
reported, because the machine is shared. Reported per arm: ops/s, p50/p99 latency per
operation, client CPU per operation (this process) and server CPU per operation (the Valkey
process, or the postmaster and every backend, from /proc via psutil), and per workload the
ratio omnistock / peer of the medians and of each round.

Correctness is checked, not assumed. After every arm and round the positions of the SKUs used
are read back from the store: reserved must be 0 and on_hand unchanged. Then an oversell phase
per store: a fresh SKU with ``--scarce`` (100) on hand, every task reserving one unit at a time
without releasing until it is refused; read back, reserved must equal the number of successful
reserves and that number must equal on_hand (never more: no oversell; never less: no false
refusal), every task must end on a refusal, a repeat of the first successful operation id must
return the same reservation and change nothing, and releasing everything must bring reserved
back to 0. A call that meets an outage (omnistock's ``LedgerUnavailable``, PostgreSQL's
deadlock or serialization failure, neither of which should occur) is repeated with the same
operation id, which both ledgers make safe, and counted.

Targets (reported, not asserted): omnistock >= 25x the peer's ops/s on the hot SKU, and > 1x on
the uniform workload. The exit code is 1 only when a correctness check fails or the run errors.
Writes ``peer.json`` and ``peer.md`` to ``--results-dir`` (``benchmarks/results``).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import importlib.metadata
import json
import os
import platform
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg
import psutil
import redis
import redis.asyncio as aioredis
import redis.utils

from benchmarks.peer_pg import PgLedger, PgServer, durability, embedded_postgres, is_durable
from omnistock.domain.errors import InsufficientStock
from omnistock.domain.stock import Line
from omnistock.reservations.connect import open_ledger
from omnistock.reservations.redis_ledger import RedisLedger
from omnistock.reservations.runner import LedgerUnavailable
from omnistock.runtime.valkey_server import EmbeddedValkey

NODE = "bench-node"
HOT_SKU = "hot-sku"
HOT_STOCK = 10_000_000
UNIFORM_STOCK = 1_000_000
SCARCE_SKU = "scarce-sku"
TTL_MS = 15 * 60 * 1000
DURABILITY = "strict"
RESULTS_DIR = Path(__file__).resolve().parent / "results"

ARMS = ("omnistock", "peer")
WORKLOADS = ("hot", "uniform")
TARGET_HOT = 25.0
TARGET_UNIFORM = 1.0
FIGURES = ("ops_per_s", "p50_ms", "p99_ms", "client_cpu_usec_per_op", "server_cpu_usec_per_op")
MAX_RETRIES = 1000
"""Per arm and round; past it the store is taken to be gone and the benchmark stops."""
PG_CONNECTIONS_SPARE = 8
"""Connections left free on the peer's server (superusers' reserve and the benchmark's reads)."""


class BenchmarkError(RuntimeError):
    """A store was left in a wrong state or a run failed: the exit code is 1."""


def _log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


# -- the two stores ---------------------------------------------------------------------------


class ProcessTreeCpu:
    """CPU seconds (user + system) of a server process and its children, per pid, so a child
    that starts during a window counts from 0 and one that ends is dropped, not subtracted."""

    def __init__(self, pid: int) -> None:
        self.pid = pid

    def sample(self) -> dict[int, float]:
        root = psutil.Process(self.pid)
        out: dict[int, float] = {}
        for proc in [root, *root.children(recursive=True)]:
            try:
                t = proc.cpu_times()
            except psutil.NoSuchProcess:
                continue
            out[proc.pid] = t.user + t.system
        return out

    @staticmethod
    def delta(before: dict[int, float], after: dict[int, float]) -> float:
        return sum(cpu - before.get(pid, 0.0) for pid, cpu in after.items())


@dataclass
class Store:
    """One arm: a ledger with omnistock's reserve/release signature, how to set its stock and
    read it back, which errors are outages to retry, and whose CPU is the server's."""

    name: str
    ledger: Any
    retryable: tuple[type[BaseException], ...]
    cpu: ProcessTreeCpu
    load: Callable[[dict[str, int]], Awaitable[None]]
    totals: Callable[[Sequence[str]], Awaitable[tuple[int, int, int]]]


async def omnistock_totals(ledger: RedisLedger, skus: Sequence[str]) -> tuple[int, int, int]:
    """(positions found at the node, sum of on_hand, sum of reserved), read from the server."""
    found = on_hand = reserved = 0
    for start in range(0, len(skus), 1000):
        positions = await ledger.availability_many(skus[start : start + 1000])
        for ps in positions.values():
            for p in ps:
                if p.node_id == NODE:
                    found, on_hand, reserved = found + 1, on_hand + p.on_hand, reserved + p.reserved
    return found, on_hand, reserved


async def omnistock_stock(ledger: RedisLedger, stock: dict[str, int]) -> None:
    """Each SKU is set once per run, so its SKU makes the operation id unique."""
    skus = list(stock)
    for start in range(0, len(skus), 2000):
        await asyncio.gather(
            *(
                ledger.set_stock(f"stock.{sku}", NODE, sku, stock[sku])
                for sku in skus[start : start + 2000]
            )
        )


# -- measurement ------------------------------------------------------------------------------


@dataclass
class _State:
    stop: bool = False
    measuring: bool = False
    reserve_ns: list[int] = field(default_factory=list)
    release_ns: list[int] = field(default_factory=list)
    retries: int = 0
    errors: list[str] = field(default_factory=list)


async def _until_done(store: Store, state: _State, call: Any, *args: Any, **kwargs: Any) -> Any:
    """An outage is retried with the same operation id (safe: both ledgers replay it), timed
    from the first attempt and counted."""
    while True:
        try:
            return await call(*args, **kwargs)
        except store.retryable:
            state.retries += 1
            if state.retries > MAX_RETRIES:
                raise


async def _worker(
    store: Store, skus: Sequence[str], i: int, prefix: str, seed: str, state: _State
) -> None:
    rng = random.Random(f"{seed}:{i}")
    seq = 0
    try:
        while not state.stop:  # checked only after a release: no task leaves stock reserved
            seq += 1
            sku = skus[rng.randrange(len(skus))] if len(skus) > 1 else skus[0]
            op = f"{prefix}.{i}.{seq}"
            t0 = time.perf_counter_ns()
            r = await _until_done(
                store, state, store.ledger.reserve, op, [Line(NODE, sku, 1)], ttl_ms=TTL_MS
            )
            t1 = time.perf_counter_ns()
            await _until_done(store, state, store.ledger.release, f"{op}.rel", r.reservation_id)
            t2 = time.perf_counter_ns()
            if state.measuring:
                state.reserve_ns.append(t1 - t0)
                state.release_ns.append(t2 - t1)
    except Exception as exc:  # the round reports it; the other tasks finish their loops
        state.errors.append(f"{store.name} task {i}: {type(exc).__name__}: {exc}")


def _quantile_ms(ordered: Sequence[int], q: float) -> float:
    index = min(len(ordered) - 1, max(0, int(q * len(ordered) + 0.5) - 1))
    return ordered[index] / 1e6


async def run_round(
    store: Store, workload: str, skus: Sequence[str], r: int, opts: Options
) -> dict[str, Any]:
    state = _State()
    prefix, seed = f"{store.name}.{workload}.{r}", f"{workload}:{r}"
    workers = [
        asyncio.create_task(_worker(store, skus, i, prefix, seed, state)) for i in range(opts.tasks)
    ]
    try:
        await asyncio.sleep(opts.warmup_s)
        server_before = store.cpu.sample()
        start, client_start = time.perf_counter_ns(), time.process_time()
        state.measuring = True
        await asyncio.sleep(opts.seconds)
        state.measuring = False
        elapsed_s = (time.perf_counter_ns() - start) / 1e9
        client_s = time.process_time() - client_start
        server_s = ProcessTreeCpu.delta(server_before, store.cpu.sample())
    finally:
        state.stop = True
        await asyncio.gather(*workers)
    if state.errors:
        raise BenchmarkError(f"{len(state.errors)} task(s) failed; first: {state.errors[0]}")
    both = sorted(state.reserve_ns + state.release_ns)
    if not both:
        raise BenchmarkError(f"{store.name}/{workload}: no operation completed")
    ops = len(both)
    found, on_hand, reserved = await store.totals(skus)
    return {
        "ops": ops,
        "ops_per_s": ops / elapsed_s,
        "p50_ms": _quantile_ms(both, 0.50),
        "p99_ms": _quantile_ms(both, 0.99),
        "reserve_p99_ms": _quantile_ms(sorted(state.reserve_ns), 0.99),
        "release_p99_ms": _quantile_ms(sorted(state.release_ns), 0.99),
        "client_cpu_usec_per_op": client_s * 1e6 / ops,
        "server_cpu_usec_per_op": server_s * 1e6 / ops,
        "retries": state.retries,
        "reserved_left": reserved,
        "positions_found": found,
        "on_hand_total": on_hand,
    }


async def oversell(store: Store, tasks: int, on_hand: int) -> dict[str, Any]:
    """Every task reserves one unit of a scarce SKU at a time, never releasing, until refused;
    then the store is read back, the first success is repeated, and everything released."""
    await store.load({SCARCE_SKU: on_hand})
    held: list[list[tuple[str, str]]] = [[] for _ in range(tasks)]
    refused = [0] * tasks
    state = _State()

    async def reserve_until_refused(i: int) -> None:
        while True:
            op = f"{store.name}.scarce.{i}.{len(held[i]) + 1}"
            try:
                r = await _until_done(
                    store,
                    state,
                    store.ledger.reserve,
                    op,
                    [Line(NODE, SCARCE_SKU, 1)],
                    ttl_ms=TTL_MS,
                )
            except InsufficientStock:
                refused[i] += 1
                return
            held[i].append((op, r.reservation_id))

    started = time.perf_counter()
    await asyncio.gather(*(reserve_until_refused(i) for i in range(tasks)))
    seconds = time.perf_counter() - started
    successes = sum(len(h) for h in held)
    _found, on_hand_read, reserved_read = await store.totals([SCARCE_SKU])

    first_op, first_rid = next(((h[0]) for h in held if h), ("", ""))
    replay_same = True
    if first_op:
        again = await store.ledger.reserve(first_op, [Line(NODE, SCARCE_SKU, 1)], ttl_ms=TTL_MS)
        replay_same = again.reservation_id == first_rid
    _, _, reserved_after_replay = await store.totals([SCARCE_SKU])

    async def release_all(i: int) -> None:
        for op, rid in held[i]:
            await _until_done(store, state, store.ledger.release, f"{op}.rel", rid)

    await asyncio.gather(*(release_all(i) for i in range(tasks)))
    _, on_hand_end, reserved_end = await store.totals([SCARCE_SKU])
    checks = {
        "successes_equal_on_hand": successes == on_hand,
        "reserved_equals_successes": reserved_read == min(on_hand, successes),
        "reserved_within_on_hand": reserved_read <= on_hand_read,
        "on_hand_unchanged": on_hand_read == on_hand == on_hand_end,
        "every_task_refused_once": refused == [1] * tasks,
        "replay_returns_first_result": replay_same and reserved_after_replay == reserved_read,
        "release_restores": reserved_end == 0,
    }
    return {
        "on_hand": on_hand,
        "tasks": tasks,
        "successful_reserves": successes,
        "refused": sum(refused),
        "reserved_read_back": reserved_read,
        "on_hand_read_back": on_hand_read,
        "oversold": max(0, reserved_read - on_hand_read),
        "reserved_after_release": reserved_end,
        "seconds": seconds,
        "retries": state.retries,
        "checks": checks,
        "ok": all(checks.values()),
    }


# -- the run ----------------------------------------------------------------------------------


@dataclass
class Options:
    tasks: int = 64
    seconds: float = 5.0
    warmup_s: float = 1.0
    rounds: int = 3
    skus: int = 10_000
    scarce: int = 100
    out: Path = RESULTS_DIR
    peer_pool: int | None = None


def uniform_skus(n: int) -> list[str]:
    return [f"u-sku-{i:05d}" for i in range(n)]


async def _valkey_facts(url: str) -> tuple[str, str]:
    client = aioredis.from_url(url)
    try:
        info = await client.info("server")
        fsync = (await client.config_get("appendfsync")).get("appendfsync")
    finally:
        await client.aclose()
    version = str(info.get("valkey_version") or info.get("redis_version"))
    return version, fsync.decode() if isinstance(fsync, bytes) else str(fsync)


async def bench(valkey: EmbeddedValkey, pg: PgServer, opts: Options) -> dict[str, Any]:
    valkey_version, appendfsync = await _valkey_facts(valkey.url)
    admin = await asyncpg.connect(**pg.connect_kwargs())
    try:
        pg_settings = await durability(admin)
    finally:
        await admin.close()
    if appendfsync != "always" or not is_durable(pg_settings):
        raise BenchmarkError(
            f"both stores must fsync every write: Valkey appendfsync {appendfsync}, PostgreSQL "
            f"fsync {pg_settings['fsync']}, synchronous_commit {pg_settings['synchronous_commit']}"
        )
    wanted = opts.peer_pool or opts.tasks
    pool_size = min(wanted, int(pg_settings["max_connections"]) - PG_CONNECTIONS_SPARE)
    if pool_size < wanted:
        _log(f"peer pool capped at {pool_size} connections by max_connections")
    async with contextlib.AsyncExitStack() as stack:
        conn = await open_ledger(valkey.url, durability=DURABILITY)
        stack.push_async_callback(conn.aclose)
        peer = await PgLedger.open(pool_size, **pg.connect_kwargs())
        stack.push_async_callback(peer.aclose)
        rounds, scarce, problems = await _measure(valkey, pg, conn.ledger, peer, opts)
    return {
        "machine_extra": {
            "valkey": valkey_version,
            "appendfsync": appendfsync,
            "postgres": pg_settings,
            "peer_pool_size": pool_size,
        },
        **summarize(rounds, scarce),
        "problems": problems,
    }


async def _measure(
    valkey: EmbeddedValkey, pg: PgServer, ledger: RedisLedger, peer: PgLedger, opts: Options
) -> tuple[dict[str, dict[str, list[dict[str, Any]]]], dict[str, dict[str, Any]], list[str]]:
    """Stock set in both stores, the interleaved rounds of both workloads, then the oversell
    phase: (rounds by workload and arm, oversell results by store, problems found)."""
    skus = {"hot": [HOT_SKU], "uniform": uniform_skus(opts.skus)}
    stock = {HOT_SKU: HOT_STOCK} | {s: UNIFORM_STOCK for s in skus["uniform"]}
    stores = [
        Store(
            "omnistock",
            ledger,
            (LedgerUnavailable,),
            ProcessTreeCpu(valkey.pid or 0),
            lambda st: omnistock_stock(ledger, st),
            lambda s: omnistock_totals(ledger, s),
        ),
        Store(
            "peer",
            peer,
            (asyncpg.TransactionRollbackError,),
            ProcessTreeCpu(pg.pid),
            lambda st: peer.load_stock(NODE, st),
            lambda s: peer.totals(NODE, s),
        ),
    ]
    started = time.perf_counter()
    for store in stores:
        await store.load(stock)
    took = time.perf_counter() - started
    _log(f"stock set for {len(stock)} SKUs in both stores in {took:.1f} s")
    expected = {w: sum(stock[s] for s in skus[w]) for w in WORKLOADS}
    rounds: dict[str, dict[str, list[dict[str, Any]]]] = {
        w: {s.name: [] for s in stores} for w in WORKLOADS
    }
    problems: list[str] = []
    for r in range(opts.rounds):
        for workload in WORKLOADS:
            for store in stores if r % 2 == 0 else stores[::-1]:
                result = await run_round(store, workload, skus[workload], r, opts)
                if (
                    result["reserved_left"]
                    or result["positions_found"] != len(skus[workload])
                    or result["on_hand_total"] != expected[workload]
                ):
                    problems.append(
                        f"{workload}/{store.name}/round {r + 1}: reserved left "
                        f"{result['reserved_left']}, positions {result['positions_found']}, "
                        f"on_hand {result['on_hand_total']} (expected {expected[workload]})"
                    )
                rounds[workload][store.name].append(result)
                _log(
                    f"round {r + 1}/{opts.rounds} {workload:7s} {store.name:9s} "
                    f"{result['ops_per_s']:8.0f} ops/s  p50 {result['p50_ms']:.2f} ms  "
                    f"p99 {result['p99_ms']:.2f} ms"
                )

    scarce = {}
    for store in stores:
        scarce[store.name] = await oversell(store, opts.tasks, opts.scarce)
        s = scarce[store.name]
        _log(
            f"oversell {store.name:9s} on_hand {s['on_hand']}  reserved "
            f"{s['successful_reserves']}  refused {s['refused']}  read back reserved "
            f"{s['reserved_read_back']}: {'ok' if s['ok'] else 'FAILED'}"
        )
        if not s["ok"]:
            failed = [name for name, ok in s["checks"].items() if not ok]
            problems.append(f"oversell/{store.name}: failed {failed}: {s}")
    return rounds, scarce, problems


def summarize(
    rounds: dict[str, dict[str, list[dict[str, Any]]]], scarce: dict[str, dict[str, Any]]
) -> dict[str, Any]:
    workloads: dict[str, Any] = {}
    for workload, arms in rounds.items():
        summary = {
            arm: {f: statistics.median(r[f] for r in results) for f in FIGURES}
            | {"retries": sum(r["retries"] for r in results), "rounds": results}
            for arm, results in arms.items()
        }
        ratio = summary["omnistock"]["ops_per_s"] / summary["peer"]["ops_per_s"]
        per_round = [
            o["ops_per_s"] / p["ops_per_s"]
            for o, p in zip(arms["omnistock"], arms["peer"], strict=True)
        ]
        workloads[workload] = {"arms": summary, "ratio": ratio, "per_round_ratio": per_round}
    hot, uniform = workloads["hot"]["ratio"], workloads["uniform"]["ratio"]
    targets = [
        {
            "name": "hot SKU: omnistock / peer ops/s",
            "value": hot,
            "unit": "x",
            "goal": f">= {TARGET_HOT:g}",
            "met": hot >= TARGET_HOT,
        },
        {
            "name": "uniform SKUs: omnistock / peer ops/s",
            "value": uniform,
            "unit": "x",
            "goal": f"> {TARGET_UNIFORM:g}",
            "met": uniform > TARGET_UNIFORM,
        },
    ]
    return {"workloads": workloads, "oversell": scarce, "targets": targets}


# -- report -----------------------------------------------------------------------------------


def machine_info(extra: dict[str, Any], load_before: Sequence[float]) -> dict[str, Any]:
    pg = extra["postgres"]
    return {
        "cpu_count": os.cpu_count(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "valkey": extra["valkey"],
        "postgres": pg["server_version"],
        "asyncpg": importlib.metadata.version("asyncpg"),
        "redis_py": redis.__version__,
        "hiredis": bool(redis.utils.HIREDIS_AVAILABLE),
        "durability": {
            "omnistock": f"{DURABILITY} (appendfsync {extra['appendfsync']})",
            "peer": f"fsync {pg['fsync']}, synchronous_commit {pg['synchronous_commit']}, "
            f"wal_sync_method {pg['wal_sync_method']}, full_page_writes {pg['full_page_writes']}",
        },
        "peer_pool_size": extra["peer_pool_size"],
        "load_average_before": [round(x, 2) for x in load_before],
        "load_average_after": [round(x, 2) for x in os.getloadavg()],
    }


def _verdict(target: dict[str, Any]) -> str:
    return "met" if target["met"] else "not met"


def markdown(report: dict[str, Any]) -> str:
    m, c = report["machine"], report["config"]
    out = [
        "# Peer benchmark: omnistock against a PostgreSQL row-lock ledger",
        "",
        f"{report['date']}; {m['cpu_count']} CPUs, {m['platform']}, Python {m['python']}, "
        f"Valkey {m['valkey']}, PostgreSQL {m['postgres']} (asyncpg {m['asyncpg']}, pool of "
        f"{m['peer_pool_size']}), redis-py {m['redis_py']} (hiredis {m['hiredis']}). "
        f"Durability: omnistock {m['durability']['omnistock']}; peer "
        f"{m['durability']['peer']}. Load average (1/5/15 min) before "
        f"{m['load_average_before']}, after {m['load_average_after']}: the machine is shared, "
        "so figures vary from run to run.",
        f"{c['tasks']} tasks, each looping reserve (one line, qty 1) then release; hot: one SKU "
        f"at one node; uniform: {c['skus']} SKUs, one drawn at random per call. {c['seconds']} s "
        f"per arm after {c['warmup_s']} s warm-up, {c['rounds']} interleaved rounds, medians "
        "shown. Command: `" + c["command"] + "`.",
        "",
        "| workload | arm | ops/s | p50 ms | p99 ms | client CPU µs/op | server CPU µs/op |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for workload, w in report["workloads"].items():
        for arm in ARMS:
            a = w["arms"][arm]
            out.append(
                f"| {workload} | {arm} | {a['ops_per_s']:.0f} | {a['p50_ms']:.2f} | "
                f"{a['p99_ms']:.2f} | {a['client_cpu_usec_per_op']:.1f} | "
                f"{a['server_cpu_usec_per_op']:.1f} |"
            )
    out += [
        "",
        "| workload | omnistock / peer | per round | target | |",
        "| --- | ---: | --- | --- | --- |",
    ]
    for (workload, w), t in zip(report["workloads"].items(), report["targets"], strict=True):
        rounds = ", ".join(f"{x:.1f}" for x in w["per_round_ratio"])
        out.append(f"| {workload} | {w['ratio']:.1f}x | {rounds} | {t['goal']}x | {_verdict(t)} |")
    out += [
        "",
        "## Oversell check",
        "",
        "A fresh SKU per store, every task reserving one unit at a time without releasing until "
        "refused, then read back from the store.",
        "",
        "| store | on hand | successful reserves | refused | reserved read back | oversold "
        "| replay | released back to 0 | seconds | ok |",
        "| --- | ---: | ---: | ---: | ---: | ---: | --- | --- | ---: | --- |",
    ]
    for name, s in report["oversell"].items():
        ch = s["checks"]
        out.append(
            f"| {name} | {s['on_hand']} | {s['successful_reserves']} | {s['refused']} | "
            f"{s['reserved_read_back']} | {s['oversold']} | "
            f"{'same' if ch['replay_returns_first_result'] else 'DIFFERENT'} | "
            f"{'yes' if ch['release_restores'] else 'NO'} | {s['seconds']:.2f} | "
            f"{'yes' if s['ok'] else 'NO'} |"
        )
    retries = {
        f"{w}/{arm}": a["retries"]
        for w, wl in report["workloads"].items()
        for arm, a in wl["arms"].items()
    }
    out += [
        "",
        f"Units left reserved after every arm and round: {_left(report)}; "
        f"calls repeated after an outage: {retries}; problems: "
        f"{'; '.join(report['problems']) or 'none'}.",
        "",
        "Ops/s counts reserves and releases (each one operation). Client CPU µs/op: CPU time of "
        "this benchmark process per operation. Server CPU µs/op: user+system CPU of the Valkey "
        "process, or of the postmaster and all its backends and helpers, per operation, over "
        "the measured window (time blocked in fsync is not CPU).",
        "",
    ]
    return "\n".join(out)


def _left(report: dict[str, Any]) -> int:
    return sum(
        r["reserved_left"]
        for w in report["workloads"].values()
        for a in w["arms"].values()
        for r in a["rounds"]
    )


# -- entry point ------------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None) -> Options:
    p = argparse.ArgumentParser(
        prog="python -m benchmarks.peer_bench", description=__doc__.split("\n")[0]
    )
    p.add_argument("--quick", action="store_true", help="1 round, 1 s per arm, 0.3 s warm-up")
    p.add_argument("--seconds", type=float, help="measured seconds per arm and round (default 5)")
    p.add_argument("--warmup", type=float, help="warm-up seconds per arm and round (default 1)")
    p.add_argument("--rounds", type=int, help="interleaved rounds (default 3)")
    p.add_argument("--tasks", type=int, default=64, help="concurrent tasks (default 64)")
    p.add_argument("--skus", type=int, default=10_000, help="uniform workload SKUs (10,000)")
    p.add_argument("--scarce", type=int, default=100, help="on hand in the oversell phase (100)")
    p.add_argument(
        "--peer-pool",
        type=int,
        help="connections in the peer's pool (default: one per task, as a service would size it)",
    )
    p.add_argument(
        "--results-dir",
        "--out",
        dest="out",
        type=Path,
        default=RESULTS_DIR,
        help="where peer.json and peer.md go (default benchmarks/results)",
    )
    a = p.parse_args(argv)
    seconds = a.seconds if a.seconds is not None else (1.0 if a.quick else 5.0)
    warmup = a.warmup if a.warmup is not None else (0.3 if a.quick else 1.0)
    rounds = a.rounds if a.rounds is not None else (1 if a.quick else 3)
    if seconds <= 0 or warmup < 0 or rounds < 1 or a.tasks < 1 or a.skus < 2 or a.scarce < 1:
        p.error("need --seconds > 0, --warmup >= 0, --rounds, --tasks, --scarce >= 1, --skus >= 2")
    if a.peer_pool is not None and a.peer_pool < 1:
        p.error("need --peer-pool >= 1")
    return Options(a.tasks, seconds, warmup, rounds, a.skus, a.scarce, a.out, a.peer_pool)


def main(argv: Sequence[str] | None = None) -> int:
    opts = parse_args(argv)
    load_before = os.getloadavg()
    try:
        with (
            tempfile.TemporaryDirectory(prefix="omnistock-peer-bench-") as tmp,
            EmbeddedValkey(Path(tmp) / "valkey", durability=DURABILITY) as valkey,
            embedded_postgres(Path(tmp) / "postgres") as pg,
        ):
            result = asyncio.run(bench(valkey, pg, opts))
    except BenchmarkError as exc:
        print(f"PEER BENCHMARK FAILED: {exc}", file=sys.stderr)
        return 1
    args = " ".join(sys.argv[1:] if argv is None else argv)
    report = {
        "benchmark": "peer",
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "config": {
            "tasks": opts.tasks,
            "seconds": opts.seconds,
            "warmup_s": opts.warmup_s,
            "rounds": opts.rounds,
            "skus": opts.skus,
            "hot_stock": HOT_STOCK,
            "uniform_stock": UNIFORM_STOCK,
            "scarce_on_hand": opts.scarce,
            "peer_pool": opts.peer_pool or opts.tasks,
            "command": f"python -m benchmarks.peer_bench {args}".strip(),
        },
        "machine": machine_info(result.pop("machine_extra"), load_before),
        **result,
    }
    opts.out.mkdir(parents=True, exist_ok=True)
    (opts.out / "peer.json").write_text(json.dumps(report, indent=2) + "\n")
    text = markdown(report)
    (opts.out / "peer.md").write_text(text)
    print(text)
    if report["problems"]:
        print(f"CORRECTNESS FAILURE: {report['problems']}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
