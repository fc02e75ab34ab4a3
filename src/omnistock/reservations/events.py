"""The ledger's events as the scripts append them to each partition's stream (``{os.N}:ev``).

One event per line changed: the operation id, its kind (``set``, ``receipt``, ``sale``,
``return``, ``damage``, ``count``, ``reserve``, ``commit``, ``release``, ``expire``; for
transfers ``transfer_reserve``, ``ship_out``, ``ship_in``, ``receive``, ``loss``,
``transfer_cancel``; for holds ``hold``, ``hold_arrive``, ``collect``, ``hold_cancel``,
``hold_expire``), the position, the deltas it applied, the quantities it left, a reference
(reservation, transfer or hold id, adjustment ref) and the time in milliseconds. A script call
appends one stream entry per partition it changed; the entry's field ``e`` holds its events, one
per line, values separated by tabs, because the server pays per stream entry and this is on every
write. An event's id is its entry's id and its index.
"""

from __future__ import annotations

from typing import Any

import msgspec


class LedgerEvent(msgspec.Struct, frozen=True):
    event_id: str
    op_id: str
    kind: str
    node_id: str
    sku: str
    d_on_hand: int
    d_reserved: int
    d_held: int
    d_inbound: int
    on_hand: int
    reserved: int
    held: int
    safety_stock: int
    inbound: int
    version: int
    ref: str
    at_ms: int


def text(value: Any) -> str:
    """A stream entry id or field as text (the client may give bytes or str)."""
    return value.decode() if isinstance(value, bytes) else str(value)


def stream_position(entry_id: Any) -> str:
    """A stream entry id (``<ms>-<seq>``) as text whose order is the stream's order."""
    ms, _, seq = text(entry_id).partition("-")
    return f"{int(ms):020d}-{int(seq or 0):020d}"


def _events_field(fields: dict[Any, Any]) -> Any:
    """An entry's field "e", one event per line (the client may key it by bytes or str)."""
    return fields.get(b"e", fields.get("e", b""))


def skus_of_entry(fields: dict[Any, Any]) -> list[str]:
    """The SKU of every event of one stream entry (the fourth value of each line), without
    decoding the rest."""
    raw = _events_field(fields)
    if isinstance(raw, str):
        raw = raw.encode()
    return [line.split(b"\t", 4)[3].decode() for line in raw.split(b"\n") if line]


def parse_entry(entry_id: Any, fields: dict[Any, Any]) -> list[LedgerEvent]:
    """The events of one stream entry, in the order they happened."""
    entry = text(entry_id)
    events = []
    for i, line in enumerate(text(_events_field(fields)).split("\n")):
        op, kind, node, sku, d_oh, d_rs, d_hd, d_ib, oh, rs, hd, ss, ib, v, ref, at = line.split(
            "\t"
        )
        events.append(
            LedgerEvent(
                f"{entry}/{i}",
                op,
                kind,
                node,
                sku,
                int(d_oh),
                int(d_rs),
                int(d_hd),
                int(d_ib),
                int(oh),
                int(rs),
                int(hd),
                int(ss),
                int(ib),
                int(v),
                ref,
                int(at),
            )
        )
    return events
