"""Operations that span partitions on a cluster, as sagas of per-partition scripts.

No caller ever sees part of an operation succeed: a reserve that fails in one partition is
aborted in the others (idempotently, under the same operation id), a commit first pins every
other part so none can expire while the header commits, and a crash mid-way leaves nothing
reserved beyond its deadline: unpinned parts expire on their own, and pins left by a crashed
coordinator are resolved by the sweeper from the header's status.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import msgspec

from omnistock.domain.errors import BelowCommitted, IllegalTransition, InsufficientStock
from omnistock.domain.reservation import Reservation
from omnistock.domain.stock import Adjustment, Line, Position
from omnistock.reservations import codec, keys
from omnistock.reservations.runner import LedgerUnavailable

if TYPE_CHECKING:
    from omnistock.reservations.redis_ledger import Group, RedisLedger

log = logging.getLogger("omnistock.ledger.saga")


async def reserve_saga(
    ledger: RedisLedger,
    op_id: str,
    rid: str,
    groups: list[Group],
    lines: list[Line],
    ttl_ms: int,
    order_ref: str | None,
) -> Reservation:
    parts = [g.home for g in groups]
    replies = await asyncio.gather(
        *(
            ledger._reserve_part(op_id, rid, g, parts if i == 0 else None, ttl_ms, order_ref)
            for i, g in enumerate(groups)
        ),
        return_exceptions=True,
    )
    unreachable = [r for r in replies if isinstance(r, BaseException)]
    # A replayed failure carries the whole saga's shortages in its header: keep each line once.
    short = list(
        {
            (s.node_id, s.sku): s
            for r in replies
            if isinstance(r, dict) and r.get("err") == "short"
            for s in codec.shortages(r)
        }.values()
    )
    failed = [r for r in replies if isinstance(r, dict) and r.get("err")]
    if not unreachable and not failed:
        return codec.reservation(rid, replies[0] | {"ref": order_ref}, lines)

    final = (
        ""
        if unreachable
        else msgspec.json.encode(
            {"err": "short", "short": [[s.node_id, s.sku, s.requested, s.available] for s in short]}
        ).decode()
    )
    try:
        await asyncio.gather(
            *(
                ledger._call("abort", [keys.tag(g.home)], [ledger._now(), op_id, rid, final])
                for g in groups
            )
        )
    except LedgerUnavailable:
        log.warning("abort of reservation %s incomplete; its parts expire at their deadline", rid)
        raise
    if unreachable:
        raise LedgerUnavailable(str(unreachable[0]))
    if short:
        raise InsufficientStock(short)
    codec.raise_for(failed[0], kind="reservation", ident=rid, action="reserve")
    raise AssertionError("unreachable")


async def _pin(ledger: RedisLedger, partition: int, rid: str) -> dict[str, Any]:
    raw = await ledger._call(
        "pin", [keys.tag(partition)], [ledger._now(), rid, ledger._pin_grace_ms]
    )
    return codec.decode(raw)


async def _unpin(ledger: RedisLedger, partition: int, rid: str) -> dict[str, Any]:
    return codec.decode(await ledger._call("unpin", [keys.tag(partition)], [ledger._now(), rid]))


def _parts(view: dict[str, Any]) -> list[int]:
    return [int(p) for p in view.get("parts") or ()]


async def finish_multi_part(
    ledger: RedisLedger, name: str, op_id: str, rid: str, home: int
) -> Reservation:
    header = await ledger._view(home, rid)
    codec.raise_for(header, kind="reservation", ident=rid, action=name)
    others = [p for p in _parts(header) if p != home]
    views = await asyncio.gather(*(ledger._view(p, rid) for p in others))
    lines = codec.record_lines(header["ln"])
    for v in views:
        lines += codec.record_lines(v.get("ln", []))

    if name == "release":
        reply = await ledger._finish_part("release", home, op_id, rid)
        codec.raise_for(reply, kind="reservation", ident=rid, action=name)
        # A part pinned by a concurrent commit refuses; it expires at its deadline.
        await asyncio.gather(*(ledger._finish_part("release", p, op_id, rid) for p in others))
        return codec.reservation(rid, reply, lines)

    pins = await asyncio.gather(*(_pin(ledger, p, rid) for p in others))
    blocked = [r for r in pins if r.get("err") or r.get("st") not in ("p", "c")]
    if blocked:
        await asyncio.gather(*(_unpin(ledger, p, rid) for p in others))
        status = header["st"] if header["st"] not in ("a", "p") else blocked[0].get("st", "x")
        raise IllegalTransition("reservation", rid, codec.STATUS[status].value, name)
    reply = await ledger._finish_part("commit", home, op_id, rid)
    if reply.get("err"):
        await asyncio.gather(*(_unpin(ledger, p, rid) for p in others))
        codec.raise_for(reply, kind="reservation", ident=rid, action=name)
    await asyncio.gather(*(ledger._finish_part("commit", p, op_id, rid) for p in others))
    return codec.reservation(rid, reply, lines)


async def resolve_stuck_pins(ledger: RedisLedger, stuck: Sequence[tuple[int, str]]) -> None:
    """Pins whose coordinator vanished: follow the header's decision."""
    for partition, rid in stuck:
        home = keys.home_of(rid)
        header = await ledger._view(home, rid) if home is not None else {"err": "missing"}
        if header.get("st") == "c":
            await ledger._finish_part("commit", partition, f"recover:{rid}", rid)
            continue
        await _unpin(ledger, partition, rid)
        if header.get("st") != "a":
            await ledger._finish_part("release", partition, f"recover:{rid}", rid)


async def adjust_saga(ledger: RedisLedger, op_id: str, groups: list[Group]) -> list[Position]:
    """Decrements first (they can be refused), undone with increments if any is; then increments,
    which cannot be refused."""
    from omnistock.reservations.redis_ledger import Group

    def split(sign: int) -> list[Group]:
        out = []
        for g in groups:
            items = [(p, a) for p, a in g.items if (a.delta < 0) == (sign < 0)]
            if items:
                out.append(Group(g.home, g.tags, items))
        return out

    decrements, increments = split(-1), split(+1)
    results = await asyncio.gather(
        *(ledger._adjust_group(f"{op_id}:out", g) for g in decrements), return_exceptions=True
    )
    refused = [r for r in results if isinstance(r, BaseException)]
    if refused:
        done = [
            g for g, r in zip(decrements, results, strict=True) if not isinstance(r, BaseException)
        ]
        undo = [Group(g.home, g.tags, [(p, _inverse(a)) for p, a in g.items]) for g in done]
        await asyncio.gather(*(ledger._adjust_group(f"{op_id}:undo", g) for g in undo))
        if all(isinstance(r, BelowCommitted) for r in refused):
            raise BelowCommitted([s for r in refused for s in r.shortages])
        raise refused[0]
    later = await asyncio.gather(*(ledger._adjust_group(f"{op_id}:in", g) for g in increments))
    final: dict[tuple[str, str], Position] = {}
    for batch in [*results, *later]:
        for pos in batch:
            final[(pos.node_id, pos.sku)] = pos
    order = dict.fromkeys((a.node_id, a.sku) for g in groups for _, a in g.items)
    return [final[k] for k in order]


def _inverse(a: Adjustment) -> Adjustment:
    return Adjustment(a.node_id, a.sku, -a.delta, a.reason, "undo")
