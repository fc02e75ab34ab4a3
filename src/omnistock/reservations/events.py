"""The ledger's events as the scripts append them to each partition's stream (``{os.N}:ev``).

One event per line changed: the operation id, its kind (``set``, ``receipt``, ``sale``,
``return``, ``damage``, ``count``, ``reserve``, ``commit``, ``release``, ``expire``), the position,
the deltas it applied, the quantities it left, a reference (reservation id, adjustment ref) and
the time in milliseconds. Deltas and quantities travel packed in two fields, ``d`` and ``q``,
because the server pays for every field of every entry on the hot path.
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


def parse_event(event_id: Any, fields: dict[Any, Any]) -> LedgerEvent:
    f = {_text(k): _text(v) for k, v in fields.items()}
    d_oh, d_rs, d_hd, d_ib = (int(x) for x in f["d"].split())
    oh, rs, hd, ss, ib, v = (int(x) for x in f["q"].split())
    return LedgerEvent(
        _text(event_id),
        f["op"],
        f["k"],
        f["n"],
        f["s"],
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
        f.get("ref", ""),
        int(f["t"]),
    )
