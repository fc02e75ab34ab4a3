"""The in-memory model ledger: the test oracle of the Redis ledger.

It implements ``StockLedger`` in plain Python with the contract's semantics and nothing else: no
partitions, no scripts, no sagas. Time comes from an explicit ``clock`` (milliseconds), and a
reservation stops counting the moment ``clock() >= expires_at_ms``: every call first releases
everything due, as the scripts do for the partitions they touch.

What it reproduces exactly, so results can be compared field by field:

* the same input checks (``validation``) and the same merging of reserve lines;
* the same errors with the same shortages, in line order;
* ``version`` goes up by one per line changed: an adjust touching a position twice bumps it
  twice; reserve, commit, release and expiry bump each position they touch once per line;
* adjust checks and applies lines as running totals: a later line on the same position sees the
  earlier lines' deltas, also while checking, and every short line is reported;
* an operation id remembers the first result, or the first domain error, of its call: a repeat
  returns or raises it again and changes nothing (``InvalidInput`` and ``NotFound`` are not
  remembered).

Reservation ids are made like the single-partition ids of the Redis ledger; callers comparing the
two ledgers on a cluster map ids rather than assume they are equal.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, NoReturn, TypeVar

from omnistock.domain.errors import (
    BelowCommitted,
    DomainError,
    IllegalTransition,
    InsufficientStock,
    NotFound,
    VersionConflict,
)
from omnistock.domain.reservation import Reservation, ReservationStatus
from omnistock.domain.stock import Adjustment, Line, Position, Shortage, available, merge_lines
from omnistock.reservations import keys
from omnistock.reservations.validation import (
    check_adjustments,
    check_lines,
    check_op,
    check_set,
)

_Key = tuple[str, str]
_T = TypeVar("_T")
_NEW = object()


@dataclass
class _Pos:
    on_hand: int = 0
    reserved: int = 0
    held: int = 0
    safety_stock: int = 0
    inbound: int = 0
    version: int = 0

    def frozen(self, node_id: str, sku: str) -> Position:
        return Position(
            node_id,
            sku,
            self.on_hand,
            self.reserved,
            self.held,
            self.safety_stock,
            self.inbound,
            self.version,
        )


@dataclass
class _Record:
    reservation_id: str
    status: ReservationStatus
    lines: list[Line]
    expires_at_ms: int
    created_at_ms: int
    order_ref: str | None

    def frozen(self) -> Reservation:
        return Reservation(
            reservation_id=self.reservation_id,
            status=self.status,
            lines=list(self.lines),
            expires_at_ms=self.expires_at_ms,
            created_at_ms=self.created_at_ms,
            order_ref=self.order_ref,
        )


class ModelLedger:
    """A ``StockLedger`` in memory; ``clock`` returns the current time in milliseconds."""

    def __init__(self, clock: Callable[[], int]) -> None:
        self._clock = clock
        self._positions: dict[_Key, _Pos] = {}
        self._records: dict[str, _Record] = {}
        self._ops: dict[str, object] = {}

    # -- inspection (for tests) -----------------------------------------------------------------

    def reservations(self) -> list[Reservation]:
        """Every reservation record, in creation order, as it stands (no expiry is applied)."""
        return [r.frozen() for r in self._records.values()]

    # -- plumbing -------------------------------------------------------------------------------

    def _now(self) -> int:
        """The current time, after releasing every reservation that is due at it."""
        now = self._clock()
        self._expire(now)
        return now

    def _expire(self, now: int) -> int:
        due = [
            r
            for r in self._records.values()
            if r.status is ReservationStatus.ACTIVE and r.expires_at_ms <= now
        ]
        for record in due:
            self._release_lines(record)
            record.status = ReservationStatus.EXPIRED
        return len(due)

    def _pos(self, node_id: str, sku: str) -> _Pos:
        return self._positions.setdefault((node_id, sku), _Pos())

    def _peek(self, node_id: str, sku: str) -> _Pos:
        """A position without creating it: an unwritten position reads as zeros."""
        return self._positions.get((node_id, sku)) or _Pos()

    def _release_lines(self, record: _Record) -> None:
        for line in record.lines:
            p = self._pos(line.node_id, line.sku)
            p.reserved -= line.qty
            p.version += 1

    def _replay(self, op_id: str) -> Any:
        """The first outcome of ``op_id``: its result, or its error raised again; else _NEW."""
        first = self._ops.get(op_id, _NEW)
        if isinstance(first, DomainError):
            raise first
        return first

    def _done(self, op_id: str, result: _T) -> _T:
        self._ops[op_id] = result
        return result

    def _fail(self, op_id: str, error: DomainError) -> NoReturn:
        self._ops[op_id] = error
        raise error

    # -- stock ----------------------------------------------------------------------------------

    async def set_stock(
        self,
        op_id: str,
        node_id: str,
        sku: str,
        on_hand: int,
        *,
        safety_stock: int | None = None,
        if_version: int | None = None,
    ) -> Position:
        check_set(op_id, node_id, sku, on_hand, safety_stock, if_version)
        self._now()
        first = self._replay(op_id)
        if first is not _NEW:
            return first
        p = self._peek(node_id, sku)
        if if_version is not None and if_version != p.version:
            self._fail(op_id, VersionConflict(if_version, p.version))
        committed = p.reserved + p.held
        if on_hand < committed:
            short = [Shortage(node_id, sku, committed, on_hand)]
            self._fail(op_id, BelowCommitted(short))
        p = self._pos(node_id, sku)
        p.on_hand = on_hand
        if safety_stock is not None:
            p.safety_stock = safety_stock
        p.version += 1
        return self._done(op_id, p.frozen(node_id, sku))

    async def adjust(self, op_id: str, adjustments: Sequence[Adjustment]) -> list[Position]:
        check_adjustments(op_id, adjustments)
        self._now()
        first = self._replay(op_id)
        if first is not _NEW:
            return list(first)
        running: dict[_Key, int] = {}
        short: list[Shortage] = []
        for a in adjustments:
            p = self._peek(a.node_id, a.sku)
            before = running.get((a.node_id, a.sku), p.on_hand)
            after = before + a.delta
            if after < p.reserved + p.held:
                short.append(
                    Shortage(a.node_id, a.sku, -a.delta, max(0, before - p.reserved - p.held))
                )
            running[(a.node_id, a.sku)] = after
        if short:
            self._fail(op_id, BelowCommitted(short))
        for a in adjustments:
            p = self._pos(a.node_id, a.sku)
            p.on_hand += a.delta
            p.version += 1
        out = [self._positions[key].frozen(*key) for key in running]
        return list(self._done(op_id, out))

    async def position(self, node_id: str, sku: str) -> Position:
        self._now()
        return self._peek(node_id, sku).frozen(node_id, sku)

    async def sku_positions(self, sku: str) -> list[Position]:
        return (await self.availability_many([sku]))[sku]

    async def availability_many(self, skus: Sequence[str]) -> dict[str, list[Position]]:
        self._now()
        out: dict[str, list[Position]] = {}
        for sku in dict.fromkeys(skus):
            nodes = sorted(node for node, s in self._positions if s == sku)
            out[sku] = [self._positions[(node, sku)].frozen(node, sku) for node in nodes]
        return out

    # -- reservations ---------------------------------------------------------------------------

    async def reserve(
        self, op_id: str, lines: Sequence[Line], *, ttl_ms: int, order_ref: str | None = None
    ) -> Reservation:
        merged = merge_lines(list(lines))
        check_lines(op_id, merged, ttl_ms, order_ref)
        now = self._now()
        first = self._replay(op_id)
        if first is not _NEW:
            return first
        rid = keys.reservation_id(op_id, keys.partition_of(merged[0].sku), single=True)
        if rid in self._records:
            error = IllegalTransition("reservation", rid, "exists", "reserve")
            self._fail(op_id, error)
        short = []
        for line in merged:
            p = self._peek(line.node_id, line.sku)
            avail = available(p.on_hand, p.reserved, p.held, p.safety_stock)
            if line.qty > avail:
                short.append(Shortage(line.node_id, line.sku, line.qty, avail))
        if short:
            self._fail(op_id, InsufficientStock(short))
        for line in merged:
            p = self._pos(line.node_id, line.sku)
            p.reserved += line.qty
            p.version += 1
        record = _Record(rid, ReservationStatus.ACTIVE, merged, now + ttl_ms, now, order_ref)
        self._records[rid] = record
        return self._done(op_id, record.frozen())

    def _record(self, reservation_id: str) -> _Record:
        record = self._records.get(reservation_id)
        if record is None:
            raise NotFound("reservation", reservation_id)
        return record

    async def get_reservation(self, reservation_id: str) -> Reservation:
        if keys.home_of(reservation_id) is None:
            raise NotFound("reservation", reservation_id)
        self._now()
        return self._record(reservation_id).frozen()

    async def commit(self, op_id: str, reservation_id: str) -> Reservation:
        return await self._finish("commit", op_id, reservation_id)

    async def release(self, op_id: str, reservation_id: str) -> Reservation:
        return await self._finish("release", op_id, reservation_id)

    async def _finish(self, action: str, op_id: str, reservation_id: str) -> Reservation:
        check_op(op_id)
        if keys.home_of(reservation_id) is None:
            raise NotFound("reservation", reservation_id)
        self._now()
        first = self._replay(op_id)
        if first is not _NEW:
            return first
        record = self._record(reservation_id)
        if record.status is not ReservationStatus.ACTIVE:
            error = IllegalTransition("reservation", reservation_id, record.status.value, action)
            self._fail(op_id, error)
        if action == "commit":
            for line in record.lines:
                p = self._pos(line.node_id, line.sku)
                p.on_hand -= line.qty
                p.reserved -= line.qty
                p.version += 1
            record.status = ReservationStatus.COMMITTED
        else:
            self._release_lines(record)
            record.status = ReservationStatus.RELEASED
        return self._done(op_id, record.frozen())

    # -- expiry ---------------------------------------------------------------------------------

    async def expire_due(self) -> int:
        """Releases what is due now; returns how many. Every other call releases what is due
        first, so this counts only what fell due since the previous call."""
        return self._expire(self._clock())
