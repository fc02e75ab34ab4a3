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


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def parse_entry(entry_id: Any, fields: dict[Any, Any]) -> list[LedgerEvent]:
    """The events of one stream entry, in the order they happened."""
    entry = _text(entry_id)
    raw = fields.get(b"e", fields.get("e", b""))
    events = []
    for i, line in enumerate(_text(raw).split("\n")):
        op, kind, node, sku, *numbers, ref, at = line.split("\t")
        d_oh, d_rs, d_hd, d_ib, oh, rs, hd, ss, ib, v = (int(x) for x in numbers)
        events.append(
            LedgerEvent(
                f"{entry}/{i}",
                op,
                kind,
                node,
                sku,
                d_oh,
                d_rs,
                d_hd,
                d_ib,
                oh,
                rs,
                hd,
                ss,
                ib,
                v,
                ref,
                int(at),
            )
        )
    return events
