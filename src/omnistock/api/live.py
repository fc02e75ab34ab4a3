"""Live availability: one follower of the ledger's events per worker, fanned out to every open
availability stream (``GET /v1/availability/stream``).

However many clients watch, a worker reads the ledger's event streams once, and only while
someone watches: on a single server with a blocking ``XREAD`` on a connection of its own (never
one of the ledger's pooled connections), on a cluster by polling the streams of the watched
SKUs' partitions every ``POLL_S``, one pipeline per shard (a blocking read cannot span slots).
Reading starts from the streams' current end: this is a live view, not the journal, so it uses
no consumer group.

A changed SKU is not sent from the event itself but read again, exactly as
``GET /v1/availability/{sku}`` reads it (expired reservations released first). Changed SKUs are
collected and read together, at most once per ``COALESCE_S``, so a hot SKU under load costs one
read per interval, not one per change or per client. A reservation or hold whose time runs out
while no script runs writes no event until the sweeper (every ``OMNISTOCK_SWEEP_INTERVAL_MS``, in
each worker) or the next operation releases it; the stream shows it then, about a second after
its deadline with the default interval. Each read carries a stamp, the sum of the
SKU's position versions (every change bumps one), so a read that finishes late never replaces a
newer one; each stream then sends a SKU only when its body differs from what that client last got.

Order of a subscription: its SKUs are registered, the follower is positioned at the current end
of their streams, and only then is the first availability read. A change after that read is
therefore certain to be seen by the follower; one just before it may be sent twice, which the
comparison with what the client last got turns into nothing.

A slow client holds the latest figures of each SKU it has not been sent yet (overwritten, never
appended), so its memory is bounded by its SKUs, and it never holds up the follower or other
clients. When Redis is unreachable, streams stay open with their keep-alives; the follower
retries with backoff, and once it reads again every watched SKU is read anew, so a change made
during the gap is still sent. ``close`` ends every stream: the service calls it on its stop
signal, so that a shutdown does not wait for clients that never hang up.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Sequence
from typing import Any

import msgspec
import redis.asyncio as aioredis
from redis.asyncio.cluster import RedisCluster

from omnistock.api.controllers.availability import EVERYWHERE
from omnistock.api.metrics import Metrics
from omnistock.domain.stock import Position
from omnistock.reservations import keys
from omnistock.reservations.events import skus_of_entry, stream_position, text
from omnistock.reservations.runner import LedgerUnavailable
from omnistock.store.catalog import NodeCatalog

log = logging.getLogger("omnistock.live")

STREAMS_GAUGE = "omnistock_live_streams"
COALESCE_S = 0.05
"""At most one read of the changed SKUs per this many seconds."""
POLL_S = 0.1
"""On a cluster: how often the watched partitions' streams are read."""
FOLLOW_PACE_S = 0.02
"""On a single server under load: at most one read of the stream per this many seconds, so each
read takes many entries at once (the first event after a quiet spell is read at once)."""
BLOCK_MS = 1000
"""On a single server: how long one blocking read waits for an event."""
READ_COUNT = 1000
"""Stream entries taken per read and stream (an entry holds one script call's events)."""
KEEPALIVE_S = 15.0
READ_CHUNK = 500
"""SKUs per availability read."""
BACKOFF_S = (0.1, 0.2, 0.5, 1.0, 2.0)

EVENT_HEAD = b"event: availability\ndata: "
EVENT_TAIL = b"\n\n"
KEEPALIVE = b": keep-alive\n\n"

Render = Callable[[str, list[Position]], bytes]


def availability_renderer(catalog: NodeCatalog) -> Render:
    """The body of ``GET /v1/availability/{sku}`` (every node, no filter), encoded."""
    encode = msgspec.json.Encoder().encode

    def render(sku: str, positions: list[Position]) -> bytes:
        return encode(EVERYWHERE.of(sku, positions, catalog))

    return render


class Snapshot(msgspec.Struct, frozen=True):
    """One SKU's availability as read at one moment: its body and its stamp."""

    stamp: int
    body: bytes


class Subscription:
    """One stream's SKUs, what it has been sent, and the latest figures it has not."""

    def __init__(self, skus: Sequence[str]) -> None:
        self.skus = tuple(skus)
        self.closed = False
        self._pending: dict[str, Snapshot] = {}
        self._sent: dict[str, Snapshot] = {}
        self._wake = asyncio.Event()

    def prime(self, sku: str, snap: Snapshot) -> bytes:
        """Records the first figures of a SKU as sent; returns its event."""
        self._sent[sku] = snap
        return EVENT_HEAD + snap.body + EVENT_TAIL

    def offer(self, sku: str, snap: Snapshot) -> None:
        known = self._pending.get(sku) or self._sent.get(sku)
        if known is not None and snap.stamp < known.stamp:
            return
        self._pending[sku] = snap
        self._wake.set()

    def close(self) -> None:
        self.closed = True
        self._wake.set()

    def _take(self) -> bytes:
        out = []
        for sku, snap in self._pending.items():
            sent = self._sent.get(sku)
            if sent is not None and (snap.stamp < sent.stamp or snap.body == sent.body):
                if snap.stamp > sent.stamp:
                    self._sent[sku] = snap
                continue
            self._sent[sku] = snap
            out.append(EVENT_HEAD + snap.body + EVENT_TAIL)
        self._pending.clear()
        self._wake.clear()
        return b"".join(out)

    async def chunks(self, initial: bytes) -> AsyncIterator[bytes]:
        """The stream's body: the first figures, then changes and a keep-alive every
        ``KEEPALIVE_S``, until closed."""
        yield initial
        next_keepalive = time.monotonic() + KEEPALIVE_S
        while not self.closed:
            chunk = self._take()
            if chunk:
                yield chunk
                continue
            wait_s = next_keepalive - time.monotonic()
            if wait_s <= 0:
                next_keepalive += KEEPALIVE_S
                yield KEEPALIVE
                continue
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(wait_s):
                    await self._wake.wait()


def _later(a: str, b: str) -> str:
    """The later of two stream entry ids (``<ms>-<seq>``)."""
    return a if stream_position(a) >= stream_position(b) else b


class EventFollower:
    """Reads the ledger's event streams from where it was positioned, on a client of its own."""

    def __init__(self, client: Any, *, cluster: bool) -> None:
        self.client = client
        self.cluster = cluster
        self._cursors: dict[str, str] = {}
        # One positioning at a time: subscribers arriving together share it, and the client's
        # few connections are never all taken (the blocking read holds one).
        self._positioning = asyncio.Lock()

    @classmethod
    async def open(cls, url: str, *, cluster: bool, timeout_s: float) -> EventFollower:
        if cluster:
            client = RedisCluster.from_url(
                url, socket_timeout=timeout_s, socket_connect_timeout=timeout_s
            )
        else:
            # A blocking read waits BLOCK_MS for an answer: the socket must wait longer.
            client = aioredis.from_url(
                url,
                socket_timeout=BLOCK_MS / 1000 + timeout_s,
                socket_connect_timeout=timeout_s,
                max_connections=4,
            )
        return cls(client, cluster=cluster)

    async def aclose(self) -> None:
        await self.client.aclose()

    def streams_of(self, skus: Iterable[str]) -> set[str]:
        if not self.cluster:
            return {keys.stream_key(0)}
        return {keys.stream_key(keys.partition_of(s)) for s in skus}

    def reset(self) -> None:
        """Forgets every position: the next read starts from the streams' end again."""
        self._cursors.clear()

    async def ensure(self, streams: Iterable[str]) -> None:
        """Positions the follower at the current end of the streams it is not reading yet."""
        streams = list(streams)
        if all(s in self._cursors for s in streams):
            return
        async with self._positioning:
            missing = [s for s in streams if s not in self._cursors]
            if not missing:
                return
            async with self.client.pipeline(transaction=False) as pipe:
                for stream in missing:
                    pipe.xrevrange(stream, "+", "-", count=1)
                replies = await pipe.execute()
            for stream, last in zip(missing, replies, strict=True):
                self._cursors.setdefault(stream, text(last[0][0]) if last else "0-0")

    async def read(self, streams: set[str]) -> set[str]:
        """The SKUs of the events appended to ``streams`` since the last read."""
        for gone in set(self._cursors) - streams:
            del self._cursors[gone]
        await self.ensure(streams)
        wanted = {s: self._cursors[s] for s in streams}
        if not self.cluster:
            reply = await self.client.xread(wanted, count=READ_COUNT, block=BLOCK_MS)
            replies = [reply]
        else:
            await asyncio.sleep(POLL_S)
            async with self.client.pipeline(transaction=False) as pipe:
                for stream, cursor in wanted.items():
                    pipe.xread({stream: cursor}, count=READ_COUNT)
                replies = await pipe.execute()
        changed: set[str] = set()
        for reply in replies:
            for stream, entries in reply or ():
                name = text(stream)
                for _entry_id, fields in entries:
                    changed.update(skus_of_entry(fields))
                if entries and name in self._cursors:
                    # Only forward: a read that began before a reset may end after the stream
                    # was positioned again, further on.
                    self._cursors[name] = _later(self._cursors[name], text(entries[-1][0]))
        return changed


class LiveAvailability:
    """The subscriptions of one worker and the tasks that keep them fed (see the module doc)."""

    def __init__(
        self,
        read: Callable[[list[str]], Awaitable[dict[str, list[Position]]]],
        follower: EventFollower,
        render: Render,
        metrics: Metrics | None = None,
    ) -> None:
        self._read = read
        self._follower = follower
        self._render = render
        self._metrics = metrics
        self._watchers: dict[str, set[Subscription]] = {}
        self._subscriptions: set[Subscription] = set()
        self._watched = asyncio.Event()
        self._dirty: set[str] = set()
        self._dirty_event = asyncio.Event()
        self.closed = False
        self.follower_healthy = True
        self.reads = 0  # availability reads of changed SKUs (each covers all changed then)
        self._count()

    @property
    def streams(self) -> int:
        return len(self._subscriptions)

    def _count(self) -> None:
        if self._metrics is not None:
            self._metrics.gauges[STREAMS_GAUGE] = len(self._subscriptions)

    def _snapshot(self, sku: str, positions: list[Position]) -> Snapshot:
        return Snapshot(sum(p.version for p in positions), self._render(sku, positions))

    # -- subscriptions --------------------------------------------------------------------------

    async def subscribe(self, skus: Sequence[str]) -> tuple[Subscription, bytes]:
        """Registers a stream of ``skus`` and reads their first figures: the subscription and
        the first events. Raises LedgerUnavailable (nothing registered) when Redis fails."""
        sub = Subscription(skus)
        if self.closed:
            sub.close()
        else:
            self._subscriptions.add(sub)
            for sku in sub.skus:
                self._watchers.setdefault(sku, set()).add(sub)
            self._watched.set()
            self._count()
        try:
            try:
                await self._follower.ensure(self._follower.streams_of(sub.skus))
            except Exception as exc:
                raise LedgerUnavailable(f"the event stream could not be read: {exc}") from exc
            found = await self._read(list(sub.skus))
        except BaseException:
            self.unsubscribe(sub)
            raise
        first = b"".join(sub.prime(sku, self._snapshot(sku, found[sku])) for sku in sub.skus)
        return sub, first

    def unsubscribe(self, sub: Subscription) -> None:
        sub.close()
        if sub not in self._subscriptions:
            return
        self._subscriptions.discard(sub)
        for sku in sub.skus:
            watchers = self._watchers.get(sku)
            if watchers is not None:
                watchers.discard(sub)
                if not watchers:
                    del self._watchers[sku]
        if not self._subscriptions:
            # Nobody watches: the next subscriber starts from the streams' end, not from here.
            self._watched.clear()
            self._follower.reset()
        self._count()

    def close(self) -> None:
        """Ends every stream, now and from now on (the service is stopping), and the background
        tasks with them: they return by themselves, even when a cancellation is lost inside a
        Redis call (Python 3.11's wait_for can swallow one)."""
        self.closed = True
        for sub in list(self._subscriptions):
            sub.close()
        self._watched.set()
        self._dirty_event.set()

    # -- background tasks -----------------------------------------------------------------------

    async def follow(self) -> None:
        """Reads the watched SKUs' events while anyone watches, and marks those SKUs changed."""
        failures = 0
        while not self.closed:
            await self._watched.wait()
            if self.closed:
                return
            streams = self._follower.streams_of(self._watchers)
            started = time.monotonic()
            try:
                changed = await self._follower.read(streams)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                if self.follower_healthy:
                    log.warning("live availability: the event stream cannot be read: %s", exc)
                self.follower_healthy = False
                self._follower.reset()
                await asyncio.sleep(BACKOFF_S[min(failures, len(BACKOFF_S) - 1)])
                failures += 1
                continue
            failures = 0
            if not self.follower_healthy:
                # Positioned again: whatever changed while reading failed is read anew.
                log.info("live availability: reading the event stream again")
                self.follower_healthy = True
                changed = set(self._watchers)
            self.mark_changed(changed)
            if changed:
                pause = started + FOLLOW_PACE_S - time.monotonic()
                if pause > 0:
                    await asyncio.sleep(pause)

    def mark_changed(self, skus: Iterable[str]) -> None:
        watched = [s for s in skus if s in self._watchers]
        if watched:
            self._dirty.update(watched)
            self._dirty_event.set()

    async def refresh(self) -> None:
        """Reads the changed SKUs and offers their figures to their streams, at most once per
        ``COALESCE_S``."""
        last = -COALESCE_S
        failures = 0
        while not self.closed:
            await self._dirty_event.wait()
            wait_s = last + COALESCE_S - time.monotonic()
            if wait_s > 0:
                await asyncio.sleep(wait_s)
            self._dirty_event.clear()
            batch = [s for s in self._dirty if s in self._watchers]
            self._dirty.clear()
            last = time.monotonic()
            for start in range(0, len(batch), READ_CHUNK):
                chunk = batch[start : start + READ_CHUNK]
                try:
                    self.reads += 1
                    found = await self._read(chunk)
                except asyncio.CancelledError:
                    raise
                except Exception as exc:
                    log.debug("live availability: read failed: %s", exc)
                    self.mark_changed(batch[start:])
                    await asyncio.sleep(BACKOFF_S[min(failures, len(BACKOFF_S) - 1)])
                    failures += 1
                    break
                failures = 0
                for sku, positions in found.items():
                    watchers = self._watchers.get(sku)
                    if watchers:
                        snap = self._snapshot(sku, positions)
                        for sub in watchers:
                            sub.offer(sku, snap)

    def tasks(self) -> list[asyncio.Task]:
        return [
            asyncio.create_task(self.follow(), name="live availability follower"),
            asyncio.create_task(self.refresh(), name="live availability refresh"),
        ]

    async def aclose(self) -> None:
        self.close()
        await self._follower.aclose()
