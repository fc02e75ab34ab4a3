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

from omnistock.domain.errors import BelowCommitted, IllegalTransition
from omnistock.domain.reservation import Reservation
from omnistock.domain.stock import Adjustment, Line, Position, Shortage
from omnistock.reservations import codec, keys
from omnistock.reservations.groups import Group
from omnistock.reservations.runner import LedgerUnavailable

if TYPE_CHECKING:
    from omnistock.reservations.redis_ledger import RedisLedger

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
    """Reserves part by part in partition order, stopping at the first refusal.

    One after another, not in parallel: a part held by an attempt that then fails elsewhere would
    make concurrent attempts fail against stock that turns out to be free. In a fixed order, an
    attempt only holds earlier parts while it tries later ones, as with ordered lock acquisition.
    """
    parts = [g.home for g in groups]
    replies: list[dict[str, Any]] = []
    unreachable: LedgerUnavailable | None = None
    for i, group in enumerate(groups):
        try:
            reply = await ledger._reserve_part(
                op_id,
                rid,
                group,
                parts if i == 0 else None,
                lines if i == 0 else None,
                ttl_ms,
                order_ref,
            )
        except LedgerUnavailable as exc:
            unreachable = exc
            break
        replies.append(reply)
        if reply.get("err"):
            break
    failed = replies[-1] if replies and replies[-1].get("err") else None
    if unreachable is None and failed is None:
        return codec.reservation(rid, replies[0] | {"ref": order_ref}, lines)

    if failed is None:
        final = ""
    elif failed.get("err") == "short":
        short = codec.shortages(failed)
        if not failed.get("whole"):  # a first refusal: name the short lines of untried parts too
            short += await _shortages_of(ledger, groups[len(replies) :])
        failed = {
            "err": "short",
            "whole": True,
            "short": [
                [s.node_id, s.sku, s.requested, s.available] for s in _in_line_order(short, lines)
            ],
        }
        final = msgspec.json.encode(failed).decode()
    else:
        final = msgspec.json.encode(failed).decode()
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
    if failed is None:
        raise unreachable or LedgerUnavailable("reservation saga incomplete")
    codec.raise_for(failed, kind="reservation", ident=rid, action="reserve")
    raise AssertionError("unreachable")


def _in_line_order(short: list[Shortage], lines: list[Line]) -> list[Shortage]:
    """Each short line once, in the order of the request, as a single script reports them."""
    order = {(line.node_id, line.sku): i for i, line in enumerate(lines)}
    unique = {(s.node_id, s.sku): s for s in short}
    return sorted(unique.values(), key=lambda s: order.get((s.node_id, s.sku), len(order)))


async def _shortages_of(ledger: RedisLedger, groups: list[Group]) -> list[Shortage]:
    """What the parts not tried would lack now, so the refusal names every short line."""
    wanted = [line for g in groups for _p, line in g.items]
    if not wanted:
        return []
    positions = await ledger.availability_many([line.sku for line in wanted])
    out = []
    for line in wanted:
        have = next((p.available for p in positions[line.sku] if p.node_id == line.node_id), 0)
        if line.qty > have:
            out.append(Shortage(line.node_id, line.sku, line.qty, have))
    return out


async def _pin(ledger: RedisLedger, partition: int, rid: str) -> dict[str, Any]:
    raw = await ledger._call(
        "pin", [keys.tag(partition)], [ledger._now(), rid, ledger._pin_grace_ms]
    )
    return codec.decode(raw)


async def _unpin(ledger: RedisLedger, partition: int, rid: str) -> dict[str, Any]:
    return codec.decode(await ledger._call("unpin", [keys.tag(partition)], [ledger._now(), rid]))


async def finish_multi_part(
    ledger: RedisLedger, name: str, op_id: str, rid: str, home: int
) -> Reservation:
    header = await ledger._view(home, rid)
    codec.raise_for(header, kind="reservation", ident=rid, action=name)
    others, lines = await ledger._all_lines(header, home, rid)

    if name == "release":
        reply = await ledger._finish_part("release", home, op_id, rid)
        codec.raise_for(reply, kind="reservation", ident=rid, action=name)
        # A part pinned by a concurrent commit refuses here; that commit then fails on the
        # released header and releases the part (see _follow_header).
        await asyncio.gather(*(ledger._finish_part("release", p, op_id, rid) for p in others))
        return codec.reservation(rid, reply, lines)

    pins = await asyncio.gather(*(_pin(ledger, p, rid) for p in others))
    blocked = [r for r in pins if r.get("err") or r.get("st") not in ("p", "c")]
    if blocked:
        await _follow_header(ledger, others, rid, header["st"], op_id)
        status = header["st"] if header["st"] not in ("a", "p") else blocked[0].get("st", "x")
        raise IllegalTransition("reservation", rid, codec.STATUS[status].value, name)
    reply = await ledger._finish_part("commit", home, op_id, rid)
    if reply.get("err"):
        await _follow_header(ledger, others, rid, reply.get("st", "a"), op_id)
        codec.raise_for(reply, kind="reservation", ident=rid, action=name)
    await asyncio.gather(*(ledger._finish_part("commit", p, op_id, rid) for p in others))
    return codec.reservation(rid, reply, lines)


async def _follow_header(
    ledger: RedisLedger, others: list[int], rid: str, header_status: str, op_id: str
) -> None:
    """After a commit that did not happen, the other parts follow the header: back to active
    while it is active, released once it was released or expired (a release that raced the
    commit found them pinned and left them to this)."""
    await asyncio.gather(*(_unpin(ledger, p, rid) for p in others))
    if header_status in ("r", "x"):
        await asyncio.gather(
            *(ledger._finish_part("release", p, f"{op_id}:follow", rid) for p in others)
        )


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


async def adjust_saga(
    ledger: RedisLedger, op_id: str, groups: list[Group], adjustments: Sequence[Adjustment]
) -> list[Position]:
    """Partitions that can refuse (any decrement) go first, each whole so that lines on one
    position see the running total as on a single server. If one refuses, those applied are
    undone by the inverse of their net change per position. Partitions with increments only,
    which cannot refuse, go last. Every partition runs once, under the caller's operation id."""
    risky = [g for g in groups if any(a.delta < 0 for _p, a in g.items)]
    safe = [g for g in groups if all(a.delta > 0 for _p, a in g.items)]
    short = await _would_fall_below(ledger, adjustments)
    if short:
        refusal = await _remember_refusal(ledger, op_id, risky, short)
        if refusal is not None:
            codec.raise_for(refusal, kind="adjustment", ident=op_id, action="apply")
    results = await asyncio.gather(
        *(ledger._adjust_group(op_id, g) for g in risky), return_exceptions=True
    )
    refused = [r for r in results if isinstance(r, BaseException)]
    if refused:
        done = [g for g, r in zip(risky, results, strict=True) if not isinstance(r, BaseException)]
        undo = [Group(g.home, g.tags, _net_inverse(g)) for g in done]
        await asyncio.gather(*(ledger._adjust_group(f"{op_id}:undo", u) for u in undo if u.items))
        if all(isinstance(r, BelowCommitted) for r in refused):
            groups_refused = [
                g for g, r in zip(risky, results, strict=True) if isinstance(r, BelowCommitted)
            ]
            raise BelowCommitted(_in_request_order(groups_refused, refused, adjustments))
        raise refused[0]
    later = await asyncio.gather(*(ledger._adjust_group(op_id, g) for g in safe))
    final: dict[tuple[str, str], Position] = {}
    for batch in [*results, *later]:
        for pos in batch:
            final[(pos.node_id, pos.sku)] = pos
    order = dict.fromkeys((a.node_id, a.sku) for a in adjustments)
    return [final[k] for k in order]


async def _would_fall_below(
    ledger: RedisLedger, adjustments: Sequence[Adjustment]
) -> list[Shortage]:
    """The lines that would take on_hand below reserved + held, judged on a fresh read with
    running totals in request order, as a single script judges them. Checked before any
    partition applies anything, so a refusal leaves every position (and version) untouched;
    a change racing in between is still caught by the scripts and undone."""
    positions = await ledger.availability_many([a.sku for a in adjustments])
    current = {(p.node_id, p.sku): p for found in positions.values() for p in found}
    on_hand: dict[tuple[str, str], int] = {}
    short = []
    for a in adjustments:
        key = (a.node_id, a.sku)
        p = current.get(key) or Position(a.node_id, a.sku)
        before = on_hand.get(key, p.on_hand)
        if before + a.delta < p.reserved + p.held:
            short.append(Shortage(a.node_id, a.sku, -a.delta, max(0, before - p.reserved - p.held)))
        on_hand[key] = before + a.delta
    return short


async def _remember_refusal(
    ledger: RedisLedger, op_id: str, risky: list[Group], short: list[Shortage]
) -> dict[str, Any] | None:
    """Records the refusal as the operation's outcome in every partition that can refuse, so a
    repeat replays it, and returns the refusal that stands: the first one remembered, which a
    repeat reports as it was even when the stock has moved since. None when the operation
    already had another outcome (a repeat of an adjust that was applied): then it runs again,
    and every partition replays what it did."""
    refusal = msgspec.json.encode(
        {"err": "below", "short": [[s.node_id, s.sku, s.requested, s.available] for s in short]}
    ).decode()
    stored = await asyncio.gather(
        *(ledger._call("remember", [keys.tag(g.home)], [op_id, refusal]) for g in risky)
    )
    outcomes = [codec.decode(raw) for raw in stored]
    if all(o.get("err") for o in outcomes):
        return outcomes[0]
    return None


def _in_request_order(
    groups: list[Group], refusals: list[BaseException], adjustments: Sequence[Adjustment]
) -> list[Shortage]:
    """Short lines of several partitions in the order of the request, as one script reports
    them on a single server. Each partition reports its own short lines in its line order, so
    they are matched back to their lines by position and quantity. A partition replaying the
    refusal remembered before any partition applied (see _remember_refusal) reports every short
    line of the request, some of them outside its own lines: that list is the answer as it is.
    Two short lines may read the same (one position, one quantity, one available figure), so
    lines are told apart by their place in the request, never by their value."""
    index = {id(a): i for i, a in enumerate(adjustments)}
    placed: list[tuple[int, Shortage]] = []
    for group, refusal in zip(groups, refusals, strict=True):
        shortages = list(getattr(refusal, "shortages", []))
        k = 0
        for _p, a in group.items:
            if k < len(shortages):
                s = shortages[k]
                if (s.node_id, s.sku, s.requested) == (a.node_id, a.sku, -a.delta):
                    placed.append((index[id(a)], s))
                    k += 1
        if k < len(shortages):
            return shortages
    return [s for _i, s in sorted(placed, key=lambda pair: pair[0])]


def _net_inverse(group: Group) -> list[tuple[int, Adjustment]]:
    net: dict[tuple[str, str], tuple[int, Adjustment]] = {}
    for p, a in group.items:
        key = (a.node_id, a.sku)
        total = net[key][1].delta + a.delta if key in net else a.delta
        first = net[key][1] if key in net else a
        net[key] = (p, Adjustment(a.node_id, a.sku, total, first.reason, "undo"))
    return [
        (p, Adjustment(a.node_id, a.sku, -a.delta, a.reason, "undo"))
        for p, a in net.values()
        if a.delta != 0
    ]
