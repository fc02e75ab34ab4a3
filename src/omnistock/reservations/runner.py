"""Runs ledger operations, coalescing concurrent calls into batches and pipelines.

The Python client, not the server, is where time goes: one call per round trip costs a full
request/response cycle in redis-py, and each function call pays the server a fixed price (the
call, the clock, an expiry sweep, and on a cluster an fsync per node and pipeline). Callers
enqueue their operation and await a future. Operations queue per shard (one queue on a single
server, one per cluster node on a cluster); up to ``max_in_flight`` drain tasks per shard each
take what is queued there (up to ``max_batch``) and send it as one call of the ledger's function
in one pipeline. Under load, many concurrent requests share a few round trips and function
calls; when idle a call goes out at once. Several batches in flight let the client prepare one
while the server runs another. Queueing per node, not splitting one batch over the nodes, keeps
a cluster node's batches as large as a single server's share of the same load would be.
"""

from __future__ import annotations

import asyncio
import collections
import functools
import logging
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from redis import exceptions as redis_errors
from redis.asyncio.cluster import PipelineCommand

from omnistock.outage_log import OutageLog
from omnistock.reservations import keys
from omnistock.reservations.scripts import Library, Script, is_ledger_library

log = logging.getLogger("omnistock.ledger.runner")

UNAVAILABLE_ERRORS = (
    redis_errors.ConnectionError,
    redis_errors.TimeoutError,
    redis_errors.BusyLoadingError,
    redis_errors.ClusterDownError,
    redis_errors.TryAgainError,
    redis_errors.ReadOnlyError,
    # A cluster whose slot map has a hole (a shard lost and not failed over).
    redis_errors.SlotNotCoveredError,
    OSError,
    asyncio.TimeoutError,
)


# Replies that mean "ask another node": the slot map is refreshed and the command resent.
_REROUTE = (
    redis_errors.MovedError,
    redis_errors.AskError,
    redis_errors.TryAgainError,
    redis_errors.ClusterDownError,
)


class LedgerUnavailable(Exception):
    """Redis could not be reached or did not answer in time; the operation may or may not apply."""


class ScriptError(Exception):
    """A script failed on the server (a wrong-typed key, out of memory, a bug)."""


class LedgerOutOfMemory(ScriptError):
    """Redis is at its memory limit and refused the script before it ran: nothing applied, and
    the same call can succeed once memory is freed. (The ledger's function declares flags, so the
    server judges it before running it, not at its first write.)"""


@dataclass(slots=True)
class _Item:
    name: str  # an operation of the ledger library, or "" for a plain script call
    script: Script | None
    keys: Sequence[str]
    args: Sequence[Any]
    future: asyncio.Future
    fingerprint: str = ""
    dry: bool = False  # on the ledger's read-only twin


def is_missing(reply: Any) -> bool:
    """A reply saying the server does not have the script or function (flushed, or a server
    that was replaced): it is loaded and the command sent again."""
    return isinstance(reply, redis_errors.NoScriptError) or (
        isinstance(reply, redis_errors.ResponseError)
        and str(reply).startswith("Function not found")
    )


class ScriptRunner:
    def __init__(
        self,
        client: Any,
        ledger_library: Library,
        dry_read_library: Library,
        *,
        cluster: bool,
        max_batch: int = 32,
        max_in_flight: int = 4,
        wait_aof_ms: int | None = None,
    ) -> None:
        """``wait_aof_ms`` set means every pipeline ends with WAITAOF 1 0, so a batch is
        acknowledged only once the server has it on disk (strict durability on a server not
        configured with appendfsync always). ``ledger_library``: the ledger's function library;
        ``dry_read_library``: its read-only twin, for operations enqueued with ``dry`` (see
        scripts.DRY_READS)."""
        self._client = client
        self._ledger = ledger_library
        self._dry = dry_read_library
        self._cluster = cluster
        self._max_batch = max_batch
        self._max_in_flight = max_in_flight
        self._wait_aof_ms = wait_aof_ms
        # A single server keeps one event stream and one deadline set; a cluster one per
        # partition, so that every script stays in its slot.
        self._one_server = "" if cluster else keys.tag(0)
        self._slot_map_outage = OutageLog(log, "refreshing the cluster slot map")
        self._queues: dict[str, collections.deque[_Item]] = {}
        self._in_flight: dict[str, int] = {}
        self._slots: dict[str, int] = {}
        self._drains: set[asyncio.Task] = set()

    def op(
        self,
        name: str,
        keys: Sequence[str],
        args: Sequence[Any],
        fingerprint: str = "",
        *,
        dry: bool = False,
    ) -> asyncio.Future:
        """Runs one operation of the ledger library; ``keys`` are its partition tags. With a
        ``fingerprint`` (single server only) the script first claims the operation id for it and
        the reply is ``[claim, result]`` (see _batch.lua). ``dry``: a read on the script's
        read-only twin, batched apart. Await the returned future for the reply (a plain
        function, not a coroutine: this is on every request's path)."""
        return self._enqueue(name, None, keys, args, fingerprint, dry)

    def call(self, script: Script, keys: Sequence[str], args: Sequence[Any]) -> asyncio.Future:
        """Runs any other script, one EVALSHA, through the same pipelines."""
        return self._enqueue("", script, keys, args, "", False)

    def _enqueue(
        self,
        name: str,
        script: Script | None,
        keys: Sequence[str],
        args: Sequence[Any],
        fingerprint: str,
        dry: bool,
    ) -> asyncio.Future:
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        shard = self._shard_of(keys[0]) if self._cluster and keys else ""
        queue = self._queues.get(shard)
        if queue is None:
            queue = self._queues[shard] = collections.deque()
        queue.append(_Item(name, script, keys, args, future, fingerprint, dry))
        in_flight = self._in_flight.get(shard, 0)
        if in_flight < self._max_in_flight:
            self._in_flight[shard] = in_flight + 1
            drain = loop.create_task(self._drain(shard, queue))
            # The loop keeps only a weak reference to a task.
            self._drains.add(drain)
            drain.add_done_callback(self._drains.discard)
        return future

    def _shard_of(self, key: str) -> str:
        """The cluster node a key's slot is on: the queue its operation waits in. Only a batching
        key: where a batch goes is decided when it is sent, from the slot map then."""
        try:
            return self._cluster_node(key).name
        except redis_errors.SlotNotCoveredError:  # sending will report it
            return ""

    async def _drain(self, shard: str, queue: collections.deque[_Item]) -> None:
        try:
            # One pass of the event loop lets callers woken in the same tick join this batch.
            await asyncio.sleep(0)
            while queue:
                take = min(self._max_batch, len(queue))
                await self._execute([queue.popleft() for _ in range(take)])
        finally:
            self._in_flight[shard] -= 1

    # -- one round trip ---------------------------------------------------------------------------

    def _commands(self, items: list[_Item]) -> list[tuple[tuple[Any, ...], list[_Item]]]:
        """One EVALSHA per plain call, and one FCALL per shard group of ledger operations (and
        one per shard group of dry reads)."""
        commands: list[tuple[tuple[Any, ...], list[_Item]]] = []
        groups: dict[tuple[str, bool], list[_Item]] = {}
        for item in items:
            if item.script is not None:
                command = ("EVALSHA", item.script.sha, len(item.keys), *item.keys, *item.args)
                commands.append((command, [item]))
            else:
                shard = self._cluster_node(item.keys[0]).name if self._cluster else ""
                groups.setdefault((shard, item.dry), []).append(item)
        for group in groups.values():
            # One declared key routes the call (a cluster refuses declared keys of several
            # slots); each operation names its own partitions among the arguments.
            argv: list[Any] = [self._one_server, len(group)]
            for item in group:
                argv += (
                    item.name,
                    len(item.keys),
                    len(item.args),
                    item.fingerprint,
                    *item.keys,
                    *item.args,
                )
            function = self._dry.name if group[0].dry else self._ledger.name
            command = ("FCALL", function, 1, group[0].keys[0], *argv)
            commands.append((command, group))
        return commands

    async def _execute(self, items: list[_Item]) -> None:
        try:
            commands = self._commands(items)
            replies = await self._send([command for command, _ in commands])
            missing = [i for i, r in enumerate(replies) if is_missing(r)]
            if missing:
                await self.load(self._scripts_of(commands[i][1] for i in missing))
                again = await self._send([commands[i][0] for i in missing])
                for i, reply in zip(missing, again, strict=True):
                    replies[i] = reply
        except UNAVAILABLE_ERRORS as exc:
            self._fail(items, LedgerUnavailable(f"{type(exc).__name__}: {exc}"))
            if isinstance(exc, redis_errors.SlotNotCoveredError):
                await self._refresh_slots()  # the hole may be ours alone: learn the map again
            return
        except Exception as exc:  # a bug or protocol error must not strand the callers
            log.exception("pipeline failed")
            self._fail(items, ScriptError(str(exc)))
            return
        for (_, group), reply in zip(commands, replies, strict=True):
            if group[0].script is not None:
                _settle(group[0], reply)
            elif isinstance(reply, Exception):
                for item in group:
                    _settle(item, reply)
            else:
                for item, result in zip(group, reply, strict=True):
                    _settle(item, result)

    def _scripts_of(self, groups: Iterable[list[_Item]]) -> list[Script | Library]:
        found: dict[str, Script | Library] = {self._ledger.name: self._ledger}
        for group in groups:
            for item in group:
                if item.script is not None:
                    found[item.script.sha] = item.script
                elif item.dry:
                    found[self._dry.name] = self._dry
        return list(found.values())

    def _cluster_node(self, key: str) -> Any:
        slot = self._slots.get(key)
        if slot is None:
            slot = self._slots[key] = self._client.keyslot(key)
        try:
            return self._client.nodes_manager.get_node_from_slot(slot)
        except KeyError:  # a map learned without the slot: as an empty entry would say
            raise redis_errors.SlotNotCoveredError(f"slot {slot} is in no node's range") from None

    async def _send(self, commands: list[tuple[Any, ...]]) -> list[Any]:
        if self._cluster:
            return await self._send_to_nodes(commands)
        pipe = self._client.pipeline(transaction=False)
        for command in commands:
            pipe.execute_command(*command)
        if self._wait_aof_ms is not None:
            pipe.execute_command("WAITAOF", 1, 0, self._wait_aof_ms)
        replies = await pipe.execute(raise_on_error=False)
        if self._wait_aof_ms is not None:
            fsynced = replies.pop()
            if isinstance(fsynced, Exception) or int(fsynced[0]) < 1:
                raise redis_errors.TimeoutError(f"WAITAOF did not confirm the write: {fsynced}")
        return replies

    async def _send_to_nodes(self, commands: list[tuple[Any, ...]]) -> list[Any]:
        """One pipeline per cluster node, straight to the node that owns the commands' slots.

        A batch may span several slots of one node (the ledger's function allows keys of several
        slots), which redis-py's cluster pipeline refuses. Redirections and lost nodes refresh
        the slot map and resend: every ledger operation is idempotent.
        """
        replies: list[Any] = [None] * len(commands)
        todo = list(range(len(commands)))
        for _attempt in range(3):
            by_node: dict[str, tuple[Any, list[int]]] = {}
            for i in todo:
                node = self._cluster_node(commands[i][3])
                by_node.setdefault(node.name, (node, []))[1].append(i)
            if len(by_node) == 1:  # the usual case, operations queue per node: no task to make
                [(node, idxs)] = by_node.values()
                await self._node_pipeline(node, idxs, commands, replies)
            else:
                await asyncio.gather(
                    *(
                        self._node_pipeline(node, idxs, commands, replies)
                        for node, idxs in by_node.values()
                    )
                )
            lost = any(isinstance(replies[i], UNAVAILABLE_ERRORS) for i in todo)
            todo = [i for i in todo if isinstance(replies[i], _REROUTE)]
            if lost or todo:
                await self._refresh_slots()
            if not todo:
                break
        return replies

    async def _refresh_slots(self) -> None:
        """A failover or a reshard moved slots: learn the new map (best effort; a cluster that
        cannot answer is reported by the failed calls themselves)."""
        try:
            await self._client.nodes_manager.initialize()
        except Exception as exc:
            self._slot_map_outage.failed(exc)
        else:
            self._slot_map_outage.succeeded()

    @staticmethod
    async def _node_pipeline(
        node: Any, idxs: list[int], commands: list[tuple[Any, ...]], replies: list[Any]
    ) -> None:
        pending = [PipelineCommand(i, *commands[i]) for i in idxs]
        try:
            await node.execute_pipeline(pending)
        except UNAVAILABLE_ERRORS as exc:
            for i in idxs:
                replies[i] = exc
            return
        for i, command in zip(idxs, pending, strict=True):
            replies[i] = command.result

    def libraries(self) -> set[str]:
        """The names of the function libraries the ledger calls."""
        return {self._ledger.name, self._dry.name}

    async def load(self, scripts: Iterable[Script | Library] | None = None) -> None:
        """Loads plain scripts and the ledger's libraries (on every primary of a cluster)."""
        for script in scripts if scripts is not None else [self._ledger, self._dry]:
            await load_onto(self._client, script)

    async def prune_other_versions(self, *, dry_run: bool = False) -> list[str]:
        """Deletes the ledger libraries that other versions of the code loaded (on every primary
        of a cluster) and returns their names, sorted. This runner's own libraries stay, and so
        does every library that is not the ledger's. A process of another version that still
        runs loads its library again at its next call, as after a flush: pruning during a roll
        costs it a reload. ``dry_run``: only list them."""
        ours = self.libraries()
        found: set[str] = set()
        for run in self._on_each_primary():
            listed = await run("FUNCTION LIST", "LIBRARYNAME", "omnistock_*")
            for name in _library_names(listed):
                if not is_ledger_library(name) or name in ours:
                    continue
                found.add(name)
                if not dry_run:
                    await run("FUNCTION DELETE", name)
        return sorted(found)

    def _on_each_primary(self) -> list[Callable[..., Awaitable[Any]]]:
        if not self._cluster:
            return [self._client.execute_command]
        return [
            functools.partial(self._client.execute_command, target_nodes=node)
            for node in self._client.get_primaries()
        ]

    @staticmethod
    def _fail(items: list[_Item], exc: Exception) -> None:
        for item in items:
            if not item.future.done():
                item.future.set_exception(exc)


async def load_onto(client: Any, script: Script | Library) -> None:
    """Loads a plain script, or a library (on every primary of a cluster), onto the server."""
    if isinstance(script, Library):
        # The same name always holds the same code (it carries its digest): replacing it is
        # loading it again, on a server that has it or not.
        await client.function_load(script.source, replace=True)
    else:
        await client.script_load(script.source)


def _library_names(listed: list[list[Any]]) -> list[str]:
    """The library names in a FUNCTION LIST reply: one flat list of field names and values per
    library."""
    names = []
    for entry in listed:
        fields = dict(zip(entry[::2], entry[1::2], strict=True))
        names.append(fields[b"library_name"].decode())
    return names


def _settle(item: _Item, result: Any) -> None:
    if item.future.done():
        return
    if isinstance(result, UNAVAILABLE_ERRORS):
        item.future.set_exception(LedgerUnavailable(str(result)))
    elif isinstance(result, redis_errors.OutOfMemoryError):
        item.future.set_exception(LedgerOutOfMemory(f"{item.name or 'script'}: OOM {result}"))
    elif isinstance(result, Exception):
        item.future.set_exception(ScriptError(f"{item.name or 'script'}: {result}"))
    else:
        item.future.set_result(result)
