"""Valkey killed with SIGKILL under reservation load through the HTTP API, and restarted from its
AOF: with ``strict`` durability nothing acknowledged is lost; with ``fast`` the loss is measured.

``omnistock serve`` (two workers) runs on a Valkey the test starts itself (``OMNISTOCK_REDIS_URL``),
so the test can kill it and bring it back on the same port from the same data directory. Six
HTTP clients reserve one to three lines (some SKUs scarce, so some reservations are refused),
commit or release some of their reservations, and repeat every request that got no answer or a
5xx under its Idempotency-Key until the answer is definite. Meanwhile Valkey is killed at random
moments (at least ``min_acks`` acknowledgements after each restart, then a random delay) and
restarted after a random outage, short enough for the service's reconnect to bridge it, except
for one kill a run that keeps Valkey down past the request deadline, so requests are cut off
and repeated in every run; the moments come from a seeded RNG whose seed is printed
(``OMNISTOCK_FAULTS_SEED`` repeats a run's kill schedule and clients' choices; the threads'
interleaving is the machine's).

Afterwards every acknowledged reservation is read back (``GET /v1/reservations/{id}``) and every
position (``GET /v1/stock/...``):

* ``strict`` (appendfsync always): every acknowledged reservation is there with its lines, in
  the state its last acknowledged change left it (active, committed or released); every
  position's reserved is the sum of the active reservations' lines, on_hand is the starting stock
  less what commits took (units conserved), reserved + held <= on_hand, available >= 0.
* ``fast`` (appendfsync everysec): the same invariants hold of whatever the ledger kept; the
  acknowledged changes it no longer shows are counted per kill with how long before the kill they
  were acknowledged, and printed. Loss fails nothing here; a broken invariant does.

The default profile kills Valkey 3 times (strict) and 2 times (fast); with
``OMNISTOCK_FAULTS_PROFILE=full``, 25 times each. Run with ``-s`` to see the figures.
"""

from __future__ import annotations

import os
import random
import statistics
import threading
import uuid
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from omnistock.runtime.valkey_server import EmbeddedValkey
from tests.faults.crash_support import (
    DEFINITE_WITHIN_S,
    Booking,
    Client,
    Kill,
    Stock,
    check_invariants,
    crash_repeatedly,
    lines_of,
    lost_acks,
    read_back,
    start_service,
)

FULL = os.environ.get("OMNISTOCK_FAULTS_PROFILE", "") == "full"
KILLS = {"strict": 25 if FULL else 3, "fast": 25 if FULL else 2}
CLIENTS = 6


def seed_of(durability: str) -> int:
    raw = os.environ.get("OMNISTOCK_FAULTS_SEED")
    seed = int(raw) if raw else random.SystemRandom().randrange(2**32)
    print(f"\n[crash {durability}] seed={seed} (OMNISTOCK_FAULTS_SEED={seed} repeats it)")
    return seed


@dataclass
class Run:
    seed: int
    kills: list[Kill]
    clients: list[Client]
    stock: Stock
    seen: dict[str, dict | None]
    positions: dict[tuple[str, str], dict]

    @property
    def bookings(self) -> list[Booking]:
        return [b for c in self.clients for b in c.bookings]

    def figures(self) -> str:
        acks = [a for c in self.clients for a in c.acks]
        kinds = Counter(f"{a.kind}:{a.status}" for a in acks)
        retried = sum(1 for a in acks if a.tries > 1)
        unknown = sum(c.unknown for c in self.clients)
        in_flight = [k.in_flight for k in self.kills]
        outage = [k.restarted_at - k.at for k in self.kills]
        return (
            f"seed={self.seed} kills={len(self.kills)} definite answers={len(acks)} "
            f"{dict(sorted(kinds.items()))}; answered only after a retry: {retried}; "
            f"tries without a definite answer: {unknown}; clients in flight at each kill: "
            f"{in_flight}; outage s: median {statistics.median(outage):.2f} "
            f"max {max(outage):.2f}"
        )


def crash_run(tmp_path: Path, durability: str) -> Run:
    seed = seed_of(durability)
    rng = random.Random(seed)
    server = EmbeddedValkey(tmp_path / "valkey", durability=durability)
    server.start()
    try:
        service = start_service(tmp_path / "data", server.url, durability)
        try:
            stock = Stock.make(uuid.uuid4().hex[:8])
            stock.put(service.base)
            stop = threading.Event()
            clients = [
                Client(i, service.base, stock, rng.randrange(2**32), stop) for i in range(CLIENTS)
            ]
            for client in clients:
                client.start()
            try:
                kills = crash_repeatedly(server, clients, KILLS[durability], rng)
            finally:
                stop.set()
                for client in clients:
                    client.join(DEFINITE_WITHIN_S + 10)
            for client in clients:
                assert not client.is_alive(), f"{client.name} did not finish (seed {seed})"
                assert client.error is None, f"{client.error!r} (seed {seed})"
                assert not client.anomalies, (client.anomalies[:5], seed)
            seen, positions = read_back(
                service.base, stock, [b for c in clients for b in c.bookings]
            )
            run = Run(seed, kills, clients, stock, seen, positions)
            print(f"[crash {durability}] {run.figures()}")
            assert sum(c.unknown for c in clients) > 0, (
                f"no request was cut off by a kill: the run proved nothing (seed {seed})"
            )
            return run
        except BaseException:
            print(service.log_tail())
            raise
        finally:
            service.stop()
    finally:
        server.stop()


def test_strict_durability_loses_nothing_acknowledged_across_kills(tmp_path: Path) -> None:
    run = crash_run(tmp_path, "strict")
    seed = run.seed
    wrong = []
    for booking in run.bookings:
        view = run.seen[booking.rid]
        if view is None:
            wrong.append(f"{booking.rid}: acknowledged, gone after a restart")
        elif view["status"] != booking.expected or lines_of(view) != booking.lines:
            wrong.append(f"{booking.rid}: {view} != {booking.expected} {booking.lines}")
    assert not wrong, (len(wrong), wrong[:10], f"seed {seed}")
    # With nothing lost, a commit or release is never refused: its reservation is active.
    refused = [a for c in run.clients for a in c.refusals if a.kind != "reserve"]
    assert not refused, (refused[:5], f"seed {seed}")
    assert all(a.status == 409 for c in run.clients for a in c.refusals), f"seed {seed}"
    problems = check_invariants(run.stock, run.seen, run.positions)
    assert not problems, (problems[:10], f"seed {seed}")


def test_fast_durability_keeps_the_invariants_and_its_loss_is_measured(tmp_path: Path) -> None:
    run = crash_run(tmp_path, "fast")
    seed = run.seed
    lost = lost_acks(run.bookings, run.seen, run.kills)
    for booking in run.bookings:
        view = run.seen[booking.rid]
        if view is not None:
            assert lines_of(view) == booking.lines, (booking.rid, view, f"seed {seed}")
            # Only a lost commit or release explains a state other than the acknowledged one.
            assert view["status"] in (booking.expected, "active"), (view, f"seed {seed}")
    problems = check_invariants(run.stock, run.seen, run.positions)
    assert not problems, (problems[:10], f"seed {seed}")

    per_kill = Counter(item.kill for item in lost)
    spans = [item.before_kill_s for item in lost]
    acked = len([a for c in run.clients for a in c.acks if a.status in (200, 201)])
    print(
        f"[crash fast] acknowledged changes lost: {len(lost)} of {acked} over "
        f"{len(run.kills)} kills; per kill: {[per_kill.get(i, 0) for i in range(len(run.kills))]}"
        + (
            f"; acknowledged {min(spans) * 1000:.0f} to {max(spans) * 1000:.0f} ms before the kill"
            if spans
            else ""
        )
    )
