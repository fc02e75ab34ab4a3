"""Projector benchmark: CPU per journaled event under a steady reserve/release load.

A load process (``--rate`` reserve/release pairs per second over 64 tasks, one line each, through
``open_ledger`` with strict durability) writes to an embedded Valkey while this process runs one
projector into SQLite, as ``omnistock serve`` runs it beside its workers. Two arms, interleaved
in rounds on the same Valkey and database:

* ``linger``: the projector as shipped (``linger_ms=25``): after a batch that did not fill a
  read, it waits that long so that the next read takes more entries;
* ``eager``: the same projector with ``linger_ms=0``: it reads again as soon as it has journaled.

Each round lasts as long as the load (``--seconds``) plus the time the projector takes to catch
up (lag 0); the figures are this process's CPU (every thread: the event loop and the SQLite
driver's) per event journaled, the batches (reads that took entries, one transaction each) and
the lag sampled while the load ran. The journal is then checked against the stream: every event
of the round journaled once (exit code 1 otherwise).
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import redis.asyncio as aioredis
import sqlalchemy as sa

from omnistock.domain.stock import Line
from omnistock.reservations import keys
from omnistock.reservations.connect import open_ledger
from omnistock.runtime.valkey_server import EmbeddedValkey
from omnistock.store.database import create_schema, events, open_engine
from omnistock.store.projector import Projector

RESULTS_DIR = Path(__file__).resolve().parent / "results"
ROOT = Path(__file__).resolve().parent.parent
TASKS = 64
NODE = "bench-node"
TTL_MS = 15 * 60 * 1000
ARMS = {"linger": 25, "eager": 0}
CATCH_UP_S = 60


class BenchmarkError(RuntimeError):
    """The journal does not hold the round's events exactly once."""


# -- the load (a process of its own) -----------------------------------------------------------


async def load(url: str, seconds: float, rate: float, tag: str) -> None:
    """``rate`` reserve/release pairs per second, spread over TASKS tasks on a fixed schedule."""
    conn = await open_ledger(url, durability="strict")
    ledger = conn.ledger
    skus = [f"bench-sku-{i:03d}" for i in range(TASKS)]
    interval = TASKS / rate
    stop = time.monotonic() + seconds

    async def task(i: int) -> None:
        due = time.monotonic() + interval * i / TASKS
        n = 0
        while time.monotonic() < stop:
            await asyncio.sleep(max(0.0, due - time.monotonic()))
            due += interval
            n += 1
            op = f"{tag}.{i}.{n}"
            reservation = await ledger.reserve(op, [Line(NODE, skus[i], 1)], ttl_ms=TTL_MS)
            await ledger.release(f"{op}.rel", reservation.reservation_id)

    try:
        await asyncio.gather(
            *(ledger.set_stock(f"{tag}.stock.{s}", NODE, s, 1_000_000) for s in skus)
        )
        await asyncio.gather(*(task(i) for i in range(TASKS)))
    finally:
        await conn.aclose()


# -- the projector's side ----------------------------------------------------------------------


async def journal_count(engine: Any) -> int:
    async with engine.connect() as conn:
        return int((await conn.execute(sa.select(sa.func.count()).select_from(events))).scalar())


async def stream_mark(client: Any) -> tuple[bytes, int]:
    """Where the single server's stream stands: its last entry id and how many entries were
    ever added to it (("0-0", 0) before the first)."""
    try:
        info = await client.xinfo_stream(keys.stream_key(0))
    except aioredis.ResponseError:  # no stream yet
        return b"0-0", 0
    return info["last-generated-id"], int(info["entries-added"])


async def events_since(client: Any, mark: tuple[bytes, int]) -> int:
    """Events (lines) in the entries added to the stream since ``mark``: each entry holds one
    per line. The stream is capped (trimmed to about ``stream_maxlen`` entries), so a count of
    the whole stream falls short of the journal once enough rounds ran; the round's own entries
    are counted instead, and a round whose entries were trimmed already fails."""
    start, added_before = mark
    entries = await client.xrange(keys.stream_key(0), min=b"(" + start)
    _last, added = await stream_mark(client)
    if len(entries) != added - added_before:
        raise BenchmarkError(
            f"{added - added_before} entries added this round, {len(entries)} still in the "
            "stream: it was trimmed before they could be counted"
        )
    return sum(fields[b"e"].count(b"\n") + 1 for _entry_id, fields in entries)


async def one_round(
    url: str, engine: Any, arm: str, linger_ms: int, seconds: float, rate: float, tag: str
) -> dict[str, Any]:
    client = aioredis.from_url(url)
    projector = Projector(client, engine, cluster=False, linger_ms=linger_ms)
    await projector.ensure_groups()
    journaled_before = await journal_count(engine)
    mark = await stream_mark(client)
    command = [sys.executable, "-m", "benchmarks.projector_bench", "--load", url]
    command += ["--seconds", str(seconds), "--rate", str(rate), "--tag", tag]
    lags: list[int] = []
    cpu_start, wall_start = time.process_time(), time.monotonic()
    worker = asyncio.create_task(projector.run())
    try:
        proc = await asyncio.create_subprocess_exec(*command, cwd=ROOT)
        while proc.returncode is None:
            lags.append(await projector.lag())
            try:
                await asyncio.wait_for(proc.wait(), timeout=0.2)
            except TimeoutError:
                pass
        if proc.returncode != 0:
            raise BenchmarkError(f"the load process failed ({proc.returncode})")
        deadline = time.monotonic() + CATCH_UP_S
        while (lag := await projector.lag()) > 0:
            if time.monotonic() > deadline:
                raise BenchmarkError(f"{arm}: lag still {lag} after {CATCH_UP_S} s")
            await asyncio.sleep(0.01)
        cpu_s, wall_s = time.process_time() - cpu_start, time.monotonic() - wall_start
    finally:
        worker.cancel()
        await asyncio.gather(worker, return_exceptions=True)
    journaled = await journal_count(engine) - journaled_before
    in_stream = await events_since(client, mark)
    await client.aclose()
    if journaled != projector.projected or journaled != in_stream:
        raise BenchmarkError(
            f"{arm}: {journaled} events journaled this round, projector says "
            f"{projector.projected}; the round's entries in the stream hold {in_stream}"
        )
    return {
        "events": journaled,
        "cpu_usec_per_event": cpu_s * 1e6 / max(1, journaled),
        "batches": projector.batches,
        "events_per_batch": journaled / max(1, projector.batches),
        "documents_upserted": projector.parts,
        "lag_max": max(lags, default=0),
        "lag_mean": statistics.fmean(lags) if lags else 0.0,
        "wall_s": wall_s,
    }


async def run(opts: argparse.Namespace, base: Path) -> dict[str, Any]:
    rounds: dict[str, list[dict[str, Any]]] = {arm: [] for arm in ARMS}
    with EmbeddedValkey(base / "valkey", durability="strict") as server:
        engine = open_engine(f"sqlite+aiosqlite:///{base / 'journal.sqlite'}", timeout_s=10)
        await create_schema(engine)
        try:
            names = list(ARMS)
            for r in range(opts.rounds):
                for arm in names[r % len(names) :] + names[: r % len(names)]:
                    result = await one_round(
                        server.url, engine, arm, ARMS[arm], opts.seconds, opts.rate, f"{arm}{r}"
                    )
                    rounds[arm].append(result)
                    print(
                        f"round {r + 1}/{opts.rounds} {arm:6s} {result['events']:6d} events  "
                        f"{result['cpu_usec_per_event']:5.1f} µs CPU/event  "
                        f"{result['events_per_batch']:6.1f} events/batch  "
                        f"lag max {result['lag_max']}",
                        file=sys.stderr,
                        flush=True,
                    )
        finally:
            await engine.dispose()
    figures = ("cpu_usec_per_event", "events_per_batch", "lag_max", "lag_mean")
    arms = {
        arm: {f: statistics.median(r[f] for r in results) for f in figures} | {"rounds": results}
        for arm, results in rounds.items()
    }
    return {
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "config": {
            "rate_pairs_per_s": opts.rate,
            "seconds": opts.seconds,
            "rounds": opts.rounds,
            "tasks": TASKS,
            "linger_ms": ARMS,
            "command": "python -m benchmarks.projector_bench",
        },
        "machine": {
            "cpu_count": os.cpu_count(),
            "platform": platform.platform(),
            "python": platform.python_version(),
            "load_average_after": [round(x, 2) for x in os.getloadavg()],
        },
        "arms": arms,
        "linger_vs_eager_cpu": arms["linger"]["cpu_usec_per_event"]
        / arms["eager"]["cpu_usec_per_event"],
    }


def markdown(report: dict[str, Any]) -> str:
    c, m = report["config"], report["machine"]
    out = [
        "# Projector benchmark",
        "",
        f"{report['date']}; {m['cpu_count']} CPUs, {m['platform']}, Python {m['python']}; "
        f"load average after {m['load_average_after']}. {c['rate_pairs_per_s']:g} "
        f"reserve/release pairs per second from another process over {c['tasks']} tasks, "
        f"{c['seconds']:g} s a round, {c['rounds']} interleaved rounds, medians shown. "
        f"Command: `{c['command']}`.",
        "",
        "| arm | linger ms | CPU µs/event | events/batch | lag max (entries) | lag mean |",
        "| --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for arm, a in report["arms"].items():
        out.append(
            f"| {arm} | {c['linger_ms'][arm]} | {a['cpu_usec_per_event']:.1f} | "
            f"{a['events_per_batch']:.1f} | {a['lag_max']:.0f} | {a['lag_mean']:.1f} |"
        )
    out += [
        "",
        f"linger/eager CPU per event: {report['linger_vs_eager_cpu']:.2f}. CPU: this process's "
        "(the projector's event loop and the SQLite driver's thread) per event journaled, from "
        "the load's start until the projector caught up. Every round's events were checked "
        "journaled exactly once.",
        "",
    ]
    return "\n".join(out)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m benchmarks.projector_bench", description=__doc__.split("\n")[0]
    )
    p.add_argument("--rate", type=float, default=2500, help="pairs per second (default 2500)")
    p.add_argument("--seconds", type=float, default=6, help="load per round (default 6)")
    p.add_argument("--rounds", type=int, default=3, help="interleaved rounds (default 3)")
    p.add_argument("--out", type=Path, default=RESULTS_DIR, help="where projector.json/.md go")
    p.add_argument("--load", metavar="URL", help=argparse.SUPPRESS)
    p.add_argument("--tag", default="load", help=argparse.SUPPRESS)
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    opts = parse_args(argv)
    if opts.load:
        asyncio.run(load(opts.load, opts.seconds, opts.rate, opts.tag))
        return 0
    with tempfile.TemporaryDirectory(prefix="omnistock-projector-bench-") as tmp:
        try:
            report = asyncio.run(run(opts, Path(tmp)))
        except BenchmarkError as exc:
            print(f"projector benchmark failed: {exc}", file=sys.stderr)
            return 1
    opts.out.mkdir(parents=True, exist_ok=True)
    (opts.out / "projector.json").write_text(json.dumps(report, indent=2) + "\n")
    text = markdown(report)
    (opts.out / "projector.md").write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
