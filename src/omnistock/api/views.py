"""Domain values to response bodies."""

from __future__ import annotations

from omnistock.api.schemas import (
    CostOut,
    LineOut,
    NodeOut,
    PositionOut,
    ReservationOut,
    timestamp,
)
from omnistock.domain.node import Node
from omnistock.domain.reservation import Reservation
from omnistock.domain.stock import Position


def position(p: Position) -> PositionOut:
    return PositionOut(
        p.node_id,
        p.sku,
        p.on_hand,
        p.reserved,
        p.held,
        p.safety_stock,
        p.inbound,
        p.available,
        p.version,
    )


def reservation(r: Reservation) -> ReservationOut:
    return ReservationOut(
        reservation_id=r.reservation_id,
        status=r.status.value,
        expires_at=timestamp(r.expires_at_ms),
        created_at=timestamp(r.created_at_ms),
        lines=[LineOut(line.node_id, line.sku, line.qty) for line in r.lines],
        order_ref=r.order_ref,
    )


def node(n: Node) -> NodeOut:
    return NodeOut(
        node_id=n.node_id,
        name=n.name,
        kind=n.kind,
        lat=n.lat,
        lon=n.lon,
        ships=n.ships,
        pickup=n.pickup,
        capacity_per_day=n.capacity_per_day,
        priority=n.priority,
        cost=CostOut(n.cost.per_shipment, n.cost.per_km, n.cost.per_unit),
        pickup_ready_minutes=n.pickup_ready_minutes,
    )
