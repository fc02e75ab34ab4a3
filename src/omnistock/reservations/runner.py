"""Runs Lua scripts, coalescing concurrent calls into pipelines.

The Python client, not the server, is where time goes: one EVALSHA per round trip costs a full
request/response cycle in redis-py, while a pipeline of 32 costs little more than one. Callers
enqueue their call and await a future; up to ``max_in_flight`` drain tasks each take everything
queued so far (up to ``max_batch``) and send it as one pipeline, so under load many concurrent
requests share a few round trips and when idle a call goes out at once.
"""

from __future__ import annotations

import asyncio
import collections
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from redis import exceptions as redis_errors

from omnistock.reservations.scripts import Script

log = logging.getLogger("omnistock.ledger.runner")

UNAVAILABLE_ERRORS = (
    redis_errors.ConnectionError,
    redis_errors.TimeoutError,
    redis_errors.BusyLoadingError,
    redis_errors.ClusterDownError,
    redis_errors.TryAgainError,
    redis_errors.ReadOnlyError,
    OSError,
    asyncio.TimeoutError,
)


class LedgerUnavailable(Exception):
    """Redis could not be reached or did not answer in time; the operation may or may not apply."""


class ScriptError(Exception):
    """A script failed on the server (a wrong-typed key, out of memory, a bug)."""


@dataclass(slots=True)
class _Call:
    script: Script
    keys: Sequence[str]
    args: Sequence[Any]
    future: asyncio.Future


class ScriptRunner:
    def __init__(
        self,
        client: Any,
        *,
        max_batch: int = 256,
        max_in_flight: int = 4,
        wait_aof_ms: int | None = None,
    ) -> None:
        """``wait_aof_ms`` set means every batch that ran a script ends with WAITAOF 1 0, so the
        batch is acknowledged only once the server has it on disk (strict durability on a server
        not configured with appendfsync always)."""
        self._client = client
        self._max_batch = max_batch
        self._max_in_flight = max_in_flight
        self._wait_aof_ms = wait_aof_ms
        self._pending: collections.deque[_Call] = collections.deque()
        self._in_flight = 0
        self._loaded: set[str] = set()

    async def call(self, script: Script, keys: Sequence[str], args: Sequence[Any]) -> Any:
        future = asyncio.get_running_loop().create_future()
        self._pending.append(_Call(script, keys, args, future))
        if self._in_flight < self._max_in_flight:
            self._in_flight += 1
            asyncio.get_running_loop().create_task(self._drain())
        return await future

    async def _drain(self) -> None:
        try:
            # One pass of the event loop lets callers woken in the same tick join this batch.
            await asyncio.sleep(0)
            while self._pending:
                batch = [
                    self._pending.popleft() for _ in range(min(self._max_batch, len(self._pending)))
                ]
                await self._execute(batch)
        finally:
            self._in_flight -= 1

    async def _execute(self, batch: list[_Call]) -> None:
        try:
            results = await self._send(batch)
        except UNAVAILABLE_ERRORS as exc:
            self._fail_all(batch, LedgerUnavailable(f"{type(exc).__name__}: {exc}"))
            return
        except Exception as exc:  # a bug or protocol error must not strand the callers
            log.exception("pipeline failed")
            self._fail_all(batch, ScriptError(str(exc)))
            return

        missing = [
            call
            for call, res in zip(batch, results, strict=False)
            if isinstance(res, redis_errors.NoScriptError)
        ]
        if missing:
            try:
                await self._load({call.script.name: call.script for call in missing}.values())
                retried = await self._send(missing)
            except UNAVAILABLE_ERRORS as exc:
                self._fail_all(missing, LedgerUnavailable(f"{type(exc).__name__}: {exc}"))
                retried = []
            retried_results = dict(zip((id(c) for c in missing), retried, strict=False))
        else:
            retried_results = {}

        for call, result in zip(batch, results, strict=False):
            if call.future.done():
                continue
            result = retried_results.get(id(call), result)
            if isinstance(result, UNAVAILABLE_ERRORS):
                call.future.set_exception(LedgerUnavailable(str(result)))
            elif isinstance(result, Exception):
                call.future.set_exception(ScriptError(f"{call.script.name}: {result}"))
            else:
                call.future.set_result(result)

    async def _send(self, batch: list[_Call]) -> list[Any]:
        pipe = self._client.pipeline(transaction=False)
        for call in batch:
            pipe.execute_command("EVALSHA", call.script.sha, len(call.keys), *call.keys, *call.args)
        if self._wait_aof_ms is not None:
            pipe.execute_command("WAITAOF", 1, 0, self._wait_aof_ms)
        results = await pipe.execute(raise_on_error=False)
        if self._wait_aof_ms is not None:
            fsynced = results.pop()
            if isinstance(fsynced, Exception) or int(fsynced[0]) < 1:
                raise redis_errors.TimeoutError(f"WAITAOF did not confirm the write: {fsynced}")
        return results

    async def _load(self, scripts: Any) -> None:
        for script in scripts:
            await self._client.script_load(script.source)
            self._loaded.add(script.sha)

    async def load_all(self, scripts: Any) -> None:
        await self._load(scripts)

    @staticmethod
    def _fail_all(batch: list[_Call], exc: Exception) -> None:
        for call in batch:
            if not call.future.done():
                call.future.set_exception(exc)
