"""Turns script replies into domain values and domain errors."""

from __future__ import annotations

from typing import Any

import msgspec

from omnistock.domain.errors import (
    BelowCommitted,
    IllegalTransition,
    InsufficientStock,
    NotFound,
    VersionConflict,
)
from omnistock.domain.reservation import Reservation, ReservationStatus
from omnistock.domain.stock import Line, Position, Shortage

STATUS = {
    "a": ReservationStatus.ACTIVE,
    "p": ReservationStatus.ACTIVE,  # pinned for a commit in progress: still active to readers
    "c": ReservationStatus.COMMITTED,
    "r": ReservationStatus.RELEASED,
    "x": ReservationStatus.EXPIRED,
}

_decode = msgspec.json.Decoder().decode


def decode(raw: bytes | str) -> dict[str, Any]:
    return _decode(raw)


def position(node_id: str, sku: str, fields: list[int]) -> Position:
    oh, rs, hd, ss, ib, v = (int(x) for x in fields)
    return Position(node_id, sku, oh, rs, hd, ss, ib, v)


def shortages(reply: dict[str, Any]) -> list[Shortage]:
    return [Shortage(str(n), str(s), int(q), int(a)) for n, s, q, a in reply["short"]]


def raise_for(reply: dict[str, Any], *, kind: str, ident: str, action: str) -> None:
    err = reply.get("err")
    if err is None:
        return
    if err == "short":
        raise InsufficientStock(shortages(reply))
    if err == "below":
        raise BelowCommitted(shortages(reply))
    if err == "version":
        raise VersionConflict(int(reply["want"]), int(reply["v"]))
    if err == "missing":
        raise NotFound(kind, ident)
    if err == "state":
        raise IllegalTransition(kind, ident, STATUS[reply["st"]].value, action)
    raise IllegalTransition(kind, ident, str(err), action)


def parts(view: dict[str, Any]) -> list[int]:
    """The partitions of every part of a reservation, as its header lists them (none when it has
    a single part)."""
    return [int(p) for p in view.get("parts") or ()]


def record_lines(raw: list[list[Any]]) -> list[Line]:
    return [Line(str(node), str(sku), int(qty)) for _part, node, sku, qty in raw]


def in_request_order(lines: list[Line], header: dict[str, Any]) -> list[Line]:
    """Lines of a multi-part reservation, in the order the request named them."""
    order = header.get("order")
    if not order:
        return lines
    rank = {(str(node), str(sku)): i for i, (node, sku) in enumerate(order)}
    return sorted(lines, key=lambda line: rank.get((line.node_id, line.sku), len(rank)))


def reservation(rid: str, view: dict[str, Any], lines: list[Line]) -> Reservation:
    return Reservation(
        reservation_id=rid,
        status=STATUS[view["st"]],
        lines=lines,
        expires_at_ms=int(view["exp"]),
        created_at_ms=int(view["ct"]),
        order_ref=view.get("ref") or None,
    )


def positions_from_flat(sku: str, flat: list[Any]) -> list[Position]:
    """Positions sorted by node id, from the availability script's reply: per node its id, then
    on_hand, reserved, held, safety_stock, inbound and version."""
    positions = [
        Position(flat[i].decode(), sku, *flat[i + 1 : i + 7]) for i in range(0, len(flat), 7)
    ]
    if len(positions) > 1:
        positions.sort(key=_node_id)
    return positions


def _node_id(p: Position) -> str:
    return p.node_id
