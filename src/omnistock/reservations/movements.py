"""Transfers and BOPIS holds on the Redis ledger (mixed into ``RedisLedger``).

Each is a document per partition part (see the ``transfer_*``, ``hold_*`` scripts). On a single
server every operation is one script call, so each step is atomic as a whole. On a cluster, a
document whose SKUs span partitions is created part by part in partition order, the earlier
parts undone if a later one is refused (as reservations are), and each later step runs on the
header part first, which decides, then on the others under the same operation id, so a retried
step completes what an interrupted one began. Every SKU's two ends (source and destination) live
in the same partition, so each line moves atomically: no unit is ever counted twice or nowhere,
except as ``inbound`` while a transfer is on its way.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import msgspec

from omnistock.domain.errors import InsufficientStock, NotFound
from omnistock.domain.movement import Hold, SkuQty, Transfer, merge_sku_lines
from omnistock.domain.stock import Shortage
from omnistock.reservations import codec, documents, keys
from omnistock.reservations.claims import RequestClaim
from omnistock.reservations.groups import Group
from omnistock.reservations.validation import (
    check_arrivals,
    check_hold,
    check_op,
    check_transfer,
)

if TYPE_CHECKING:
    from omnistock.reservations.redis_ledger import RedisLedger

_encode = msgspec.json.encode


class MovementsMixin:
    # -- transfers ------------------------------------------------------------------------------

    async def request_transfer(
        self: RedisLedger,
        op_id: str,
        from_node: str,
        to_node: str,
        lines: Sequence[SkuQty],
        *,
        reason: str | None = None,
        claim: RequestClaim | None = None,
    ) -> Transfer:
        merged = merge_sku_lines(list(lines))
        check_transfer(op_id, from_node, to_node, merged)
        await self._claim(op_id, claim)
        groups = self._group([(keys.partition_of(line.sku), line) for line in merged])
        tid = keys.doc_id("t", op_id, groups[0].home, single=len(groups) == 1)

        def args(i: int, group: Group) -> list[Any]:
            out: list[Any] = [self._now(), op_id, tid, from_node, to_node, reason or ""]
            out += [_parts(groups, merged) if i == 0 and len(groups) > 1 else "", ""]
            for p, line in group.items:
                out += [p, line.sku, line.qty]
            return out

        header, parts = await self._create(
            "transfer_request", op_id, tid, groups, merged, args, from_node, claim, "transfer"
        )
        return documents.transfer(tid, header, _lines_of(header, parts))

    async def ship_transfer(
        self: RedisLedger, op_id: str, transfer_id: str, *, claim: RequestClaim | None = None
    ) -> Transfer:
        header, parts = await self._step(
            "transfer_ship", "ship", "transfer", op_id, transfer_id, claim
        )
        return documents.transfer(transfer_id, header, _lines_of(header, parts))

    async def cancel_transfer(
        self: RedisLedger, op_id: str, transfer_id: str, *, claim: RequestClaim | None = None
    ) -> Transfer:
        header, parts = await self._step(
            "transfer_cancel", "cancel", "transfer", op_id, transfer_id, claim
        )
        return documents.transfer(transfer_id, header, _lines_of(header, parts))

    async def receive_transfer(
        self: RedisLedger,
        op_id: str,
        transfer_id: str,
        arrived: Sequence[SkuQty] | None = None,
        *,
        claim: RequestClaim | None = None,
    ) -> Transfer:
        check_arrivals(op_id, arrived)
        # The whole receipt goes to every part: the header checks all of it against its map of
        # the parts before any part takes anything, so a bad receipt changes nothing anywhere.
        receipt = "" if arrived is None else _encode([[a.sku, a.qty] for a in arrived]).decode()

        def extra(_partition: int) -> list[Any]:
            return [receipt]

        header, parts = await self._step(
            "transfer_receive", "receive", "transfer", op_id, transfer_id, claim, extra
        )
        return documents.transfer(transfer_id, header, _lines_of(header, parts))

    async def get_transfer(self: RedisLedger, transfer_id: str) -> Transfer:
        header, parts = await self._read_doc(transfer_id, "t", "transfer")
        return documents.transfer(transfer_id, header, _lines_of(header, parts))

    # -- holds ----------------------------------------------------------------------------------

    async def place_hold(
        self: RedisLedger,
        op_id: str,
        store_id: str,
        lines: Sequence[SkuQty],
        *,
        customer_ref: str,
        pickup_window_ms: int,
        ready_in_ms: int,
        source_node_id: str | None = None,
        claim: RequestClaim | None = None,
    ) -> Hold:
        merged = merge_sku_lines(list(lines))
        check_hold(
            op_id, store_id, merged, customer_ref, pickup_window_ms, ready_in_ms, source_node_id
        )
        await self._claim(op_id, claim)
        groups = self._group([(keys.partition_of(line.sku), line) for line in merged])
        single = len(groups) == 1
        hid = keys.doc_id("h", op_id, groups[0].home, single=single)
        tid = keys.doc_id("t", op_id, groups[0].home, single=single) if source_node_id else ""

        def args(i: int, group: Group) -> list[Any]:
            out: list[Any] = [self._now(), op_id, hid, store_id, customer_ref]
            out += [pickup_window_ms, ready_in_ms, source_node_id or "", tid]
            out += [_parts(groups, merged) if i == 0 and not single else ""]
            for p, line in group.items:
                out += [p, line.sku, line.qty]
            return out

        node = source_node_id or store_id
        header, parts = await self._create(
            "hold_place", op_id, hid, groups, merged, args, node, claim, "hold"
        )
        return _hold(hid, header, parts)

    async def ready_hold(
        self: RedisLedger, op_id: str, hold_id: str, *, claim: RequestClaim | None = None
    ) -> Hold:
        return await self._hold_step("hold_ready", "ready", op_id, hold_id, claim)

    async def collect_hold(
        self: RedisLedger, op_id: str, hold_id: str, *, claim: RequestClaim | None = None
    ) -> Hold:
        return await self._hold_step("hold_collect", "collect", op_id, hold_id, claim)

    async def cancel_hold(
        self: RedisLedger, op_id: str, hold_id: str, *, claim: RequestClaim | None = None
    ) -> Hold:
        return await self._hold_step("hold_cancel", "cancel", op_id, hold_id, claim)

    async def get_hold(self: RedisLedger, hold_id: str) -> Hold:
        header, parts = await self._read_doc(hold_id, "h", "hold")
        return _hold(hold_id, header, parts)

    async def _hold_step(
        self: RedisLedger,
        name: str,
        action: str,
        op_id: str,
        hold_id: str,
        claim: RequestClaim | None,
    ) -> Hold:
        # The header part decides for every part: it knows whether any part is short (see
        # transfer_receive.lua), so a hold that cannot be ready is refused before any part moves.
        header, parts = await self._step(name, action, "hold", op_id, hold_id, claim)
        return _hold(hold_id, header, parts)

    # -- the part-by-part machinery -------------------------------------------------------------

    async def _create(
        self: RedisLedger,
        name: str,
        op_id: str,
        doc: str,
        groups: list[Group],
        lines: list[SkuQty],
        args: Any,
        node: str,
        claim: RequestClaim | None,
        kind: str,
    ) -> tuple[dict[str, Any], list[dict[str, Any]]]:
        """Creates the parts in partition order; a refusal undoes the parts made before it."""
        replies: list[dict[str, Any]] = []
        for i, group in enumerate(groups):
            raw = await self._call(name, group.tags, args(i, group), claim if i == 0 else None)
            reply = codec.decode(raw[0])
            if reply.get("err"):
                if len(groups) > 1:
                    reply = await self._undo(op_id, doc, groups, lines, i, reply, node)
                documents.raise_for(reply, kind=kind, ident=doc, action="create")
            replies.append(reply)
        return replies[0], replies

    async def _undo(
        self: RedisLedger,
        op_id: str,
        doc: str,
        groups: list[Group],
        lines: list[SkuQty],
        failed_at: int,
        reply: dict[str, Any],
        node: str,
    ) -> dict[str, Any]:
        """Gives back the parts made before the refused one, and makes every part tried so far
        (the refused one too) keep the final refusal, so that a repeat replays it. A first
        shortage also names the short lines of the parts not tried, in the request's line order,
        as a single script reports them."""
        if reply.get("err") == "short" and not reply.get("whole"):
            short = codec.shortages(reply) + await self._short_of(groups[failed_at + 1 :], node)
            rank = {line.sku: i for i, line in enumerate(lines)}
            short.sort(key=lambda s: rank.get(s.sku, len(rank)))
            reply = {
                "err": "short",
                "whole": True,
                "short": [[s.node_id, s.sku, s.requested, s.available] for s in short],
            }
        final = _encode(reply).decode()
        await asyncio.gather(
            *(
                self._call("doc_abort", [keys.tag(g.home)], [self._now(), op_id, doc, final])
                for g in groups[: failed_at + 1]
            )
        )
        return reply

    async def _short_of(self: RedisLedger, groups: list[Group], node: str) -> list[Shortage]:
        wanted = [line for g in groups for _p, line in g.items]
        if not wanted:
            return []
        positions = await self.availability_many([line.sku for line in wanted])
        out = []
        for line in wanted:
            have = next((p.available for p in positions[line.sku] if p.node_id == node), 0)
            if line.qty > have:
                out.append(Shortage(node, line.sku, line.qty, have))
        return out

    async def _step(
        self: RedisLedger,
        name: str,
        action: str,
        kind: str,
        op_id: str,
        doc: str,
        claim: RequestClaim | None,
        extra: Any = None,
    ) -> tuple[dict[str, Any], list[dict[str, Any]]]:
        """Runs a step on the header part, which decides, then on the other parts."""
        check_op(op_id)
        home, multi = _parse(doc, kind[0], kind)
        await self._claim(op_id, claim)

        def args(partition: int) -> list[Any]:
            return [self._now(), op_id, doc, *(extra(partition) if extra else ())]

        raw = await self._call(name, [keys.tag(home)], args(home), claim)
        header = codec.decode(raw[0])
        documents.raise_for(header, kind=kind, ident=doc, action=action)
        if not multi:
            return header, [header]
        others = [p for p in header["parts"]["p"] if p != home]
        replies = await asyncio.gather(*(self._call(name, [keys.tag(p)], args(p)) for p in others))
        parts = [header]
        for raw_part in replies:
            part = codec.decode(raw_part[0])
            documents.raise_for(part, kind=kind, ident=doc, action=action)
            parts.append(part)
        return header, parts

    async def _read_doc(
        self: RedisLedger, doc: str, prefix: str, kind: str
    ) -> tuple[dict[str, Any], list[dict[str, Any]]]:
        home, multi = _parse(doc, prefix, kind)
        header = codec.decode(await self._call("document", [keys.tag(home)], [self._now(), doc]))
        if header.get("err") or header.get("st") == "f" or header.get("k") != prefix:
            raise NotFound(kind, doc)
        if not multi:
            return header, [header]
        others = [p for p in header["parts"]["p"] if p != home]
        replies = await asyncio.gather(
            *(self._call("document", [keys.tag(p)], [self._now(), doc]) for p in others)
        )
        return header, [header, *(codec.decode(r) for r in replies)]


def _parse(doc: str, prefix: str, kind: str) -> tuple[int, bool]:
    parsed = keys.parse_doc_id(doc, prefix)
    if parsed is None:
        raise NotFound(kind, doc)
    return parsed


def _parts(groups: list[Group], lines: list[SkuQty]) -> str:
    """The header's map of a multi-part document: its partitions, and the request's SKUs in
    order with their quantities (so the header can check a receipt of every part)."""
    return _encode(
        {
            "p": [g.home for g in groups],
            "o": [line.sku for line in lines],
            "q": [line.qty for line in lines],
        }
    ).decode()


def _lines_of(header: dict[str, Any], parts: list[dict[str, Any]]) -> list[list[Any]]:
    lines = [line for part in parts for line in part.get("ln", [])]
    order = (header.get("parts") or {}).get("o")
    return documents.in_request_order(lines, order) if order else lines


def _hold(hid: str, header: dict[str, Any], parts: list[dict[str, Any]]) -> Hold:
    short = any(part.get("short") for part in parts)
    return documents.hold(hid, header, _lines_of(header, parts), short)


__all__ = ["InsufficientStock", "MovementsMixin"]
