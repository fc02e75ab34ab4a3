"""Stock positions, lines and adjustments: the vocabulary of the ledger."""

from __future__ import annotations

import enum

import msgspec

MAX_QTY = 1_000_000_000
"""Upper bound on any single quantity or delta; keeps every sum far inside Lua's exact integers."""


class Reason(enum.StrEnum):
    RECEIPT = "receipt"
    SALE = "sale"
    RETURN = "return"
    DAMAGE = "damage"
    COUNT = "count"


class Position(msgspec.Struct, frozen=True):
    """What one node holds of one SKU."""

    node_id: str
    sku: str
    on_hand: int = 0
    reserved: int = 0
    held: int = 0
    safety_stock: int = 0
    inbound: int = 0
    version: int = 0

    @property
    def available(self) -> int:
        return available(self.on_hand, self.reserved, self.held, self.safety_stock)


def available(on_hand: int, reserved: int, held: int, safety_stock: int) -> int:
    return max(0, on_hand - reserved - held - safety_stock)


class Line(msgspec.Struct, frozen=True):
    """A quantity of one SKU at one node."""

    node_id: str
    sku: str
    qty: int


class Adjustment(msgspec.Struct, frozen=True):
    node_id: str
    sku: str
    delta: int
    reason: Reason
    ref: str | None = None


class Shortage(msgspec.Struct, frozen=True):
    node_id: str
    sku: str
    requested: int
    available: int


def merge_lines(lines: list[Line]) -> list[Line]:
    """Sum lines that name the same (node, sku), keeping first-seen order."""
    if len(lines) == 1:  # most reservations: nothing to merge
        return list(lines)
    totals: dict[tuple[str, str], int] = {}
    for line in lines:
        key = (line.node_id, line.sku)
        totals[key] = totals.get(key, 0) + line.qty
    return [Line(node, sku, qty) for (node, sku), qty in totals.items()]
