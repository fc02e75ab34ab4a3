"""The stock ledger on Redis/Valkey.

Each operation is one script per partition. On a single server every operation is one script
call, whatever partitions its lines fall in, so it is atomic. On a cluster, lines are grouped by
partition (one cluster slot each) and an operation that spans partitions runs as a saga of
per-partition scripts whose compensation is idempotent (see ``sagas``).
"""

from __future__ import annotations

import asyncio
import copy
from collections.abc import Callable, Sequence
from typing import Any

import msgspec

from omnistock.domain.errors import IdempotencyKeyReused, NotFound
from omnistock.domain.reservation import Reservation
from omnistock.domain.stock import Adjustment, Line, Position, merge_lines
from omnistock.reservations import codec, keys
from omnistock.reservations.claims import RequestClaim
from omnistock.reservations.groups import Group
from omnistock.reservations.movements import MovementsMixin
from omnistock.reservations.runner import LedgerOutOfMemory, LedgerUnavailable, ScriptRunner
from omnistock.reservations.sagas import (
    adjust_saga,
    finish_multi_part,
    reserve_saga,
    resolve_stuck_pins,
)
from omnistock.reservations.scripts import DRY_READS
from omnistock.reservations.validation import (
    check_adjustments,
    check_lines,
    check_op,
    check_set,
)

_encode = msgspec.json.encode


class RedisLedger(MovementsMixin):
    def __init__(
        self,
        runner: ScriptRunner,
        *,
        cluster: bool,
        clock: Callable[[], int] | None = None,
        pin_grace_ms: int = 60_000,
        attempts: int = 3,
    ) -> None:
        """``clock`` (milliseconds) replaces the server's TIME; tests use it to move time."""
        self._runner = runner
        self.cluster = cluster
        self._clock = clock
        self._pin_grace_ms = pin_grace_ms
        self._attempts = attempts
        self._dry_reads = False
        # Reads answered by the dry twin because Valkey was at maxmemory (see _call_once).
        self.dry_read_fallbacks = 0

    def with_dry_reads(self) -> RedisLedger:
        """This ledger with every read (positions, availability, reservations, transfers and
        holds) on the ledger's read-only twin: what is due reads as released without
        being released, and nothing is written. The ledger falls back on it by itself when
        Valkey is at maxmemory; tests compare the two."""
        twin = copy.copy(self)
        twin._dry_reads = True
        return twin

    # -- plumbing -------------------------------------------------------------------------------

    def _now(self) -> str:
        return "" if self._clock is None else str(self._clock())

    async def _call(
        self,
        name: str,
        keys_: Sequence[str],
        args: Sequence[Any],
        claim: RequestClaim | None = None,
    ) -> Any:
        """Runs a script, retrying when the reply was lost: every script is idempotent.

        With a ``claim`` on a single server, the script first claims the operation id for the
        request's fingerprint, in the same call (see _batch.lua)."""
        if claim is not None and not self.cluster:
            seen, *result = await self._call_once(name, keys_, args, claim.fingerprint)
            _settle_claim(claim, seen)
            return result[0] if result else None
        return await self._call_once(name, keys_, args, "")

    async def _claim(self, op_id: str, claim: RequestClaim | None) -> None:
        """On a cluster a request claims its operation id in a call of its own, in the partition
        of the id: the operation's own partitions depend on the request's body."""
        if claim is not None and self.cluster:
            p = keys.partition_of(op_id)
            seen = await self._call_once("claim", [keys.tag(p)], [op_id, claim.fingerprint], "")
            _settle_claim(claim, seen)

    async def _call_once(
        self, name: str, keys_: Sequence[str], args: Sequence[Any], fingerprint: str
    ) -> Any:
        dry = self._dry_reads and name in DRY_READS
        for attempt in range(self._attempts):
            try:
                if not dry:
                    try:
                        return await self._runner.op(name, keys_, args, fingerprint)
                    except LedgerOutOfMemory:
                        # At maxmemory Valkey refuses the ledger's function, reads included (they
                        # may release what is due); its read-only twin answers the same, writing
                        # nothing.
                        if name not in DRY_READS:
                            raise
                        dry = True
                        self.dry_read_fallbacks += 1
                return await self._runner.op(name, keys_, args, fingerprint, dry=True)
            except LedgerUnavailable:
                if attempt == self._attempts - 1:
                    raise
                await asyncio.sleep(0.02 * (attempt + 1))
        raise AssertionError("unreachable")

    def _group(self, items: Sequence[tuple[int, Any]]) -> list[Group]:
        """One group per partition on a cluster; one group for everything on a single server."""
        if not self.cluster:
            parts = list(dict.fromkeys(p for p, _ in items))
            return [Group(parts[0], [keys.tag(p) for p in parts], list(items))]
        groups: dict[int, Group] = {}
        for p, item in items:
            groups.setdefault(p, Group(p, [keys.tag(p)], [])).items.append((p, item))
        return [groups[p] for p in sorted(groups)]

    # -- stock ----------------------------------------------------------------------------------

    async def set_stock(
        self,
        op_id: str,
        node_id: str,
        sku: str,
        on_hand: int,
        *,
        safety_stock: int | None = None,
        if_version: int | None = None,
        claim: RequestClaim | None = None,
    ) -> Position:
        check_set(op_id, node_id, sku, on_hand, safety_stock, if_version)
        await self._claim(op_id, claim)
        p = keys.partition_of(sku)
        args = [
            self._now(),
            op_id,
            p,
            node_id,
            sku,
            on_hand,
            "" if safety_stock is None else safety_stock,
            "" if if_version is None else if_version,
        ]
        reply = codec.decode((await self._call("set_stock", [keys.tag(p)], args, claim))[0])
        codec.raise_for(reply, kind="position", ident=f"{node_id}/{sku}", action="set")
        return codec.position(node_id, sku, reply["pos"])

    async def adjust(
        self,
        op_id: str,
        adjustments: Sequence[Adjustment],
        *,
        claim: RequestClaim | None = None,
    ) -> list[Position]:
        check_adjustments(op_id, adjustments)
        await self._claim(op_id, claim)
        items = [(keys.partition_of(a.sku), a) for a in adjustments]
        groups = self._group(items)
        if len(groups) == 1:
            return await self._adjust_group(op_id, groups[0], claim)
        return await adjust_saga(self, op_id, groups, adjustments)

    async def _adjust_group(
        self, op_id: str, group: Group, claim: RequestClaim | None = None
    ) -> list[Position]:
        args: list[Any] = [self._now(), op_id]
        for p, a in group.items:
            args += [p, a.node_id, a.sku, a.delta, a.reason.value, a.ref or ""]
        reply = codec.decode((await self._call("adjust", group.tags, args, claim))[0])
        codec.raise_for(reply, kind="adjustment", ident=op_id, action="apply")
        seen = list(dict.fromkeys((a.node_id, a.sku) for _, a in group.items))
        return [codec.position(n, s, f) for (n, s), f in zip(seen, reply["pos"], strict=True)]

    async def position(self, node_id: str, sku: str) -> Position:
        p = keys.partition_of(sku)
        out = await self._call("position", [keys.tag(p)], [self._now(), p, node_id, sku])
        return codec.position(node_id, sku, out[0])

    async def sku_positions(self, sku: str) -> list[Position]:
        return (await self.availability_many([sku]))[sku]

    async def availability_many(self, skus: Sequence[str]) -> dict[str, list[Position]]:
        if len(skus) == 1:  # a product page: one SKU, one partition, one call
            sku = skus[0]
            p = keys.partition_of(sku)
            flats = await self._call_once("availability", [keys.tag(p)], [self._now(), p, sku], "")
            return {sku: codec.positions_from_flat(sku, flats[0])}
        unique = list(dict.fromkeys(skus))
        if not unique:
            return {}
        groups = self._group([(keys.partition_of(s), s) for s in unique])

        async def read(group: Group) -> list[tuple[str, list[Position]]]:
            args: list[Any] = [self._now()]
            for p, sku in group.items:
                args += [p, sku]
            flats = await self._call("availability", group.tags, args)
            return [
                (sku, codec.positions_from_flat(sku, flat))
                for (_, sku), flat in zip(group.items, flats, strict=True)
            ]

        if len(groups) == 1:  # a single server, or SKUs of one partition: no tasks to spawn
            return dict(await read(groups[0]))
        result: dict[str, list[Position]] = {}
        for chunk in await asyncio.gather(*(read(g) for g in groups)):
            result.update(chunk)
        return {s: result[s] for s in unique}

    # -- reservations ---------------------------------------------------------------------------

    async def reserve(
        self,
        op_id: str,
        lines: Sequence[Line],
        *,
        ttl_ms: int,
        order_ref: str | None = None,
        claim: RequestClaim | None = None,
    ) -> Reservation:
        check_lines(op_id, lines, ttl_ms, order_ref)
        merged = merge_lines(list(lines))
        await self._claim(op_id, claim)
        groups = self._group([(keys.partition_of(line.sku), line) for line in merged])
        rid = keys.reservation_id(op_id, groups[0].home, single=len(groups) == 1)
        if len(groups) == 1:
            reply = await self._reserve_part(
                op_id, rid, groups[0], None, None, ttl_ms, order_ref, claim
            )
            codec.raise_for(reply, kind="reservation", ident=rid, action="reserve")
            return codec.reservation(rid, reply | {"ref": order_ref}, merged)
        return await reserve_saga(self, op_id, rid, groups, merged, ttl_ms, order_ref)

    async def _reserve_part(
        self,
        op_id: str,
        rid: str,
        group: Group,
        parts: list[int] | None,
        order: list[Line] | None,
        ttl_ms: int,
        order_ref: str | None,
        claim: RequestClaim | None = None,
    ) -> dict[str, Any]:
        """``parts`` and ``order`` go to the header part only: the partitions of every part, and
        the request's line order so a multi-part reservation reads back as it was asked for."""
        args: list[Any] = [
            self._now(),
            op_id,
            rid,
            ttl_ms,
            _encode(parts).decode() if parts else "",
            _encode([[line.node_id, line.sku] for line in order]).decode() if order else "",
            order_ref or "",
        ]
        for p, line in group.items:
            args += [p, line.node_id, line.sku, line.qty]
        return codec.decode((await self._call("reserve", group.tags, args, claim))[0])

    def _home(self, rid: str) -> int:
        home = keys.home_of(rid)
        if home is None:
            raise NotFound("reservation", rid)
        return home

    async def _view(self, partition: int, rid: str) -> dict[str, Any]:
        return codec.decode(
            await self._call("reservation", [keys.tag(partition)], [self._now(), rid])
        )

    async def get_reservation(self, reservation_id: str) -> Reservation:
        home = self._home(reservation_id)
        view = await self._view(home, reservation_id)
        codec.raise_for(view, kind="reservation", ident=reservation_id, action="read")
        _others, lines = await self._all_lines(view, home, reservation_id)
        return codec.reservation(reservation_id, view, lines)

    async def _all_lines(
        self, header: dict[str, Any], home: int, rid: str
    ) -> tuple[list[int], list[Line]]:
        """The other parts' partitions, and every line of the reservation in request order."""
        others = [p for p in codec.parts(header) if p != home]
        lines = codec.record_lines(header["ln"])
        for view in await asyncio.gather(*(self._view(p, rid) for p in others)):
            lines += codec.record_lines(view.get("ln", []))
        return others, codec.in_request_order(lines, header)

    async def _finish_part(
        self, name: str, partition: int, op_id: str, rid: str, claim: RequestClaim | None = None
    ) -> dict:
        args = [self._now(), op_id, rid]
        return codec.decode((await self._call(name, [keys.tag(partition)], args, claim))[0])

    async def commit(
        self, op_id: str, reservation_id: str, *, claim: RequestClaim | None = None
    ) -> Reservation:
        return await self._finish("commit", op_id, reservation_id, claim)

    async def release(
        self, op_id: str, reservation_id: str, *, claim: RequestClaim | None = None
    ) -> Reservation:
        return await self._finish("release", op_id, reservation_id, claim)

    async def _finish(
        self, name: str, op_id: str, rid: str, claim: RequestClaim | None
    ) -> Reservation:
        check_op(op_id)
        home = self._home(rid)
        await self._claim(op_id, claim)
        if keys.is_multi_part(rid):
            return await finish_multi_part(self, name, op_id, rid, home)
        reply = await self._finish_part(name, home, op_id, rid, claim)
        codec.raise_for(reply, kind="reservation", ident=rid, action=name)
        return codec.reservation(rid, reply, codec.record_lines(reply["ln"]))

    # -- expiry ---------------------------------------------------------------------------------

    async def expire_due(self) -> int:
        # A single server keeps one deadline set (and no pins): one call sweeps it all.
        partitions = range(keys.PARTITIONS) if self.cluster else [0]
        replies = await asyncio.gather(
            *(self._call("expire", [keys.tag(p)], [self._now()]) for p in partitions)
        )
        stuck = [
            (p, rid.decode() if isinstance(rid, bytes) else rid)
            for p, (_, rids) in enumerate(replies)
            for rid in rids
        ]
        if stuck:
            await resolve_stuck_pins(self, stuck)
        return sum(int(count) for count, _ in replies)


def _settle_claim(claim: RequestClaim, seen: Any) -> None:
    if int(seen) == 2:
        raise IdempotencyKeyReused()
    claim.replayed = int(seen) == 1
