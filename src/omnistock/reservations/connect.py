"""Opens a ledger on a Redis/Valkey server or cluster, with the durability the settings ask, on
a server that never evicts what the ledger keeps."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import redis.asyncio as aioredis
from redis import exceptions as redis_errors
from redis.asyncio.cluster import RedisCluster

from omnistock.reservations.redis_ledger import RedisLedger
from omnistock.reservations.runner import ScriptRunner
from omnistock.reservations.scripts import (
    ScriptSettings,
    build_dry_read_library,
    build_ledger_library,
)
from omnistock.reservations.transport import (
    FastConnection,
    FastUnixConnection,
    use_fast_connections,
)

log = logging.getLogger("omnistock.ledger")

DURABILITY = ("strict", "fast")


class DurabilityError(RuntimeError):
    """The server cannot give the durability that was asked for."""


class EvictionError(RuntimeError):
    """The server may evict keys when it is full. Evicting a position, a reservation record or an
    operation's memory would silently give back reserved stock (an oversell) or let a retried
    operation apply twice: the ledger needs ``maxmemory-policy noeviction``, under which a full
    server refuses writes instead (see docs/operations.md)."""


@dataclass
class LedgerConnection:
    ledger: RedisLedger
    client: Any
    runner: ScriptRunner

    async def aclose(self) -> None:
        await self.client.aclose()


async def _wait_aof_needed(client: Any, durability: str, cluster: bool) -> bool:
    """Strict means acknowledged writes are on disk: free with appendfsync always, otherwise
    each batch waits for WAITAOF (single server only)."""
    if durability not in DURABILITY:
        raise ValueError(f"durability must be one of {DURABILITY}")
    if durability == "fast":
        return False
    if cluster:
        if all(
            _value(c, "appendonly") == "yes" and _value(c, "appendfsync") == "always"
            for c in await _primary_configs(client, cluster, "append*")
        ):
            return False
        raise DurabilityError(
            "strict durability on a cluster needs appendonly yes and appendfsync always"
        )
    [config] = await _primary_configs(client, cluster, "append*")
    if _value(config, "appendonly") != "yes":
        raise DurabilityError("strict durability needs appendonly yes on the server")
    return _value(config, "appendfsync") != "always"


async def _refuse_an_evicting_server(client: Any, cluster: bool) -> None:
    """Raises EvictionError unless every primary's ``maxmemory-policy`` is ``noeviction``. A
    server that does not let this client read its configuration (CONFIG renamed away, an ACL
    without it) is trusted, with a warning."""
    try:
        configs = await _primary_configs(client, cluster, "maxmemory-policy")
    except redis_errors.ResponseError as exc:
        log.warning("cannot read the server's maxmemory-policy (%s): it must be noeviction", exc)
        return
    for config in configs:
        policy = _value(config, "maxmemory-policy")
        if policy is not None and policy != "noeviction":
            raise EvictionError(
                f"the server's maxmemory-policy is {policy}: it may evict positions, reservations "
                "and operation ids when full; the ledger needs maxmemory-policy noeviction"
            )


async def _primary_configs(client: Any, cluster: bool, pattern: str) -> list[dict[Any, Any]]:
    """CONFIG GET ``pattern`` of the server, or of every primary of a cluster."""
    if cluster:
        # One reply per primary, keyed by node.
        found = await client.config_get(pattern, target_nodes=RedisCluster.PRIMARIES)
        return list(found.values())
    return [await client.config_get(pattern)]


def _value(config: dict[Any, Any], name: str) -> str | None:
    raw = config.get(name)
    return raw.decode() if isinstance(raw, bytes) else raw


SINGLE_IN_FLIGHT = 4
CLUSTER_IN_FLIGHT = 2


async def open_ledger(
    url: str,
    *,
    cluster: bool = False,
    durability: str = "strict",
    clock: Callable[[], int] | None = None,
    timeout_s: float = 2.0,
    script_settings: ScriptSettings | None = None,
    max_in_flight: int | None = None,
    max_batch: int = 32,
) -> LedgerConnection:
    """``max_in_flight``: batches in flight per server (see ScriptRunner); by default 4 on a
    single server and 2 per cluster node, where a node's batch also pays an fsync of its own
    and fewer, larger batches measured faster (README, "Ledger benchmark")."""
    if max_in_flight is None:
        max_in_flight = CLUSTER_IN_FLIGHT if cluster else SINGLE_IN_FLIGHT
    common = dict(socket_timeout=timeout_s, socket_connect_timeout=timeout_s)
    if cluster:
        client = RedisCluster.from_url(url, **common)
        use_fast_connections(client)
    else:
        unix = url.startswith("unix://")
        client = aioredis.from_url(
            url,
            max_connections=max_in_flight * 4 + 8,
            connection_class=FastUnixConnection if unix else FastConnection,
            **common,
        )
    try:
        if cluster:
            await client.initialize()
        wait_aof = await _wait_aof_needed(client, durability, cluster)
        await _refuse_an_evicting_server(client, cluster)
        runner = ScriptRunner(
            client,
            build_ledger_library(script_settings),
            build_dry_read_library(script_settings),
            cluster=cluster,
            max_batch=max_batch,
            max_in_flight=max_in_flight,
            wait_aof_ms=1000 if wait_aof else None,
        )
        await runner.load()
    except BaseException:
        await client.aclose()
        raise
    ledger = RedisLedger(runner, cluster=cluster, clock=clock)
    return LedgerConnection(ledger, client, runner)
