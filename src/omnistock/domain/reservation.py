"""Reservations: stock promised to an order until it is committed, released or expires."""

from __future__ import annotations

import enum

import msgspec

from omnistock.domain.stock import Line

DEFAULT_TTL_S = 900
MAX_TTL_S = 7 * 24 * 3600


class ReservationStatus(enum.StrEnum):
    ACTIVE = "active"
    COMMITTED = "committed"
    RELEASED = "released"
    EXPIRED = "expired"


TERMINAL = frozenset(
    {ReservationStatus.COMMITTED, ReservationStatus.RELEASED, ReservationStatus.EXPIRED}
)


class Reservation(msgspec.Struct, frozen=True):
    reservation_id: str
    status: ReservationStatus
    lines: list[Line]
    expires_at_ms: int
    created_at_ms: int
    order_ref: str | None = None
