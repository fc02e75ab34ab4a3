"""The ledger interface, implemented by the Redis ledger and by the in-memory model ledger."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

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

    async def expire_due(self) -> int:
        """Release every reservation whose deadline has passed; returns how many."""
        ...
