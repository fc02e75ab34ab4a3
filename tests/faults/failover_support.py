"""Support for the failover tests: a 3-shard Valkey cluster with one replica per shard, failovers
(graceful, and a primary killed with SIGKILL), a concurrent reservation load through the ledger
that retries every operation under its own op id until it is definite, and the checks that read
the ledger, its event streams and the journal back afterwards.

A shard is the pair (``EmbeddedCluster.primaries[i]``, ``replicas_of(i)[0]``); which of the two
is primary changes with each failover and is asked of the servers themselves.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import redis
import sqlalchemy as sa
from redis.asyncio.cluster import RedisCluster
from redis.backoff import NoBackoff
from redis.crc import key_slot
from redis.retry import Retry
from sqlalchemy.ext.asyncio import AsyncEngine

from omnistock.domain.errors import DomainError, InsufficientStock
from omnistock.domain.stock import Line
from omnistock.reservations import keys
from omnistock.reservations.redis_ledger import RedisLedger
from omnistock.reservations.runner import LedgerUnavailable, ScriptError
from omnistock.runtime.valkey_cluster import SLOTS, EmbeddedCluster
from omnistock.runtime.valkey_server import EmbeddedValkey
from omnistock.store.database import events
from omnistock.store.reconcile import projector_lag
from tests.integration.journal_support import stream_events

AUTO_FAILOVER_WAIT_S = 15.0
"""How long a replica is given to promote itself after its primary was killed (the embedded
cluster's cluster-node-timeout is 2 s; promotion takes about 3 s) before it is told to take
over (CLUSTER FAILOVER TAKEOVER)."""
SETTLE_S = 30.0
"""How long the cluster is given to agree on its new shape after a failover."""
DEFINITE_S = 60.0
"""How long one operation is retried under its op id before the test gives up on it."""
LONG_TTL_MS = 60 * 60 * 1000
FILLER_MB = 96
"""Data a primary is given to replicate to a stopped replica: more than loopback's socket
buffers hold (up to 32 MiB received, 4 MiB sent here), less than a replica's output buffer limit
(256 MiB)."""


def _client(node: EmbeddedValkey) -> redis.Redis:
    return node.client(
        decode_responses=True,
        socket_timeout=2.0,
        socket_connect_timeout=1.0,
        retry=Retry(NoBackoff(), 0),
    )


def role(node: EmbeddedValkey) -> str | None:
    """``master``, ``slave``, or None when the node does not answer."""
    if not node.is_running():
        return None
    try:
        with _client(node) as c:
            return str(c.info("replication")["role"])
    except redis.RedisError:
        return None


def _info(node: EmbeddedValkey) -> dict[str, str]:
    with _client(node) as c:
        text = str(c.execute_command("CLUSTER", "INFO"))
    return dict(line.split(":", 1) for line in text.splitlines() if ":" in line)


def _slot_owner(node: EmbeddedValkey, slot: int) -> int | None:
    """The port of the primary that ``node`` believes serves ``slot``."""
    with _client(node) as c:
        for first, last, owner, *_replicas in c.execute_command("CLUSTER", "SLOTS"):
            if first <= slot <= last:
                return int(owner[1])
    return None


def wait(check: Callable[[], str | None], timeout_s: float, what: str) -> float:
    """Polls ``check`` (None: done, else what is still missing); returns the seconds taken."""
    start = time.monotonic()
    while True:
        try:
            problem = check()
        except redis.RedisError as exc:
            problem = repr(exc)
        if problem is None:
            return time.monotonic() - start
        if time.monotonic() - start > timeout_s:
            raise AssertionError(f"timed out after {timeout_s} s waiting for {what}: {problem}")
        time.sleep(0.05)


@dataclass
class Failover:
    shard: int
    how: str  # "graceful", "automatic after SIGKILL", "takeover after SIGKILL"
    old_primary: int  # ports
    new_primary: int
    seconds: float  # from the failover's start to the replica answering as primary
    settled_s: float  # from its start until every live node agrees on the new owner


class FailoverCluster:
    """An ``EmbeddedCluster`` of 3 shards with a replica each, and failovers on it."""

    def __init__(self, base: Path) -> None:
        self.cluster = EmbeddedCluster(base, shards=3, replicas_per_shard=1, durability="strict")
        self.failovers: list[Failover] = []

    def start(self) -> None:
        self.cluster.start(timeout=60)

    def stop(self) -> None:
        self.cluster.stop()

    def pair(self, shard: int) -> tuple[EmbeddedValkey, EmbeddedValkey]:
        return self.cluster.primaries[shard], self.cluster.replicas_of(shard)[0]

    def primary(self, shard: int) -> EmbeddedValkey:
        for node in self.pair(shard):
            if role(node) == "master":
                return node
        raise AssertionError(f"shard {shard} has no primary")

    def replica(self, shard: int) -> EmbeddedValkey:
        primary = self.primary(shard)
        return next(n for n in self.pair(shard) if n is not primary)

    def slot_of(self, shard: int) -> int:
        """A slot the shard serves (its first, as the cluster was formed)."""
        return shard * SLOTS // self.cluster.shards

    def shard_of_slot(self, slot: int) -> int:
        return min(slot * self.cluster.shards // SLOTS, self.cluster.shards - 1)

    @property
    def seed_url(self) -> str:
        """A node that is up, to bootstrap a client from."""
        return next(n for n in self.cluster.nodes if n.is_running()).url

    def _agreed(self, shard: int, owner: EmbeddedValkey) -> str | None:
        """None once every live node serves the cluster and names ``owner`` for the shard."""
        slot = self.slot_of(shard)
        for node in self.cluster.nodes:
            if not node.is_running():
                continue
            state = _info(node).get("cluster_state")
            if state != "ok":
                return f"port {node.port}: cluster_state {state}"
            seen = _slot_owner(node, slot)
            if seen != owner.port:
                return f"port {node.port} names {seen} for slot {slot}, not {owner.port}"
        return None

    def _replica_synced(self, node: EmbeddedValkey) -> str | None:
        with _client(node) as c:
            info = c.info("replication")
        if info.get("role") != "slave" or info.get("master_link_status") != "up":
            return f"port {node.port}: {info.get('role')} link {info.get('master_link_status')}"
        return None

    def graceful(self, shard: int) -> Failover:
        """CLUSTER FAILOVER on the shard's replica: the primary stops taking writes, the replica
        catches up with its replication offset and takes over, so nothing acknowledged is lost."""
        old, new = self.primary(shard), self.replica(shard)
        start = time.monotonic()
        with _client(new) as c:
            c.execute_command("CLUSTER", "FAILOVER")
        promoted = wait(lambda: None if role(new) == "master" else "not yet", SETTLE_S, "promotion")
        wait(lambda: self._agreed(shard, new), SETTLE_S, "every node to agree")
        wait(lambda: self._replica_synced(old), SETTLE_S, "the old primary to follow")
        done = Failover(shard, "graceful", old.port, new.port, promoted, time.monotonic() - start)
        self.failovers.append(done)
        return done

    def kill_primary(self, shard: int) -> Failover:
        """SIGKILL the shard's primary; its replica is promoted by the cluster itself once the
        other primaries agree it failed (cluster-node-timeout 2 s), or, if that takes longer than
        ``AUTO_FAILOVER_WAIT_S``, by CLUSTER FAILOVER TAKEOVER. The killed node is started again
        from its data and rejoins as the new primary's replica. Replication is asynchronous:
        writes the primary acknowledged but had not yet sent to its replica are lost."""
        old, new = self.primary(shard), self.replica(shard)
        start = time.monotonic()
        old.kill()
        return self._promoted(shard, old, new, start, "")

    def kill_primary_behind(
        self, shard: int, make_ready: Callable[[], Callable[[], bool]]
    ) -> Failover:
        """As ``kill_primary``, with the replica held behind first, so that the failover loses
        writes for certain. On loopback a primary hands its replication stream to the kernel in
        the same event loop turn as its replies, and what the kernel holds still reaches the
        replica after the primary dies: a SIGKILL alone loses nothing. So the replica is stopped
        (SIGSTOP), the primary is given FILLER_MB of other data to replicate, more than the
        socket buffers hold, and the ledger writes acknowledged after that wait in the
        primary's own output buffer. Once ``make_ready()``'s check (made after the filler) says
        enough were acknowledged, the primary is killed and the replica resumed."""
        old, new = self.primary(shard), self.replica(shard)
        assert new.pid is not None
        os.kill(new.pid, signal.SIGSTOP)
        try:
            tag = next(
                f"fill{i}"
                for i in itertools.count()
                if self.shard_of_slot(key_slot(f"fill{i}".encode())) == shard
            )
            with _client(old) as c:
                for i in range(FILLER_MB // 4):
                    c.set(f"faults-filler:{{{tag}}}:{i}", b"x" * (4 << 20))
            ready = make_ready()
            wait(lambda: None if ready() else "not yet", SETTLE_S, "writes the replica lacks")
        finally:
            start = time.monotonic()
            old.kill()
            os.kill(new.pid, signal.SIGCONT)
        return self._promoted(shard, old, new, start, "replica held behind, ")

    def _promoted(
        self, shard: int, old: EmbeddedValkey, new: EmbeddedValkey, start: float, note: str
    ) -> Failover:
        how = f"{note}automatic after SIGKILL"
        try:
            promoted = wait(
                lambda: None if role(new) == "master" else "not yet",
                AUTO_FAILOVER_WAIT_S,
                "automatic promotion",
            )
        except AssertionError:
            how = f"{note}takeover after SIGKILL"
            with _client(new) as c:
                c.execute_command("CLUSTER", "FAILOVER", "TAKEOVER")
            promoted = wait(
                lambda: None if role(new) == "master" else "not yet", SETTLE_S, "takeover"
            )
            promoted += AUTO_FAILOVER_WAIT_S
        wait(lambda: self._agreed(shard, new), SETTLE_S, "every live node to agree")
        settled = time.monotonic() - start
        old.start()
        wait(lambda: self._replica_synced(old), SETTLE_S, "the killed primary to rejoin")
        wait(lambda: self._agreed(shard, new), SETTLE_S, "every node to agree")
        done = Failover(shard, how, old.port, new.port, promoted, settled)
        self.failovers.append(done)
        return done


# -- the load ----------------------------------------------------------------------------------


@dataclass
class Acked:
    op_id: str
    reservation_id: str
    lines: list[tuple[str, str, int]]  # (node, sku, qty)
    at: float


@dataclass
class ReserveLoad:
    """Concurrent tasks reserving through the cluster ledger: one line mostly, every fourth
    reservation two lines in partitions of different shards (a saga). An operation that fails
    (the ledger unavailable while a shard fails over) is sent again under the same op id until
    it is definite: reserved (acknowledged) or refused."""

    ledger: RedisLedger
    node: str
    skus: list[str]
    tasks: int = 16
    uid: str = field(default_factory=lambda: uuid.uuid4().hex[:8])
    acked: list[Acked] = field(default_factory=list)
    refused: int = 0
    retried_ops: int = 0
    retries: int = 0
    script_errors: list[str] = field(default_factory=list)
    longest_s: float = 0.0  # the longest an operation took to become definite
    stop: asyncio.Event = field(default_factory=asyncio.Event)
    _serial: Any = field(default_factory=itertools.count)

    def op(self) -> str:
        return f"fo-{self.uid}-{next(self._serial)}"

    async def seed(self, on_hand: int = 10_000_000) -> None:
        for sku in self.skus:
            await self.ledger.set_stock(f"seed-{self.uid}-{sku}", self.node, sku, on_hand)

    async def reserve(self, lines: list[tuple[str, str, int]]) -> None:
        op_id = self.op()
        start = time.monotonic()
        tries = 0
        while True:
            try:
                r = await self.ledger.reserve(
                    op_id, [Line(n, s, q) for n, s, q in lines], ttl_ms=LONG_TTL_MS
                )
                self.acked.append(Acked(op_id, r.reservation_id, lines, time.monotonic()))
                break
            except InsufficientStock:
                self.refused += 1
                break
            except (LedgerUnavailable, ScriptError) as exc:
                if isinstance(exc, ScriptError):
                    self.script_errors.append(str(exc))
                tries += 1
                if time.monotonic() - start > DEFINITE_S:
                    raise AssertionError(f"{op_id} not definite after {DEFINITE_S} s") from exc
                await asyncio.sleep(0.05)
        if tries:
            self.retried_ops += 1
            self.retries += tries
        self.longest_s = max(self.longest_s, time.monotonic() - start)

    async def _task(self, index: int) -> None:
        for n in itertools.count():
            if self.stop.is_set():
                return
            sku = self.skus[(index * 5 + n) % len(self.skus)]
            lines = [(self.node, sku, 1)]
            if n % 4 == 3:
                other = self.skus[(index * 5 + n + len(self.skus) // 2) % len(self.skus)]
                lines.append((self.node, other, 1))
            await self.reserve(lines)

    async def run(self) -> None:
        await asyncio.gather(*(self._task(i) for i in range(self.tasks)))

    def acked_since(self, moment: float) -> int:
        return sum(1 for a in self.acked if a.at >= moment)


def skus_on_every_shard(fc: FailoverCluster, client: Any, per_shard: int) -> list[str]:
    """SKU names, ``per_shard`` of them in partitions on each shard (as the cluster was
    formed)."""
    uid = uuid.uuid4().hex[:8]
    found: dict[int, list[str]] = {s: [] for s in range(fc.cluster.shards)}
    for i in itertools.count():
        sku = f"fo-{uid}-{i}"
        shard = fc.shard_of_slot(client.keyslot(keys.tag(keys.partition_of(sku))))
        if len(found[shard]) < per_shard:
            found[shard].append(sku)
        if all(len(v) >= per_shard for v in found.values()):
            return [sku for v in found.values() for sku in v]
    raise AssertionError("unreachable")


# -- reading it back ---------------------------------------------------------------------------


async def lost_reservations(ledger: RedisLedger, acked: list[Acked]) -> list[Acked]:
    """The acknowledged reservations the ledger no longer has as they were acknowledged."""
    lost: list[Acked] = []

    async def one(a: Acked) -> None:
        try:
            r = await ledger.get_reservation(a.reservation_id)
        except DomainError:  # not found, or a part of it is gone
            lost.append(a)
            return
        got = sorted((line.node_id, line.sku, line.qty) for line in r.lines)
        if r.status.value != "active" or got != sorted(a.lines):
            lost.append(a)

    for i in range(0, len(acked), 200):
        await asyncio.gather(*(one(a) for a in acked[i : i + 200]))
    return lost


async def reserved_differences(
    ledger: RedisLedger, node: str, skus: list[str], acked: list[Acked]
) -> dict[str, tuple[int, int]]:
    """Positions whose reserved count is not what the acknowledged reservations add up to:
    sku -> (ledger, acknowledged)."""
    expected = dict.fromkeys(skus, 0)
    for a in acked:
        for _n, sku, qty in a.lines:
            expected[sku] += qty
    live = await ledger.availability_many(skus)
    out = {}
    for sku in skus:
        have = next((p.reserved for p in live[sku] if p.node_id == node), 0)
        if have != expected[sku]:
            out[sku] = (have, expected[sku])
    return out


async def open_cluster_client(url: str) -> Any:
    client = RedisCluster.from_url(url, socket_timeout=5, socket_connect_timeout=2)
    await client.initialize()
    return client


async def wait_lag_zero(client: Any, timeout_s: float = 120) -> float:
    start = time.monotonic()
    while (lag := await projector_lag(client, cluster=True)) != 0:
        assert time.monotonic() - start < timeout_s, f"projector lag still {lag}"
        await asyncio.sleep(0.2)
    return time.monotonic() - start


async def journal_lost_events(engine: AsyncEngine, client: Any) -> list[dict[str, Any]]:
    """Journal events whose stream entry the ledger no longer has: journaled from a primary
    before it died, and missing from the replica that took over. (The streams are not trimmed
    at this size.)"""
    stream = await stream_events(client, cluster=True)
    async with engine.connect() as conn:
        rows = [dict(r._mapping) for r in await conn.execute(sa.select(events))]
    return [r for r in rows if r["event_id"] not in stream]


@dataclass
class Reconciled:
    code: int
    output: str
    ledger_diffs: dict[tuple[str, str, str], int]  # (node, sku, field) -> journal - ledger
    positions: set[tuple[str, str]]


def run_reconcile(data_dir: Path, seed_url: str, database_url: str) -> Reconciled:
    """``omnistock reconcile`` on the cluster, as an operator runs it."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("OMNISTOCK_")}
    env.update(
        OMNISTOCK_DATA_DIR=str(data_dir),
        OMNISTOCK_REDIS_URL=seed_url,
        OMNISTOCK_REDIS_CLUSTER="1",
        OMNISTOCK_DATABASE_URL=database_url,
    )
    done = subprocess.run(
        [sys.executable, "-m", "omnistock.runtime.cli", "reconcile"],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    diffs: dict[tuple[str, str, str], int] = {}
    positions: set[tuple[str, str]] = set()
    for line in done.stdout.splitlines():
        parts = line.split("\t")
        if len(parts) < 5 or parts[0] == "node":
            continue
        node, sku, fld, journal, ledger = parts[:5]
        positions.add((node, sku))
        note = parts[5] if len(parts) > 5 else ""
        if not note.startswith("journal inconsistent") and "-" not in (journal, ledger):
            diffs[(node, sku, fld)] = int(journal) - int(ledger)
    return Reconciled(done.returncode, done.stdout + done.stderr, diffs, positions)
