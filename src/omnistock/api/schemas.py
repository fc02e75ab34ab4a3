"""msgspec structs for every request and response body of the HTTP API.

Constraints here are the first line of defence (types, ranges, id patterns, list lengths): a
body that breaks one is refused with 400/422 naming the field, before any service code runs.
"""

from __future__ import annotations

import datetime as dt
import functools
from typing import Annotated, Literal

import msgspec

from omnistock.domain.ids import ID_PATTERN
from omnistock.domain.reservation import MAX_TTL_S
from omnistock.domain.stock import MAX_QTY

MAX_LINES = 200
MAX_SKUS = 500

Id = Annotated[str, msgspec.Meta(pattern=ID_PATTERN, max_length=64)]
Qty = Annotated[int, msgspec.Meta(ge=1, le=MAX_QTY)]
Count = Annotated[int, msgspec.Meta(ge=0, le=MAX_QTY)]
Delta = Annotated[int, msgspec.Meta(ge=-MAX_QTY, le=MAX_QTY)]
Lat = Annotated[float, msgspec.Meta(ge=-90, le=90)]
Lon = Annotated[float, msgspec.Meta(ge=-180, le=180)]
Money = Annotated[float, msgspec.Meta(ge=0, le=1e9)]
Ref = Annotated[str, msgspec.Meta(min_length=1, max_length=128, pattern=r"^[^\x00-\x1f\x7f]*$")]
NodeKind = Literal["warehouse", "store", "dark_store", "dropship"]
ReasonName = Literal["receipt", "sale", "return", "damage", "count"]


class Problem(msgspec.Struct, omit_defaults=True):
    type: str
    title: str
    status: int
    detail: str
    field: str | None = None
    shortages: list[ShortageOut] | None = None


class ShortageOut(msgspec.Struct):
    node_id: str
    sku: str
    requested: int
    available: int


# -- nodes ---------------------------------------------------------------------------------------


class CostIn(msgspec.Struct, forbid_unknown_fields=True):
    per_shipment: Money = 0.0
    per_km: Money = 0.0
    per_unit: Money = 0.0


class NodeIn(msgspec.Struct, forbid_unknown_fields=True):
    name: Annotated[str, msgspec.Meta(min_length=1, max_length=200)]
    kind: NodeKind
    lat: Lat
    lon: Lon
    ships: bool
    pickup: bool
    capacity_per_day: Annotated[int, msgspec.Meta(ge=0, le=10**9)] | None = None
    priority: Annotated[int, msgspec.Meta(ge=0, le=10**6)] = 100
    cost: CostIn | None = None
    pickup_ready_minutes: Annotated[int, msgspec.Meta(ge=0, le=7 * 24 * 60)] = 30


class CostOut(msgspec.Struct):
    per_shipment: float
    per_km: float
    per_unit: float


class NodeOut(msgspec.Struct):
    node_id: str
    name: str
    kind: str
    lat: float
    lon: float
    ships: bool
    pickup: bool
    capacity_per_day: int | None
    priority: int
    cost: CostOut
    pickup_ready_minutes: int


class NodeList(msgspec.Struct):
    nodes: list[NodeOut]


# -- stock ---------------------------------------------------------------------------------------


class StockIn(msgspec.Struct, forbid_unknown_fields=True):
    on_hand: Count
    safety_stock: Count | None = None
    if_version: Count | None = None


class PositionOut(msgspec.Struct):
    node_id: str
    sku: str
    on_hand: int
    reserved: int
    held: int
    safety_stock: int
    inbound: int
    available: int
    version: int


class AdjustmentIn(msgspec.Struct, forbid_unknown_fields=True):
    node_id: Id
    sku: Id
    delta: Delta
    reason: ReasonName
    ref: Ref | None = None


class AdjustmentsIn(msgspec.Struct, forbid_unknown_fields=True):
    adjustments: Annotated[list[AdjustmentIn], msgspec.Meta(min_length=1, max_length=MAX_LINES)]


class AdjustmentsOut(msgspec.Struct):
    positions: list[PositionOut]


# -- availability --------------------------------------------------------------------------------


class NodeAvailability(msgspec.Struct, omit_defaults=True):
    node_id: str
    available: int
    distance_km: float | None = None


class SkuAvailability(msgspec.Struct):
    sku: str
    available: int
    nodes: list[NodeAvailability]


class Point(msgspec.Struct, forbid_unknown_fields=True):
    lat: Lat
    lon: Lon


class AvailabilityQuery(msgspec.Struct, forbid_unknown_fields=True):
    skus: Annotated[list[Id], msgspec.Meta(min_length=1, max_length=MAX_SKUS)]
    node_ids: Annotated[list[Id], msgspec.Meta(max_length=10_000)] | None = None
    near: Point | str | None = None
    radius_km: Annotated[float, msgspec.Meta(gt=0, le=20_100)] | None = None


class AvailabilityItems(msgspec.Struct):
    items: list[SkuAvailability]


# -- reservations --------------------------------------------------------------------------------


class LineIn(msgspec.Struct, forbid_unknown_fields=True):
    node_id: Id
    sku: Id
    qty: Qty


class ReserveIn(msgspec.Struct, forbid_unknown_fields=True):
    lines: Annotated[list[LineIn], msgspec.Meta(min_length=1, max_length=MAX_LINES)]
    ttl_s: Annotated[int, msgspec.Meta(ge=1, le=MAX_TTL_S)] = 900
    order_ref: Id | None = None


class LineOut(msgspec.Struct):
    node_id: str
    sku: str
    qty: int


class ReservationOut(msgspec.Struct, omit_defaults=True):
    reservation_id: str
    status: str
    expires_at: str
    created_at: str
    lines: list[LineOut]
    order_ref: str | None = None


# -- transfers and holds ------------------------------------------------------------------------


class SkuLineIn(msgspec.Struct, forbid_unknown_fields=True):
    sku: Id
    qty: Qty


class TransferIn(msgspec.Struct, forbid_unknown_fields=True):
    from_node: Id
    to_node: Id
    lines: Annotated[list[SkuLineIn], msgspec.Meta(min_length=1, max_length=MAX_LINES)]
    reason: Ref | None = None


class ArrivedLineIn(msgspec.Struct, forbid_unknown_fields=True):
    sku: Id
    qty: Count


class ReceiveIn(msgspec.Struct, forbid_unknown_fields=True):
    lines: Annotated[list[ArrivedLineIn], msgspec.Meta(max_length=MAX_LINES)] | None = None


class TransferLineOut(msgspec.Struct):
    sku: str
    qty: int
    shipped: int
    received: int


class TransferOut(msgspec.Struct, omit_defaults=True):
    transfer_id: str
    status: str
    from_node: str
    to_node: str
    lines: list[TransferLineOut]
    created_at: str
    reason: str | None = None
    hold_id: str | None = None


class HoldIn(msgspec.Struct, forbid_unknown_fields=True):
    store_id: Id
    lines: Annotated[list[SkuLineIn], msgspec.Meta(min_length=1, max_length=MAX_LINES)]
    customer_ref: Ref
    pickup_window_s: Annotated[int, msgspec.Meta(ge=1, le=30 * 86_400)] = 86_400
    source_node_id: Id | None = None
    allow_transfer: bool = False


class HoldLineOut(msgspec.Struct):
    sku: str
    qty: int
    held: int


class HoldOut(msgspec.Struct, omit_defaults=True):
    hold_id: str
    status: str
    store_id: str
    lines: list[HoldLineOut]
    customer_ref: str
    ready_by: str | None
    expires_at: str
    created_at: str
    short: bool
    transfer_id: str | None = None
    source_node_id: str | None = None


# -- lists ---------------------------------------------------------------------------------------


class ReservationPage(msgspec.Struct):
    items: list[ReservationOut]
    next_after: str | None


class HoldPage(msgspec.Struct):
    items: list[HoldOut]
    next_after: str | None


class TransferPage(msgspec.Struct):
    items: list[TransferOut]
    next_after: str | None


# -- routing and orders -------------------------------------------------------------------------

Strategy = Literal["cost", "fewest_shipments", "closest", "priority"]
MAX_BATCH_ORDERS = 10_000


class QuoteIn(msgspec.Struct, forbid_unknown_fields=True):
    lines: Annotated[list[SkuLineIn], msgspec.Meta(min_length=1, max_length=MAX_LINES)]
    destination: Point | None = None
    pickup_node_id: Id | None = None
    strategy: Strategy = "cost"
    max_shipments: Annotated[int, msgspec.Meta(ge=1, le=MAX_LINES)] | None = None


class OrderIn(msgspec.Struct, forbid_unknown_fields=True):
    order_id: Id
    lines: Annotated[list[SkuLineIn], msgspec.Meta(min_length=1, max_length=MAX_LINES)]
    destination: Point | None = None
    pickup_node_id: Id | None = None
    strategy: Strategy = "cost"
    max_shipments: Annotated[int, msgspec.Meta(ge=1, le=MAX_LINES)] | None = None
    ttl_s: Annotated[int, msgspec.Meta(ge=1, le=MAX_TTL_S)] = 900


class BatchOrderIn(msgspec.Struct, forbid_unknown_fields=True):
    lines: Annotated[list[SkuLineIn], msgspec.Meta(min_length=1, max_length=MAX_LINES)]
    destination: Point
    order_id: Id | None = None
    strategy: Strategy = "cost"
    max_shipments: Annotated[int, msgspec.Meta(ge=1, le=MAX_LINES)] | None = None


class BatchIn(msgspec.Struct, forbid_unknown_fields=True):
    orders: Annotated[list[BatchOrderIn], msgspec.Meta(min_length=1, max_length=MAX_BATCH_ORDERS)]
    time_limit_ms: Annotated[int, msgspec.Meta(ge=100, le=110_000)] = 30_000


# -- journal ------------------------------------------------------------------------------------


class Deltas(msgspec.Struct):
    on_hand: int
    reserved: int
    held: int
    inbound: int


class JournalEntry(msgspec.Struct):
    seq: int
    event_id: str
    at: str
    kind: str
    node_id: str
    sku: str
    ref: str
    op_id: str
    delta: Deltas
    on_hand: int
    reserved: int
    held: int
    safety_stock: int
    inbound: int
    version: int


class HistoryPage(msgspec.Struct):
    items: list[JournalEntry]
    next_before: int | None


class EventsPage(msgspec.Struct):
    items: list[JournalEntry]
    next_after: int


# -- service -------------------------------------------------------------------------------------


class Health(msgspec.Struct):
    status: str


class Readiness(msgspec.Struct):
    status: str
    checks: dict[str, str]
    details: dict[str, int | None] = msgspec.field(default_factory=dict)


class NoopOut(msgspec.Struct):
    ok: bool


@functools.lru_cache(maxsize=4096)
def _second(seconds: int) -> str:
    return dt.datetime.fromtimestamp(seconds, tz=dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.")


def timestamp(ms: int) -> str:
    """RFC 3339 UTC with milliseconds, e.g. 2026-11-22T09:30:00.123Z. Responses of one second
    share the formatted second."""
    seconds, millis = divmod(ms, 1000)
    return f"{_second(seconds)}{millis:03d}Z"
