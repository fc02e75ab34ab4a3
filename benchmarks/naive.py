"""The naive peer: the ledger's own library, one plain redis-py asyncio FCALL per operation.

``NaiveRunner`` has the interface of ``omnistock.reservations.runner.ScriptRunner`` (``op``,
``call``, ``load``) so a ``RedisLedger`` built on it runs exactly the same function with exactly
the same keys and arguments; the only difference is the client path: every operation is its own
FCALL (a batch of one), no coalescing, no pipelines, each waiting for its own round trip on a
connection of its own from the pool. Other scripts (``call``) are one EVALSHA each.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import redis.asyncio as aioredis
from redis import exceptions as redis_errors
from redis.asyncio.cluster import RedisCluster

from omnistock.reservations import keys
from omnistock.reservations.runner import (
    UNAVAILABLE_ERRORS,
    LedgerUnavailable,
    ScriptError,
    is_missing,
    load_onto,
)
from omnistock.reservations.scripts import Library, Script


class NaiveRunner:
    def __init__(self, client: Any, ledger_library: Library, *, cluster: bool) -> None:
        self._client = client
        self._ledger = ledger_library
        self._cluster = cluster
        self._one_server = "" if cluster else keys.tag(0)

    async def op(
        self, name: str, tags: Sequence[str], args: Sequence[Any], fingerprint: str = ""
    ) -> Any:
        batch_of_one = [self._one_server, 1, name, len(tags), len(args), fingerprint, *tags, *args]
        command = ("FCALL", self._ledger.name, 1, tags[0], *batch_of_one)
        # redis-py's cluster client asks the server for an FCALL's keys (COMMAND GETKEYS, a
        # round trip of its own): name the node, as it works out itself for an EVALSHA.
        node = self._client.get_node_from_key(tags[0]) if self._cluster else None
        reply = await self._send(self._ledger, command, node)
        if isinstance(reply[0], Exception):
            raise ScriptError(f"{name}: {reply[0]}")
        return reply[0]

    async def call(self, script: Script, keys: Sequence[str], args: Sequence[Any]) -> Any:
        return await self._send(script, ("EVALSHA", script.sha, len(keys), *keys, *args))

    async def _send(
        self, script: Script | Library, command: tuple[Any, ...], node: Any = None
    ) -> Any:
        options = {} if node is None else {"target_nodes": node}
        try:
            try:
                return await self._client.execute_command(*command, **options)
            except redis_errors.ResponseError as exc:
                if not is_missing(exc):
                    raise
                await load_onto(self._client, script)
                return await self._client.execute_command(*command, **options)
        except UNAVAILABLE_ERRORS as exc:
            raise LedgerUnavailable(f"{type(exc).__name__}: {exc}") from exc
        except redis_errors.RedisError as exc:
            raise ScriptError(f"{script.name}: {exc}") from exc

    async def load(self, scripts: Iterable[Script | Library] | None = None) -> None:
        for script in scripts if scripts is not None else [self._ledger]:
            await load_onto(self._client, script)


def naive_client(url: str, *, cluster: bool, max_connections: int, timeout_s: float = 2.0) -> Any:
    """A plain redis-py asyncio client (hiredis parser when installed, as for omnistock).

    On a single server the pool has ``max_connections`` connections and callers wait for a free
    one (a plain ``ConnectionPool`` would raise once more callers than connections are in
    flight); on a cluster it is redis-py's default ``RedisCluster``, as ``open_ledger`` builds.
    """
    common: dict[str, Any] = dict(socket_timeout=timeout_s, socket_connect_timeout=timeout_s)
    if cluster:
        return RedisCluster.from_url(url, **common)
    pool = aioredis.BlockingConnectionPool.from_url(
        url, max_connections=max_connections, timeout=timeout_s, **common
    )
    return aioredis.Redis.from_pool(pool)
