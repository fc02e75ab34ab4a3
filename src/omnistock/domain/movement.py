"""Transfers (stock moving between nodes) and BOPIS holds (stock held at a store for a customer).

Transfer: ``requested`` (the quantity is reserved at the source) -> ``in_transit`` on ship (the
source's on_hand and reserved drop, the destination's inbound rises) -> ``received`` (the
destination's on_hand rises by what arrived, its inbound drops by what was shipped; a shortfall
is recorded as a loss). ``requested`` -> ``cancelled`` gives the reservation back; after ship
nothing can be cancelled. Receipt happens once, possibly partial; more than shipped is refused.

Hold: ``placed`` (the quantity is in ``held`` at the store) -> ``ready`` (staged at the desk) ->
``collected`` (the store's on_hand and held drop). ``placed`` or ``ready`` -> ``cancelled``, or
``expired`` once ``expires_at`` passes uncollected: held goes back to available. A hold placed
with a source node starts with a transfer from the source to the store: the goods are reserved
at the source at once, arrive into ``held`` at the store when the transfer is received (its
``ready_by`` and ``expires_at`` then count from that moment), and only then can the hold be made
ready. If less arrived than ordered the hold is ``short`` and can only be cancelled. Cancelling
or expiring such a hold cancels its transfer if not yet shipped; goods already on their way
arrive as ordinary stock.
"""

from __future__ import annotations

import enum

import msgspec

DEFAULT_PICKUP_WINDOW_S = 86_400
MAX_PICKUP_WINDOW_S = 30 * 86_400
DEFAULT_READY_MINUTES = 30


class TransferStatus(enum.StrEnum):
    REQUESTED = "requested"
    IN_TRANSIT = "in_transit"
    RECEIVED = "received"
    CANCELLED = "cancelled"


class HoldStatus(enum.StrEnum):
    PLACED = "placed"
    READY = "ready"
    COLLECTED = "collected"
    CANCELLED = "cancelled"
    EXPIRED = "expired"


class SkuQty(msgspec.Struct, frozen=True):
    sku: str
    qty: int


class TransferLine(msgspec.Struct, frozen=True):
    sku: str
    qty: int
    shipped: int = 0
    received: int = 0


class Transfer(msgspec.Struct, frozen=True):
    transfer_id: str
    from_node: str
    to_node: str
    status: TransferStatus
    lines: list[TransferLine]
    created_at_ms: int
    reason: str | None = None
    hold_id: str | None = None


class HoldLine(msgspec.Struct, frozen=True):
    sku: str
    qty: int
    held: int  # what the store holds for it now: qty, or what arrived, or 0 before arrival


class Hold(msgspec.Struct, frozen=True):
    hold_id: str
    store_id: str
    status: HoldStatus
    lines: list[HoldLine]
    customer_ref: str
    created_at_ms: int
    expires_at_ms: int
    ready_by_ms: int | None  # None while its transfer has not arrived
    transfer_id: str | None = None
    source_node_id: str | None = None
    short: bool = False


def merge_sku_lines(lines: list[SkuQty]) -> list[SkuQty]:
    """Sum lines of the same SKU, keeping first-seen order."""
    totals: dict[str, int] = {}
    for line in lines:
        totals[line.sku] = totals.get(line.sku, 0) + line.qty
    return [SkuQty(sku, qty) for sku, qty in totals.items()]
