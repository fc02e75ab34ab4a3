"""The ledger interface, implemented by the Redis ledger and by the in-memory model ledger."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from omnistock.domain.movement import Hold, SkuQty, Transfer
from omnistock.domain.reservation import Reservation
from omnistock.domain.stock import Adjustment, Line, Position


class StockLedger(Protocol):
    """Every mutation takes an operation id; repeating it returns the first result (or raises the
    first error) again and changes nothing."""

    async def set_stock(
        self,
        op_id: str,
        node_id: str,
        sku: str,
        on_hand: int,
        *,
        safety_stock: int | None = None,
        if_version: int | None = None,
    ) -> Position: ...

    async def adjust(self, op_id: str, adjustments: Sequence[Adjustment]) -> list[Position]: ...

    async def reserve(
        self, op_id: str, lines: Sequence[Line], *, ttl_ms: int, order_ref: str | None = None
    ) -> Reservation: ...

    async def commit(self, op_id: str, reservation_id: str) -> Reservation: ...

    async def release(self, op_id: str, reservation_id: str) -> Reservation: ...

    async def get_reservation(self, reservation_id: str) -> Reservation: ...

    async def position(self, node_id: str, sku: str) -> Position: ...

    async def sku_positions(self, sku: str) -> list[Position]:
        """Every node's position of one SKU, sorted by node id."""
        ...

    async def availability_many(self, skus: Sequence[str]) -> dict[str, list[Position]]: ...

    # -- transfers and holds (see omnistock.domain.movement) ----------------------------------

    async def request_transfer(
        self,
        op_id: str,
        from_node: str,
        to_node: str,
        lines: Sequence[SkuQty],
        *,
        reason: str | None = None,
    ) -> Transfer:
        """Reserves every line at ``from_node``, or none (``InsufficientStock``)."""
        ...

    async def ship_transfer(self, op_id: str, transfer_id: str) -> Transfer: ...

    async def receive_transfer(
        self, op_id: str, transfer_id: str, arrived: Sequence[SkuQty] | None = None
    ) -> Transfer:
        """``arrived`` None: everything shipped arrived; otherwise a SKU left out arrived not at
        all, and what did not arrive is a loss."""
        ...

    async def cancel_transfer(self, op_id: str, transfer_id: str) -> Transfer: ...

    async def get_transfer(self, transfer_id: str) -> Transfer: ...

    async def place_hold(
        self,
        op_id: str,
        store_id: str,
        lines: Sequence[SkuQty],
        *,
        customer_ref: str,
        pickup_window_ms: int,
        ready_in_ms: int,
        source_node_id: str | None = None,
    ) -> Hold:
        """Holds the store's own stock, or with a source requests a transfer to the store whose
        goods are held when they arrive."""
        ...

    async def ready_hold(self, op_id: str, hold_id: str) -> Hold: ...

    async def collect_hold(self, op_id: str, hold_id: str) -> Hold: ...

    async def cancel_hold(self, op_id: str, hold_id: str) -> Hold: ...

    async def get_hold(self, hold_id: str) -> Hold: ...

    async def expire_due(self) -> int:
        """Release every reservation and hold whose deadline has passed; returns how many."""
        ...
