"""The projector: the ledger's event streams into the journal table, each event exactly once.

Delivery is at least once: entries are read through a consumer group and acknowledged only once
the transaction that wrote them has committed, so a projector killed in between leaves them
pending and they are delivered again (to itself on restart, or claimed by another projector when
they have been idle for ``CLAIM_IDLE_MS``). The journal's unique event id turns a second delivery
into nothing, so every event lands once. Several projectors (one per worker) share the group.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
from typing import Any

import sqlalchemy as sa
from redis import exceptions as redis_errors
from sqlalchemy.dialects import postgresql
from sqlalchemy.ext.asyncio import AsyncEngine

from omnistock.reservations import keys
from omnistock.reservations.events import parse_entry
from omnistock.store.database import events

log = logging.getLogger("omnistock.projector")

GROUP = "journal"
CLAIM_IDLE_MS = 30_000


def consumer_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


class Projector:
    def __init__(
        self,
        client: Any,
        engine: AsyncEngine,
        *,
        cluster: bool,
        consumer: str | None = None,
        batch: int = 500,
        block_ms: int = 1000,
    ) -> None:
        self._client = client
        self._engine = engine
        self._cluster = cluster
        self._consumer = consumer or consumer_name()
        self._batch = batch
        self._block_ms = block_ms
        self._streams = {
            keys.stream_key(p): p for p in (range(keys.PARTITIONS) if cluster else [0])
        }
        self.projected = 0  # events this projector wrote (duplicates excluded)
        self.delivered = 0  # events it was handed

    async def ensure_groups(self) -> None:
        for stream in self._streams:
            try:
                await self._client.xgroup_create(stream, GROUP, id="0", mkstream=True)
            except redis_errors.ResponseError as exc:
                if "BUSYGROUP" not in str(exc):
                    raise

    async def run(self) -> None:
        """Projects until cancelled; a dependency down is waited out, not fatal."""
        ready = False
        while True:
            try:
                if not ready:
                    await self.ensure_groups()
                    await self.catch_up()
                    ready = True
                await self.step()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("projector: %s", exc)
                ready = False
                await asyncio.sleep(1.0)

    async def catch_up(self) -> int:
        """Entries delivered to this consumer before a restart, and entries another consumer
        left pending for long: projected again (duplicates land once)."""
        total = 0
        for stream in self._streams:
            while True:
                read = await self._client.xreadgroup(
                    GROUP, self._consumer, {stream: "0"}, count=self._batch
                )
                entries = read[0][1] if read else []
                if not entries:
                    break
                total += await self._project(stream, entries)
            start = "0-0"
            while True:
                start, claimed, *_ = await self._client.xautoclaim(
                    stream, GROUP, self._consumer, CLAIM_IDLE_MS, start, count=self._batch
                )
                if claimed:
                    total += await self._project(stream, claimed)
                if _text(start) == "0-0":
                    break
        return total

    async def step(self) -> int:
        """One read of new entries (waiting up to ``block_ms`` for some) and their projection."""
        if not self._cluster:
            [stream] = self._streams
            read = await self._client.xreadgroup(
                GROUP, self._consumer, {stream: ">"}, count=self._batch, block=self._block_ms
            )
            return sum([await self._project(stream, entries) for _s, entries in read or []])
        total = 0
        for stream in self._streams:
            read = await self._client.xreadgroup(
                GROUP, self._consumer, {stream: ">"}, count=self._batch
            )
            for _s, entries in read or []:
                total += await self._project(stream, entries)
        if total == 0:
            await asyncio.sleep(self._block_ms / 1000)
        return total

    async def _project(self, stream: str, entries: list[Any]) -> int:
        partition = self._streams[stream]
        rows = []
        ids = []
        for entry_id, fields in entries:
            ids.append(entry_id)
            if not fields:  # trimmed away before it was read: nothing left to project
                continue
            for e in parse_entry(entry_id, fields):
                rows.append(
                    {
                        "event_id": f"{partition}:{e.event_id}",
                        "at_ms": e.at_ms,
                        "op_id": e.op_id,
                        "kind": e.kind,
                        "node_id": e.node_id,
                        "sku": e.sku,
                        "d_on_hand": e.d_on_hand,
                        "d_reserved": e.d_reserved,
                        "d_held": e.d_held,
                        "d_inbound": e.d_inbound,
                        "on_hand": e.on_hand,
                        "reserved": e.reserved,
                        "held": e.held,
                        "safety_stock": e.safety_stock,
                        "inbound": e.inbound,
                        "version": e.version,
                        "ref": e.ref,
                    }
                )
        written = await self._insert(rows) if rows else 0
        await self._client.xack(stream, GROUP, *ids)
        self.delivered += len(rows)
        self.projected += written
        return written

    async def _insert(self, rows: list[dict[str, Any]]) -> int:
        if self._engine.dialect.name == "postgresql":
            statement = postgresql.insert(events).on_conflict_do_nothing(
                index_elements=["event_id"]
            )
        else:
            statement = sa.insert(events).prefix_with("OR IGNORE")
        async with self._engine.begin() as conn:
            result = await conn.execute(statement, rows)
        return max(0, result.rowcount or 0)

    async def lag(self) -> int:
        """Events (stream entries) not yet delivered to the group, plus those delivered but not
        yet acknowledged."""
        total = 0
        for stream in self._streams:
            for group in await self._client.xinfo_groups(stream):
                if _text(group.get("name")) == GROUP:
                    total += int(group.get("lag") or 0) + int(group.get("pending") or 0)
        return total
