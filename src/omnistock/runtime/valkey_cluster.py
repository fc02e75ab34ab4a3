"""Embedded Valkey cluster: several ``EmbeddedValkey`` nodes joined into one cluster.

The cluster is formed from Python with plain cluster commands (no ``redis-cli``, which
the wheel does not ship): give each primary an even share of the 16384 slots, MEET the
nodes, attach replicas, then wait until *every* node agrees the cluster is healthy.
Waiting on every node, not just one, matters: a client that bootstraps from a node
whose view is still partial gets MOVED/CLUSTERDOWN errors that look like flaky tests.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from pathlib import Path

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from omnistock.runtime.valkey_server import EmbeddedValkey, StartStop, ValkeyStartError

log = logging.getLogger("omnistock.runtime.valkey")

SLOTS = 16384


class ClusterStartError(ValkeyStartError):
    """The nodes started but did not converge into a healthy cluster in time."""


def _client(node: EmbeddedValkey) -> redis.Redis:
    return node.client(
        decode_responses=True,
        socket_timeout=2.0,
        socket_connect_timeout=1.0,
        retry=Retry(NoBackoff(), 0),
    )


def _cmd(node: EmbeddedValkey, *args: object) -> object:
    # Split command words ("CLUSTER", "INFO") so redis-py applies no response callback
    # and we parse the server's raw reply, independent of the redis-py version.
    with _client(node) as client:
        return client.execute_command(*args)


def _info(text: str) -> dict[str, str]:
    return dict(line.split(":", 1) for line in text.splitlines() if ":" in line)


class EmbeddedCluster(StartStop):
    """``shards`` primaries (and ``replicas_per_shard`` replicas each) under ``base_dir``."""

    def __init__(
        self,
        base_dir: Path,
        *,
        shards: int = 3,
        replicas_per_shard: int = 0,
        durability: str = "strict",
    ) -> None:
        if shards < 1 or replicas_per_shard < 0:
            raise ValueError("need shards >= 1 and replicas_per_shard >= 0")
        self.base_dir = Path(base_dir)
        self.shards = shards
        self.replicas_per_shard = replicas_per_shard
        count = shards * (1 + replicas_per_shard)
        # Replicas sync diskless; the default 5 s wait for more replicas to join the
        # same transfer only slows startup and restarts down here.
        extra = {"repl-diskless-sync-delay": "0"}
        self._nodes = [
            EmbeddedValkey(
                self.base_dir / f"node-{i}", durability=durability, cluster=True, extra_config=extra
            )
            for i in range(count)
        ]

    # -- topology -------------------------------------------------------------------

    @property
    def nodes(self) -> list[EmbeddedValkey]:
        return list(self._nodes)

    @property
    def primaries(self) -> list[EmbeddedValkey]:
        return self._nodes[: self.shards]

    @property
    def replicas(self) -> list[EmbeddedValkey]:
        return self._nodes[self.shards :]

    def replicas_of(self, shard: int) -> list[EmbeddedValkey]:
        first = self.shards + shard * self.replicas_per_shard
        return self._nodes[first : first + self.replicas_per_shard]

    @property
    def startup_nodes(self) -> list[tuple[str, int]]:
        return [(node.host, node.port) for node in self._nodes]

    @property
    def url(self) -> str:
        return self.primaries[0].url

    # -- lifecycle ------------------------------------------------------------------

    def start(self, timeout: float = 30.0) -> None:
        """Start every node, form the cluster if it is new, and wait until healthy.

        A cluster restarted from its data dirs (same object, same ports) keeps its
        nodes.conf, so it is not formed again, only waited on.
        """
        deadline = time.monotonic() + timeout
        try:
            for node in self._nodes:
                node.start(timeout=max(1.0, deadline - time.monotonic()))
            if not self._already_formed():
                self._form(deadline)
            self._wait(deadline, self._healthy, f"a healthy cluster on every node ({timeout}s)")
        except BaseException:
            self.stop()
            raise
        log.info(
            "valkey cluster up: %d shards, %d replicas each, %s",
            self.shards,
            self.replicas_per_shard,
            self.startup_nodes,
        )

    def _already_formed(self) -> bool:
        info = _info(str(_cmd(self._nodes[0], "CLUSTER", "INFO")))
        return int(info.get("cluster_slots_assigned", "0")) > 0

    def _form(self, deadline: float) -> None:
        for shard, node in enumerate(self.primaries):
            first = shard * SLOTS // self.shards
            last = (shard + 1) * SLOTS // self.shards - 1
            # Distinct config epochs up front spare the nodes a round of epoch-collision
            # resolution, which is what redis-cli --cluster create does as well.
            _cmd(node, "CLUSTER", "SET-CONFIG-EPOCH", shard + 1)
            _cmd(node, "CLUSTER", "ADDSLOTSRANGE", first, last)
        first_node = self._nodes[0]
        for node in self._nodes[1:]:
            _cmd(first_node, "CLUSTER", "MEET", node.host, node.port, node.cluster_bus_port)
        if self.replicas_per_shard:
            # REPLICATE needs the replica to know its primary's id, i.e. gossip has run.
            self._wait(deadline, self._knows_everyone, "all nodes to learn about each other")
            for shard, primary in enumerate(self.primaries):
                primary_id = str(_cmd(primary, "CLUSTER", "MYID"))
                for replica in self.replicas_of(shard):
                    _cmd(replica, "CLUSTER", "REPLICATE", primary_id)

    def _knows_everyone(self, node: EmbeddedValkey) -> str | None:
        known = int(_info(str(_cmd(node, "CLUSTER", "INFO")))["cluster_known_nodes"])
        if known != len(self._nodes):
            return f"knows {known} of {len(self._nodes)} nodes"
        return None

    def _healthy(self, node: EmbeddedValkey) -> str | None:
        """None if this node sees a healthy, complete cluster, else what is missing."""
        if problem := self._knows_everyone(node):
            return problem
        info = _info(str(_cmd(node, "CLUSTER", "INFO")))
        if info.get("cluster_state") != "ok":
            return f"cluster_state:{info.get('cluster_state')}"
        covered = 0
        for entry in _cmd(node, "CLUSTER", "SLOTS"):  # type: ignore[union-attr]
            first, last, *owners = entry
            covered += last - first + 1
            if len(owners) != 1 + self.replicas_per_shard:
                return f"slots {first}-{last} have {len(owners) - 1} replicas"
        if covered != SLOTS:
            return f"CLUSTER SLOTS covers {covered} of {SLOTS} slots"
        if node in self.replicas:
            with _client(node) as client:
                link = client.info("replication").get("master_link_status")
            if link != "up":
                return f"master_link_status:{link}"
        return None

    def _wait(
        self,
        deadline: float,
        probe: Callable[[EmbeddedValkey], str | None],
        what: str,
    ) -> None:
        while True:
            problems: dict[int, str] = {}
            for node in self._nodes:
                try:
                    problem = probe(node)
                except redis.RedisError as exc:
                    problem = repr(exc)
                if problem:
                    problems[node.port] = problem
            if not problems:
                return
            if time.monotonic() >= deadline:
                detail = "; ".join(f"port {port}: {p}" for port, p in problems.items())
                raise ClusterStartError(f"timed out waiting for {what}: {detail}")
            time.sleep(0.05)

    def stop(self) -> None:
        """Stop every node; idempotent. Replicas go first, so no primary's SHUTDOWN
        waits for a replica to catch up."""
        for node in reversed(self._nodes):
            node.stop()

    def check(self) -> None:
        """Raise ``ValkeyCrashed`` if any node died without being stopped."""
        for node in self._nodes:
            node.check()

    def monitor(self, on_exit: Callable[[int], None]) -> None:
        """Register ``on_exit(returncode)`` for an unexpected exit of any node."""
        for node in self._nodes:
            node.monitor(on_exit)

    def __repr__(self) -> str:
        return (
            f"EmbeddedCluster(shards={self.shards}, replicas_per_shard={self.replicas_per_shard}, "
            f"ports={[node.port for node in self._nodes]})"
        )
