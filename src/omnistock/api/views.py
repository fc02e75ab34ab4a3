"""Domain values to response bodies."""

from __future__ import annotations

from omnistock.api.schemas import (
    CostOut,
    HoldLineOut,
    HoldOut,
    LineOut,
    NodeOut,
    PositionOut,
    ReservationOut,
    TransferLineOut,
    TransferOut,
    timestamp,
)
from omnistock.domain.movement import Hold, Transfer
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


def transfer(t: Transfer) -> TransferOut:
    return TransferOut(
        transfer_id=t.transfer_id,
        status=t.status.value,
        from_node=t.from_node,
        to_node=t.to_node,
        lines=[TransferLineOut(x.sku, x.qty, x.shipped, x.received) for x in t.lines],
        created_at=timestamp(t.created_at_ms),
        reason=t.reason,
        hold_id=t.hold_id,
    )


def hold(h: Hold) -> HoldOut:
    return HoldOut(
        hold_id=h.hold_id,
        status=h.status.value,
        store_id=h.store_id,
        lines=[HoldLineOut(x.sku, x.qty, x.held) for x in h.lines],
        customer_ref=h.customer_ref,
        ready_by=None if h.ready_by_ms is None else timestamp(h.ready_by_ms),
        expires_at=timestamp(h.expires_at_ms),
        created_at=timestamp(h.created_at_ms),
        short=h.short,
        transfer_id=h.transfer_id,
        source_node_id=h.source_node_id,
    )
