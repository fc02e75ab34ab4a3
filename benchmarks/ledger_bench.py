"""Ledger benchmark: reserve/release throughput and latency against a ceiling and a naive peer.

From one process, ``--tasks`` (64) concurrent tasks each loop: reserve one line (qty 1) of their
own SKU, then release it; each call is one operation and is timed on its own. Task ``i`` always
uses SKU ``bench-sku-{i:03d}`` at node ``bench-node`` (64 SKUs, one per task, 1,000,000 on hand),
in every arm, so every arm touches the same partitions and, on the cluster, the same shards:

* ``omnistock``: ``open_ledger(url, durability="strict")``, the ledger as the service uses it;
* ``ceiling``: a trivial but real one-key write script, ``return redis.call('INCR', KEYS[1])``,
  on key ``{os.P}:bench:ceil:i`` (P the partition of task i's SKU), sent through the very same
  ``ScriptRunner`` (same client, same coalescing, same durability wait); two calls per loop;
* ``ceiling_batched``: the ledger script's trivial ``ping`` operation (one INCR) through the
  same batched path as reserve and release: the ceiling of the client path as omnistock uses it;
* ``bare``: a reference, not a ledger: reserve and release scripts doing only the effects every
  reserve and release must have (``benchmarks/lua/bare_*.lua``: the clock, a sweep of what is
  due, the operation id's memory, the position, a record, a deadline, an event) and none of the
  ledger's content, one EVALSHA per operation through the same ``ScriptRunner`` as ``ceiling``,
  on keys of their own; it shows how near the ceiling the required work alone can come;
* ``naive``: a ``RedisLedger`` on ``benchmarks.naive.NaiveRunner``: the same ledger function with
  the same keys and arguments, one plain redis-py asyncio ``FCALL`` per operation (a batch of
  one), no coalescing.

Each arm is warmed up, then measured for a fixed time; arms are interleaved in rounds (the order
rotates every round) and the median over rounds is reported, because the machine is shared.
Server cost comes from ``INFO commandstats`` (``cmdstat_evalsha`` and ``cmdstat_fcall``: script
and function execution time) and
``INFO cpu`` (the server process's whole CPU, network and fsync included) deltas over
each measured window, summed over primaries on the cluster, and is given per operation. A
separate phase on the omnistock ledger (same tasks, min(1 s, --seconds), fresh SKUs) does only
reserves, then releases them all, giving the server cost of one reserve, and of one release, alone.

Correctness is checked, not assumed: after every arm and phase the units still reserved are read
back from the server and must be 0 (exit code 1 otherwise). A call that meets LedgerUnavailable
(a stall beyond the 2 s client timeout, e.g. while the AOF is rewritten on a busy machine) is
repeated with the same operation id, which the ledger makes safe; such retries are counted.

Targets (reported, not asserted): omnistock >= 2x naive and >= 0.70x ceiling in ops/s.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import hashlib
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import redis
import redis.asyncio as aioredis
import redis.utils

from benchmarks.naive import NaiveRunner, naive_client
from omnistock.domain.stock import Line
from omnistock.reservations import keys
from omnistock.reservations.connect import open_ledger
from omnistock.reservations.redis_ledger import RedisLedger
from omnistock.reservations.runner import LedgerUnavailable, ScriptRunner
from omnistock.reservations.scripts import Script, build_ledger_library
from omnistock.runtime.valkey_cluster import EmbeddedCluster
from omnistock.runtime.valkey_server import EmbeddedValkey

NODE = "bench-node"
STOCK = 1_000_000
TTL_MS = 15 * 60 * 1000
DURABILITY = "strict"
TARGET_VS_NAIVE = 2.0
TARGET_VS_CEILING = 0.70
RESULTS_DIR = Path(__file__).resolve().parent / "results"

_CEILING_SOURCE = "return redis.call('INCR', KEYS[1])"
CEILING = Script(
    "bench_ceiling", _CEILING_SOURCE, hashlib.sha1(_CEILING_SOURCE.encode()).hexdigest()
)

_LUA = Path(__file__).resolve().parent / "lua"
BARE_RESERVE, BARE_RELEASE = (
    Script.from_source(f"bench_{name}", (_LUA / f"{name}.lua").read_text())
    for name in ("bare_reserve", "bare_release")
)

ARMS = ("omnistock", "bare", "ceiling", "ceiling_batched", "naive")
FIGURES = (
    "ops_per_s",
    "p50_ms",
    "p99_ms",
    "client_cpu_usec_per_op",
    "script_usec_per_op",
    "server_cpu_usec_per_op",
)


class BenchmarkError(RuntimeError):
    """The ledger was left in a wrong state: a correctness failure, not a slow run."""


# -- arms -------------------------------------------------------------------------------------


class LedgerArm:
    """Reserve one unit of the task's SKU, then release that reservation."""

    def __init__(self, name: str, ledger: RedisLedger, skus: Sequence[str]) -> None:
        self.name = name
        self.ledger = ledger
        self.skus = skus
        self.prefix = name

    async def first(self, i: int, seq: int) -> str:
        line = Line(NODE, self.skus[i], 1)
        reservation = await self.ledger.reserve(f"{self.prefix}.{i}.{seq}", [line], ttl_ms=TTL_MS)
        return reservation.reservation_id

    async def second(self, i: int, seq: int, rid: str) -> None:
        await self.ledger.release(f"{self.prefix}.{i}.{seq}.rel", rid)


class CeilingArm:
    """The trivial one-key script through the omnistock runner, twice per loop."""

    name = "ceiling"

    def __init__(self, runner: ScriptRunner, keys_: Sequence[str]) -> None:
        self.runner = runner
        self.keys = keys_
        self.prefix = self.name

    async def first(self, i: int, seq: int) -> Any:
        return await self.runner.call(CEILING, [self.keys[i]], ())

    async def second(self, i: int, seq: int, _token: Any) -> None:
        await self.runner.call(CEILING, [self.keys[i]], ())


class BareArm:
    """The bare reserve and release scripts (see ``benchmarks/lua``), one EVALSHA each, on
    the arm's own position hash of the task's partition."""

    name = "bare"

    def __init__(self, runner: ScriptRunner, tags: Sequence[str]) -> None:
        self.runner = runner
        self.tags = tags
        self.prefix = self.name

    @staticmethod
    def position_key(tag: str, i: int) -> str:
        return f"{tag}:bench:bare:s:{i}"

    def _keys(self, i: int, rid: str) -> list[str]:
        tag = self.tags[i]
        return [
            self.position_key(tag, i),
            f"{tag}:bench:bare:r:{rid}",
            f"{tag}:bench:bare:exp",
            f"{tag}:bench:bare:ev",
        ]

    async def first(self, i: int, seq: int) -> str:
        rid = f"{self.prefix}.{i}.{seq}"
        reply = await self.runner.call(BARE_RESERVE, self._keys(i, rid), (NODE, 1, rid, TTL_MS))
        if reply != b"ok":
            raise BenchmarkError(f"bare reserve {rid}: {reply!r}")
        return rid

    async def second(self, i: int, seq: int, rid: str) -> None:
        reply = await self.runner.call(BARE_RELEASE, self._keys(i, rid), (NODE, 1, rid, TTL_MS))
        if reply != b"ok":
            raise BenchmarkError(f"bare release {rid}: {reply!r}")

    async def seed(self, client: Any) -> None:
        for i, tag in enumerate(self.tags):
            await client.hset(self.position_key(tag, i), mapping={f"{NODE}|oh": STOCK})

    async def reserved_left(self, client: Any) -> int:
        left = 0
        for i, tag in enumerate(self.tags):
            left += int(await client.hget(self.position_key(tag, i), f"{NODE}|rs") or 0)
        return left


class BatchedCeilingArm(CeilingArm):
    """The ledger script's trivial ``ping`` operation (one INCR) through the same batched path
    as reserve and release: what the client path can carry when an operation costs nothing."""

    name = "ceiling_batched"

    async def first(self, i: int, seq: int) -> Any:
        return await self.runner.op("ping", [self.keys[i]], ())

    async def second(self, i: int, seq: int, _token: Any) -> None:
        await self.runner.op("ping", [self.keys[i]], ())


# -- server counters --------------------------------------------------------------------------


@dataclass(frozen=True)
class ServerStats:
    calls: int = 0
    usec: int = 0
    cpu_s: float = 0.0

    def __sub__(self, other: ServerStats) -> ServerStats:
        return ServerStats(
            self.calls - other.calls, self.usec - other.usec, self.cpu_s - other.cpu_s
        )

    def figures(self, ops: int) -> dict[str, float]:
        """Per operation, not per script call: batching puts many operations in one call."""
        ops = max(ops, 1)
        return {
            "script_usec_per_op": self.usec / ops,
            "server_cpu_usec_per_op": self.cpu_s * 1e6 / ops,
            "script_calls": self.calls,
        }


async def server_stats(admins: Sequence[aioredis.Redis]) -> ServerStats:
    """Script and function calls (EVALSHA, FCALL) and their usec from INFO commandstats,
    process CPU from INFO cpu, summed over primaries."""
    total = ServerStats()
    for admin in admins:
        info = await admin.info("commandstats", "cpu")
        calls = [info.get(f"cmdstat_{c}", {}) for c in ("evalsha", "fcall")]
        cpu = float(info["used_cpu_sys"]) + float(info["used_cpu_user"])
        total = ServerStats(
            total.calls + sum(int(c.get("calls", 0)) for c in calls),
            total.usec + sum(int(c.get("usec", 0)) for c in calls),
            total.cpu_s + cpu,
        )
    return total


# -- measurement ------------------------------------------------------------------------------


@dataclass
class _State:
    stop: bool = False
    measuring: bool = False
    samples: list[int] = field(default_factory=list)
    unavailable: int = 0


MAX_UNAVAILABLE = 1000
"""Per arm and round; past it the server is taken to be gone and the benchmark stops."""


async def _until_done(state: _State, call: Any, *args: Any, **kwargs: Any) -> Any:
    """A call that met LedgerUnavailable (a stall longer than the client timeout, e.g. during an
    AOF rewrite) is repeated with the same operation id, which the ledger makes safe; it is timed
    from its first attempt and counted."""
    while True:
        try:
            return await call(*args, **kwargs)
        except LedgerUnavailable:
            state.unavailable += 1
            if state.unavailable > MAX_UNAVAILABLE:
                raise


async def _worker(arm: Any, i: int, state: _State) -> None:
    samples = state.samples
    seq = 0
    while not state.stop:  # checked only after a release: no task leaves stock reserved
        seq += 1
        t0 = time.perf_counter_ns()
        token = await _until_done(state, arm.first, i, seq)
        t1 = time.perf_counter_ns()
        if state.measuring:
            samples.append(t1 - t0)
        await _until_done(state, arm.second, i, seq, token)
        t2 = time.perf_counter_ns()
        if state.measuring:
            samples.append(t2 - t1)


def _quantile_ms(ordered: list[int], q: float) -> float:
    index = min(len(ordered) - 1, max(0, int(q * len(ordered) + 0.5) - 1))
    return ordered[index] / 1e6


async def run_round(
    arm: Any, tasks: int, warmup_s: float, seconds: float, admins: Sequence[aioredis.Redis]
) -> dict[str, float]:
    state = _State()
    workers = [asyncio.create_task(_worker(arm, i, state)) for i in range(tasks)]
    try:
        await asyncio.sleep(warmup_s)
        before = await server_stats(admins)
        start, cpu_start = time.perf_counter_ns(), time.process_time()
        state.measuring = True
        await asyncio.sleep(seconds)
        state.measuring = False
        elapsed_s = (time.perf_counter_ns() - start) / 1e9
        client_cpu_s = time.process_time() - cpu_start
        delta = await server_stats(admins) - before
    finally:
        state.stop = True
        await asyncio.gather(*workers)
    ordered = sorted(state.samples)
    if not ordered:
        raise BenchmarkError(f"{arm.name}: no operation completed in {seconds} s")
    return {
        "ops": len(ordered),
        "ops_per_s": len(ordered) / elapsed_s,
        "p50_ms": _quantile_ms(ordered, 0.50),
        "p99_ms": _quantile_ms(ordered, 0.99),
        "client_cpu_usec_per_op": client_cpu_s * 1e6 / len(ordered),
        "unavailable_retries": state.unavailable,
        **delta.figures(len(ordered)),
    }


async def reserved_left(ledger: RedisLedger, skus: Sequence[str], on_hand: int) -> int:
    """Units still reserved over the SKUs used (0 when every reserve was released), read from
    the server; raises if any SKU's stock on hand changed, which no arm should do."""
    positions = await ledger.availability_many(skus)
    left = 0
    for sku in skus:
        mine = [p for p in positions[sku] if p.node_id == NODE]
        if len(mine) != 1 or mine[0].on_hand != on_hand:
            raise BenchmarkError(f"{sku}: stock on hand changed: {mine}")
        left += mine[0].reserved
    return left


async def set_stock(ledger: RedisLedger, skus: Sequence[str], tag: str) -> None:
    await asyncio.gather(
        *(ledger.set_stock(f"{tag}.stock.{sku}", NODE, sku, STOCK) for sku in skus)
    )


async def reserve_only(
    ledger: RedisLedger, tasks: int, seconds: float, admins: Sequence[aioredis.Redis]
) -> dict[str, float]:
    """Server cost of one reserve alone (then of one release alone), on fresh stock."""
    skus = [f"bench-fresh-{i:03d}" for i in range(tasks)]
    await set_stock(ledger, skus, "fresh")
    held: list[list[str]] = [[] for _ in range(tasks)]
    state = _State()
    deadline = time.monotonic() + seconds

    async def reserve(i: int) -> None:
        while time.monotonic() < deadline:
            op, line = f"fresh.{i}.{len(held[i])}", Line(NODE, skus[i], 1)
            r = await _until_done(state, ledger.reserve, op, [line], ttl_ms=TTL_MS)
            held[i].append(r.reservation_id)

    async def release(i: int) -> None:
        for n, rid in enumerate(held[i]):
            await _until_done(state, ledger.release, f"fresh.{i}.{n}.rel", rid)

    before = await server_stats(admins)
    await asyncio.gather(*(reserve(i) for i in range(tasks)))
    middle = await server_stats(admins)
    await asyncio.gather(*(release(i) for i in range(tasks)))
    after = await server_stats(admins)
    reserves, releases = middle - before, after - middle
    count = sum(len(h) for h in held)
    return {
        "reserved_left": await reserved_left(ledger, skus, STOCK),
        "reserves": count,
        "unavailable_retries": state.unavailable,
        "reserve_script_usec_per_op": reserves.figures(count)["script_usec_per_op"],
        "reserve_server_cpu_usec_per_op": reserves.figures(count)["server_cpu_usec_per_op"],
        "release_script_usec_per_op": releases.figures(count)["script_usec_per_op"],
        "release_server_cpu_usec_per_op": releases.figures(count)["server_cpu_usec_per_op"],
    }


# -- one server or cluster --------------------------------------------------------------------


@dataclass
class Options:
    tasks: int = 64
    seconds: float = 5.0
    warmup_s: float = 1.0
    rounds: int = 3
    cluster: bool = True
    out: Path = RESULTS_DIR


def _log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


async def bench_target(
    name: str, url: str, primaries: Sequence[tuple[str, int]], *, cluster: bool, opts: Options
) -> dict[str, Any]:
    conn = await open_ledger(url, cluster=cluster, durability=DURABILITY)
    pool_size = 0 if cluster else conn.client.connection_pool.max_connections
    naive = naive_client(url, cluster=cluster, max_connections=pool_size)
    admins = [aioredis.Redis(host=host, port=port) for host, port in primaries]
    try:
        naive_runner = NaiveRunner(naive, build_ledger_library(), cluster=cluster)
        await naive_runner.load()
        naive_ledger = RedisLedger(naive_runner, cluster=cluster)
        await conn.runner.load([CEILING, BARE_RESERVE, BARE_RELEASE])

        skus = [f"bench-sku-{i:03d}" for i in range(opts.tasks)]
        ceiling_keys = [
            f"{keys.tag(keys.partition_of(s))}:bench:ceil:{i}" for i, s in enumerate(skus)
        ]
        await set_stock(conn.ledger, skus, "main")
        bare = BareArm(conn.runner, [keys.tag(keys.partition_of(s)) for s in skus])
        await bare.seed(conn.client)
        arms = [
            LedgerArm("omnistock", conn.ledger, skus),
            bare,
            CeilingArm(conn.runner, ceiling_keys),
            BatchedCeilingArm(conn.runner, [keys.tag(keys.partition_of(s)) for s in skus]),
            LedgerArm("naive", naive_ledger, skus),
        ]
        rounds: dict[str, list[dict[str, float]]] = {arm.name: [] for arm in arms}
        for r in range(opts.rounds):
            for arm in arms[r % len(arms) :] + arms[: r % len(arms)]:
                arm.prefix = f"{arm.name}.{r}"
                result = await run_round(arm, opts.tasks, opts.warmup_s, opts.seconds, admins)
                # after the ceiling too, which touches no stock: it must still read 0
                result["reserved_left"] = await reserved_left(conn.ledger, skus, STOCK)
                result["reserved_left"] += await bare.reserved_left(conn.client)
                rounds[arm.name].append(result)
                _log(
                    f"[{name}] round {r + 1}/{opts.rounds} {arm.name:9s} "
                    f"{result['ops_per_s']:8.0f} ops/s  p50 {result['p50_ms']:.2f} ms  "
                    f"p99 {result['p99_ms']:.2f} ms"
                )
        fresh = await reserve_only(conn.ledger, opts.tasks, min(1.0, opts.seconds), admins)
        fsync = await admins[0].config_get("appendfsync")
        rewrites = [(await a.info("persistence")).get("aof_rewrites", 0) for a in admins]
    finally:
        for admin in admins:
            await admin.aclose()
        await naive.aclose()
        await conn.aclose()
    summary = summarize(name, rounds, fresh, pool_size, fsync.get("appendfsync"))
    return summary | {"aof_rewrites": sum(int(r) for r in rewrites)}


def summarize(
    name: str,
    rounds: dict[str, list[dict[str, float]]],
    fresh: dict[str, float],
    pool_size: int,
    appendfsync: Any,
) -> dict[str, Any]:
    arms = {
        arm: {f: statistics.median(r[f] for r in results) for f in FIGURES} | {"rounds": results}
        for arm, results in rounds.items()
    }
    ops = {arm: arms[arm]["ops_per_s"] for arm in arms}
    vs_naive = ops["omnistock"] / ops["naive"]
    vs_ceiling = ops["omnistock"] / ops["ceiling"]
    vs_batched = ops["omnistock"] / ops["ceiling_batched"]
    bare_vs_ceiling = ops["bare"] / ops["ceiling"]
    per_round = list(zip(rounds["omnistock"], rounds["naive"], rounds["ceiling"], strict=True))
    return {
        "target": name,
        "appendfsync": appendfsync.decode() if isinstance(appendfsync, bytes) else appendfsync,
        "naive_pool_max_connections": pool_size or "redis-py RedisCluster default",
        "arms": arms,
        "ratios": {
            "omnistock_vs_naive": vs_naive,
            "omnistock_vs_ceiling": vs_ceiling,
            "omnistock_vs_ceiling_batched": vs_batched,
            "bare_vs_ceiling": bare_vs_ceiling,
            "per_round_vs_naive": [o["ops_per_s"] / n["ops_per_s"] for o, n, _ in per_round],
            "per_round_vs_ceiling": [o["ops_per_s"] / c["ops_per_s"] for o, _, c in per_round],
        },
        "targets": {
            "vs_naive": {"goal": TARGET_VS_NAIVE, "pass": vs_naive >= TARGET_VS_NAIVE},
            "vs_ceiling": {"goal": TARGET_VS_CEILING, "pass": vs_ceiling >= TARGET_VS_CEILING},
        },
        "reserve_only": fresh,
    }


# -- report -----------------------------------------------------------------------------------


def server_allocator(pid: int | None) -> str:
    """The allocator the server process runs on, from the libraries it has mapped."""
    try:
        maps = Path(f"/proc/{pid}/maps").read_text()
    except OSError:
        return "unknown"
    return "mimalloc" if "libmimalloc" in maps else "glibc malloc"


def machine_info(
    valkey_version: str, allocator: str, load_before: Sequence[float]
) -> dict[str, Any]:
    return {
        "cpu_count": os.cpu_count(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "valkey": valkey_version,
        "allocator": allocator,
        "redis_py": redis.__version__,
        "hiredis": bool(redis.utils.HIREDIS_AVAILABLE),
        "durability": DURABILITY,
        "load_average_before": [round(x, 2) for x in load_before],
        "load_average_after": [round(x, 2) for x in os.getloadavg()],
    }


def markdown(report: dict[str, Any]) -> str:
    m, c = report["machine"], report["config"]
    out = [
        "# Ledger benchmark",
        "",
        f"{report['date']}; {m['cpu_count']} CPUs, {m['platform']}, Python {m['python']}, "
        f"Valkey {m['valkey']} on {m.get('allocator', 'an unrecorded allocator')}, "
        f"redis-py {m['redis_py']} (hiredis {m['hiredis']}); "
        f"durability `{m['durability']}`. Load average (1/5/15 min) before "
        f"{m['load_average_before']}, after {m['load_average_after']}: the machine is shared, "
        "so figures vary from run to run.",
        f"{c['tasks']} tasks, reserve/release of one line alternating, {c['skus']}; "
        f"{c['seconds']} s per arm after {c['warmup_s']} s warm-up, {c['rounds']} interleaved "
        "rounds, medians shown. Command: `" + c["command"] + "`.",
        "",
        "| target | arm | ops/s | p50 ms | p99 ms | client CPU µs/op | script µs/op "
        "| server CPU µs/op |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for t in report["targets"]:
        for arm in ARMS:
            a = t["arms"][arm]
            out.append(
                f"| {t['target']} | {arm} | {a['ops_per_s']:.0f} | {a['p50_ms']:.2f} | "
                f"{a['p99_ms']:.2f} | {a['client_cpu_usec_per_op']:.1f} | "
                f"{a['script_usec_per_op']:.1f} | "
                f"{a['server_cpu_usec_per_op']:.1f} |"
            )
    out.append("")
    for t in report["targets"]:
        r, g, f = t["ratios"], t["targets"], t["reserve_only"]
        out += [
            f"**{t['target']}** (appendfsync {t['appendfsync']}): omnistock/naive "
            f"{r['omnistock_vs_naive']:.2f}x (goal >= {TARGET_VS_NAIVE}x: "
            f"{'PASS' if g['vs_naive']['pass'] else 'MISS'}), omnistock/ceiling "
            f"{r['omnistock_vs_ceiling']:.2f} (goal >= {TARGET_VS_CEILING}: "
            f"{'PASS' if g['vs_ceiling']['pass'] else 'MISS'}), omnistock/ceiling_batched "
            f"{r['omnistock_vs_ceiling_batched']:.2f}; bare/ceiling {r['bare_vs_ceiling']:.2f} "
            "(the required effects alone, one script call per operation). "
            f"Reserve alone: {f['reserve_script_usec_per_op']:.1f} µs script, "
            f"{f['reserve_server_cpu_usec_per_op']:.1f} µs server CPU per reserve; release "
            f"alone: {f['release_script_usec_per_op']:.1f} µs script, "
            f"{f['release_server_cpu_usec_per_op']:.1f} µs server CPU "
            f"({f['reserves']} reserves). Units left reserved after every arm and phase: "
            f"{_left(t)}. AOF rewrites during the run: {t['aof_rewrites']}; calls repeated after "
            f"LedgerUnavailable: {_retries(t)}.",
            "",
        ]
    out += [
        "Client CPU µs/op: CPU time of this benchmark process per operation (one process, one "
        "event loop). Script µs/op: `cmdstat_evalsha` plus `cmdstat_fcall` usec delta per "
        "operation (script and function execution only; omnistock runs many operations per "
        "function call). Server CPU µs/op: "
        "`used_cpu_user+used_cpu_sys` delta of the server process(es) per operation (network "
        "I/O and AOF writes included; time blocked in fsync is not CPU). On the cluster both "
        "are summed over primaries.",
        "",
    ]
    return "\n".join(out)


def _retries(target: dict[str, Any]) -> dict[str, int]:
    return {
        arm: sum(r["unavailable_retries"] for r in a["rounds"]) for arm, a in target["arms"].items()
    }


def _left(target: dict[str, Any]) -> int:
    rounds = [r for a in target["arms"].values() for r in a["rounds"]]
    return sum(r["reserved_left"] for r in rounds) + target["reserve_only"]["reserved_left"]


# -- entry point ------------------------------------------------------------------------------


async def _valkey_version(url: str) -> str:
    client = aioredis.from_url(url)
    try:
        info = await client.info("server")
    finally:
        await client.aclose()
    return str(info.get("valkey_version") or info.get("redis_version"))


async def run(opts: Options, base_dir: Path) -> dict[str, Any]:
    load_before = os.getloadavg()
    targets = []
    with EmbeddedValkey(base_dir / "single", durability=DURABILITY) as server:
        version = await _valkey_version(server.url)
        allocator = server_allocator(server.pid)
        targets.append(
            await bench_target(
                "single", server.url, [(server.host, server.port)], cluster=False, opts=opts
            )
        )
    if opts.cluster:
        with EmbeddedCluster(base_dir / "cluster", shards=3, durability=DURABILITY) as cl:
            primaries = [(n.host, n.port) for n in cl.primaries]
            targets.append(
                await bench_target("cluster-3", cl.url, primaries, cluster=True, opts=opts)
            )
    return {"machine": machine_info(version, allocator, load_before), "targets": targets}


def parse_args(argv: Sequence[str] | None) -> Options:
    p = argparse.ArgumentParser(
        prog="python -m benchmarks.ledger_bench", description=__doc__.split("\n")[0]
    )
    p.add_argument("--quick", action="store_true", help="1 s per arm, 0.3 s warm-up")
    p.add_argument("--seconds", type=float, help="measured seconds per arm and round (default 5)")
    p.add_argument("--warmup", type=float, help="warm-up seconds per arm and round (default 1)")
    p.add_argument("--rounds", type=int, default=3, help="interleaved rounds (default 3)")
    p.add_argument("--tasks", type=int, default=64, help="concurrent tasks (default 64)")
    p.add_argument("--no-cluster", action="store_true", help="single server only")
    p.add_argument("--out", type=Path, default=RESULTS_DIR, help="where ledger.json/.md go")
    a = p.parse_args(argv)
    seconds = a.seconds if a.seconds is not None else (1.0 if a.quick else 5.0)
    warmup = a.warmup if a.warmup is not None else (0.3 if a.quick else 1.0)
    if seconds <= 0 or warmup < 0 or a.rounds < 1 or a.tasks < 1:
        p.error("need --seconds > 0, --warmup >= 0, --rounds >= 1, --tasks >= 1")
    return Options(a.tasks, seconds, warmup, a.rounds, not a.no_cluster, a.out)


def main(argv: Sequence[str] | None = None) -> int:
    opts = parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="omnistock-bench-") as tmp:
        report = asyncio.run(run(opts, Path(tmp)))
    args = " ".join(sys.argv[1:] if argv is None else argv)
    report = {
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "config": {
            "tasks": opts.tasks,
            "seconds": opts.seconds,
            "warmup_s": opts.warmup_s,
            "rounds": opts.rounds,
            "skus": f"{opts.tasks} SKUs, one per task, one node, {STOCK} on hand",
            "ceiling_script": _CEILING_SOURCE,
            "command": f"python -m benchmarks.ledger_bench {args}".strip(),
        },
        **report,
    }
    opts.out.mkdir(parents=True, exist_ok=True)
    (opts.out / "ledger.json").write_text(json.dumps(report, indent=2) + "\n")
    text = markdown(report)
    (opts.out / "ledger.md").write_text(text)
    print(text)
    leaks = leaked(report)
    if leaks:
        print(f"CORRECTNESS FAILURE: units left reserved after {leaks}", file=sys.stderr)
        return 1
    return 0


def leaked(report: dict[str, Any]) -> list[str]:
    """Where stock was left reserved: the only failure the benchmark reports by its exit code."""
    out = []
    for t in report["targets"]:
        for arm, figures in t["arms"].items():
            out += [
                f"{t['target']}/{arm}/round {i + 1}"
                for i, r in enumerate(figures["rounds"])
                if r["reserved_left"]
            ]
        if t["reserve_only"]["reserved_left"]:
            out.append(f"{t['target']}/reserve-only")
    return out


if __name__ == "__main__":
    sys.exit(main())
