"""Transfer and hold documents as the scripts store them, to domain values and errors."""

from __future__ import annotations

from typing import Any

from omnistock.domain.errors import (
    IllegalTransition,
    InsufficientStock,
    InvalidInput,
    NotFound,
)
from omnistock.domain.movement import (
    Hold,
    HoldLine,
    HoldStatus,
    Transfer,
    TransferLine,
    TransferStatus,
)
from omnistock.reservations import codec

TRANSFER_STATUS = {
    "q": TransferStatus.REQUESTED,
    "s": TransferStatus.IN_TRANSIT,
    "d": TransferStatus.RECEIVED,
    "c": TransferStatus.CANCELLED,
}
HOLD_STATUS = {
    "p": HoldStatus.PLACED,
    "y": HoldStatus.READY,
    "k": HoldStatus.COLLECTED,
    "c": HoldStatus.CANCELLED,
    "x": HoldStatus.EXPIRED,
}
# Refusals that are not a status of their own.
_SPECIAL = {
    "held": "made for a hold (cancel the hold instead)",
    "awaiting": "waiting for its transfer to arrive",
    "short": "short of what was ordered",
}


def raise_for(reply: dict[str, Any], *, kind: str, ident: str, action: str) -> None:
    err = reply.get("err")
    if err is None:
        return
    if err == "short":
        raise InsufficientStock(codec.shortages(reply))
    if err == "missing":
        raise NotFound(kind, ident)
    if err == "state":
        st = reply["st"]
        names = TRANSFER_STATUS if kind == "transfer" else HOLD_STATUS
        status = _SPECIAL.get(st) or names[st].value
        raise IllegalTransition(kind, ident, status, action)
    if err == "over":
        raise InvalidInput(
            "lines", f"{reply['sku']}: more than the {reply['shipped']} shipped cannot arrive"
        )
    if err == "unknown_line":
        raise InvalidInput("lines", f"{reply['sku']} is not on transfer {ident}")
    raise IllegalTransition(kind, ident, str(err), action)


def transfer(tid: str, header: dict[str, Any], lines: list[list[Any]]) -> Transfer:
    return Transfer(
        transfer_id=tid,
        from_node=header["from"],
        to_node=header["to"],
        status=TRANSFER_STATUS[header["st"]],
        lines=[TransferLine(str(sku), int(q), int(s), int(r)) for _p, sku, q, s, r in lines],
        created_at_ms=int(header["ct"]),
        reason=header.get("ref") or None,
        hold_id=header.get("hid") or None,
    )


def hold(hid: str, header: dict[str, Any], lines: list[list[Any]], short: bool) -> Hold:
    rb = header.get("rb")
    return Hold(
        hold_id=hid,
        store_id=header["store"],
        status=HOLD_STATUS[header["st"]],
        lines=[HoldLine(str(sku), int(q), int(h)) for _p, sku, q, h in lines],
        customer_ref=header["cref"],
        created_at_ms=int(header["ct"]),
        expires_at_ms=int(header["exp"]),
        ready_by_ms=None if rb is None else int(rb),
        transfer_id=header.get("tid") or None,
        source_node_id=header.get("src") or None,
        short=short,
    )


def in_request_order(lines: list[list[Any]], order: list[str]) -> list[list[Any]]:
    rank = {sku: i for i, sku in enumerate(order)}
    return sorted(lines, key=lambda line: rank.get(str(line[1]), len(rank)))
