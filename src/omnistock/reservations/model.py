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

Transfers and holds (see ``omnistock.domain.movement``) follow the scripts step by step:

* request reserves at the source, one version per line; ship takes on_hand and reserved from the
  source and adds inbound at the destination, one version each per line; receive adds what
  arrived to the destination's on_hand and takes it from inbound (one version per line, even when
  nothing arrived), and a shortfall leaves inbound as a loss (one more version); cancel gives the
  reservation back (one version per line);
* a hold without a source moves the store's stock into held (one version per line); with a
  source it requests a transfer to the store (the source reserved, one version per line) that
  carries the hold's id and the reason ``hold``; the goods go into held on receipt (one version
  per line that got anything), the hold is ``short`` if any line got less than ordered, and its
  ready_by and expiry count from then; collect takes on_hand and held from the store (one version
  per line); cancel and expiry give back what is held (one version per line holding anything),
  cancel the transfer if not yet shipped, and otherwise unlink it (``hold_id`` None) so its goods
  arrive as ordinary stock; a line's ``held`` is 0 once the hold is over;
* holds expire the moment ``clock() >= expires_at_ms``, like reservations;
* a receipt is checked line by line in the caller's order: a SKU not on the transfer, or more
  than shipped, is ``InvalidInput`` (field ``lines``), checked after the transfer's status.

Reservation, transfer and hold ids are made like the single-partition ids of the Redis ledger;
callers comparing the two ledgers on a cluster map ids rather than assume they are equal.
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
    InvalidInput,
    NotFound,
    VersionConflict,
)
from omnistock.domain.movement import (
    Hold,
    HoldLine,
    HoldStatus,
    SkuQty,
    Transfer,
    TransferLine,
    TransferStatus,
    merge_sku_lines,
)
from omnistock.domain.reservation import Reservation, ReservationStatus
from omnistock.domain.stock import Adjustment, Line, Position, Shortage, available, merge_lines
from omnistock.reservations import keys
from omnistock.reservations.validation import (
    check_adjustments,
    check_arrivals,
    check_hold,
    check_lines,
    check_op,
    check_set,
    check_transfer,
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


@dataclass
class _TLine:
    sku: str
    qty: int
    shipped: int = 0
    received: int = 0


@dataclass
class _Transfer:
    transfer_id: str
    from_node: str
    to_node: str
    status: TransferStatus
    lines: list[_TLine]
    created_at_ms: int
    reason: str | None
    hold_id: str | None = None

    def frozen(self) -> Transfer:
        return Transfer(
            transfer_id=self.transfer_id,
            from_node=self.from_node,
            to_node=self.to_node,
            status=self.status,
            lines=[TransferLine(x.sku, x.qty, x.shipped, x.received) for x in self.lines],
            created_at_ms=self.created_at_ms,
            reason=self.reason,
            hold_id=self.hold_id,
        )


@dataclass
class _HLine:
    sku: str
    qty: int
    held: int = 0


@dataclass
class _Hold:
    hold_id: str
    store_id: str
    status: HoldStatus
    lines: list[_HLine]
    customer_ref: str
    created_at_ms: int
    expires_at_ms: int
    ready_by_ms: int | None
    window_ms: int
    ready_in_ms: int
    transfer_id: str | None = None
    source_node_id: str | None = None
    arrived: bool = True
    short: bool = False

    def frozen(self) -> Hold:
        return Hold(
            hold_id=self.hold_id,
            store_id=self.store_id,
            status=self.status,
            lines=[HoldLine(x.sku, x.qty, x.held) for x in self.lines],
            customer_ref=self.customer_ref,
            created_at_ms=self.created_at_ms,
            expires_at_ms=self.expires_at_ms,
            ready_by_ms=self.ready_by_ms,
            transfer_id=self.transfer_id,
            source_node_id=self.source_node_id,
            short=self.short,
        )


_LIVE_HOLD = (HoldStatus.PLACED, HoldStatus.READY)
_HELD_FOR = "made for a hold (cancel the hold instead)"
_AWAITING = "waiting for its transfer to arrive"
_SHORT = "short of what was ordered"


class ModelLedger:
    """A ``StockLedger`` in memory; ``clock`` returns the current time in milliseconds."""

    def __init__(self, clock: Callable[[], int]) -> None:
        self._clock = clock
        self._positions: dict[_Key, _Pos] = {}
        self._records: dict[str, _Record] = {}
        self._transfers: dict[str, _Transfer] = {}
        self._holds: dict[str, _Hold] = {}
        self._ops: dict[str, object] = {}

    # -- inspection (for tests) -----------------------------------------------------------------

    def reservations(self) -> list[Reservation]:
        """Every reservation record, in creation order, as it stands (no expiry is applied)."""
        return [r.frozen() for r in self._records.values()]

    def transfers(self) -> list[Transfer]:
        """Every transfer, in creation order, as it stands (no expiry is applied)."""
        return [t.frozen() for t in self._transfers.values()]

    def holds(self) -> list[Hold]:
        """Every hold, in creation order, as it stands (no expiry is applied)."""
        return [h.frozen() for h in self._holds.values()]

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
        holds = [
            h for h in self._holds.values() if h.status in _LIVE_HOLD and h.expires_at_ms <= now
        ]
        for hold in holds:
            self._release_hold(hold, HoldStatus.EXPIRED)
        return len(due) + len(holds)

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
        check_lines(op_id, lines, ttl_ms, order_ref)
        merged = merge_lines(list(lines))
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

    # -- transfers ------------------------------------------------------------------------------

    def _shortages(self, node_id: str, lines: list[SkuQty]) -> list[Shortage]:
        short = []
        for line in lines:
            p = self._peek(node_id, line.sku)
            avail = available(p.on_hand, p.reserved, p.held, p.safety_stock)
            if line.qty > avail:
                short.append(Shortage(node_id, line.sku, line.qty, avail))
        return short

    def _move(
        self,
        node_id: str,
        sku: str,
        on_hand: int = 0,
        reserved: int = 0,
        held: int = 0,
        inbound: int = 0,
    ) -> None:
        """One position change, as one ``move`` of the scripts: one version."""
        p = self._pos(node_id, sku)
        p.on_hand += on_hand
        p.reserved += reserved
        p.held += held
        p.inbound += inbound
        p.version += 1

    def _transfer(self, transfer_id: str) -> _Transfer:
        transfer = self._transfers.get(transfer_id)
        if transfer is None:
            raise NotFound("transfer", transfer_id)
        return transfer

    def _hold(self, hold_id: str) -> _Hold:
        hold = self._holds.get(hold_id)
        if hold is None:
            raise NotFound("hold", hold_id)
        return hold

    @staticmethod
    def _doc_id(kind: str, transfer_or_hold_id: str) -> None:
        if keys.parse_doc_id(transfer_or_hold_id, kind[0]) is None:
            raise NotFound(kind, transfer_or_hold_id)

    async def request_transfer(
        self,
        op_id: str,
        from_node: str,
        to_node: str,
        lines: Sequence[SkuQty],
        *,
        reason: str | None = None,
    ) -> Transfer:
        merged = merge_sku_lines(list(lines))
        check_transfer(op_id, from_node, to_node, merged)
        now = self._now()
        first = self._replay(op_id)
        if first is not _NEW:
            return first
        tid = keys.doc_id("t", op_id, keys.partition_of(merged[0].sku), single=True)
        if tid in self._transfers:
            self._fail(op_id, IllegalTransition("transfer", tid, "exists", "create"))
        short = self._shortages(from_node, merged)
        if short:
            self._fail(op_id, InsufficientStock(short))
        for line in merged:
            self._move(from_node, line.sku, reserved=line.qty)
        transfer = _Transfer(
            tid,
            from_node,
            to_node,
            TransferStatus.REQUESTED,
            [_TLine(line.sku, line.qty) for line in merged],
            now,
            reason or None,
        )
        self._transfers[tid] = transfer
        return self._done(op_id, transfer.frozen())

    async def _transfer_step(self, action: str, op_id: str, transfer_id: str) -> Any:
        """The checks every step of a transfer makes: the transfer to change, or the first
        outcome of ``op_id`` to replay."""
        check_op(op_id)
        self._doc_id("transfer", transfer_id)
        self._now()
        first = self._replay(op_id)
        if first is not _NEW:
            return first
        transfer = self._transfer(transfer_id)
        want = TransferStatus.IN_TRANSIT if action == "receive" else TransferStatus.REQUESTED
        if transfer.status is not want:
            error = IllegalTransition("transfer", transfer_id, transfer.status.value, action)
            self._fail(op_id, error)
        if action == "cancel" and transfer.hold_id is not None:
            self._fail(op_id, IllegalTransition("transfer", transfer_id, _HELD_FOR, action))
        return transfer

    async def ship_transfer(self, op_id: str, transfer_id: str) -> Transfer:
        transfer = await self._transfer_step("ship", op_id, transfer_id)
        if not isinstance(transfer, _Transfer):  # a replay
            return transfer
        for line in transfer.lines:
            self._move(transfer.from_node, line.sku, on_hand=-line.qty, reserved=-line.qty)
            self._move(transfer.to_node, line.sku, inbound=line.qty)
            line.shipped = line.qty
        transfer.status = TransferStatus.IN_TRANSIT
        return self._done(op_id, transfer.frozen())

    async def cancel_transfer(self, op_id: str, transfer_id: str) -> Transfer:
        transfer = await self._transfer_step("cancel", op_id, transfer_id)
        if not isinstance(transfer, _Transfer):  # a replay
            return transfer
        self._cancel_transfer(transfer)
        return self._done(op_id, transfer.frozen())

    def _cancel_transfer(self, transfer: _Transfer) -> None:
        for line in transfer.lines:
            self._move(transfer.from_node, line.sku, reserved=-line.qty)
        transfer.status = TransferStatus.CANCELLED

    async def receive_transfer(
        self, op_id: str, transfer_id: str, arrived: Sequence[SkuQty] | None = None
    ) -> Transfer:
        check_arrivals(op_id, arrived)
        transfer = await self._transfer_step("receive", op_id, transfer_id)
        if not isinstance(transfer, _Transfer):  # a replay
            return transfer
        got = {line.sku: line.shipped for line in transfer.lines}
        if arrived is not None:
            for a in arrived:
                if a.sku not in got:
                    raise InvalidInput("lines", f"{a.sku} is not on transfer {transfer_id}")
                if a.qty > got[a.sku]:
                    detail = f"{a.sku}: more than the {got[a.sku]} shipped cannot arrive"
                    raise InvalidInput("lines", detail)
            named = {a.sku: a.qty for a in arrived}
            got = {sku: named.get(sku, 0) for sku in got}
        for line in transfer.lines:
            came = got[line.sku]
            self._move(transfer.to_node, line.sku, on_hand=came, inbound=-came)
            if came < line.shipped:
                self._move(transfer.to_node, line.sku, inbound=-(line.shipped - came))
            line.received = came
        transfer.status = TransferStatus.RECEIVED
        hold = self._holds.get(transfer.hold_id) if transfer.hold_id else None
        if hold is not None and hold.status is HoldStatus.PLACED:
            now = self._clock()
            for hl in hold.lines:
                came = got.get(hl.sku, 0)
                if came > 0:
                    self._move(hold.store_id, hl.sku, held=came)
                hl.held = came
                if came < hl.qty:
                    hold.short = True
            hold.arrived = True
            hold.ready_by_ms = now + hold.ready_in_ms
            hold.expires_at_ms = now + hold.window_ms
        return self._done(op_id, transfer.frozen())

    async def get_transfer(self, transfer_id: str) -> Transfer:
        self._doc_id("transfer", transfer_id)
        self._now()
        return self._transfer(transfer_id).frozen()

    # -- holds ----------------------------------------------------------------------------------

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
        merged = merge_sku_lines(list(lines))
        check_hold(
            op_id, store_id, merged, customer_ref, pickup_window_ms, ready_in_ms, source_node_id
        )
        now = self._now()
        first = self._replay(op_id)
        if first is not _NEW:
            return first
        home = keys.partition_of(merged[0].sku)
        hid = keys.doc_id("h", op_id, home, single=True)
        tid = keys.doc_id("t", op_id, home, single=True) if source_node_id else None
        if hid in self._holds or (tid is not None and tid in self._transfers):
            self._fail(op_id, IllegalTransition("hold", hid, "exists", "create"))
        short = self._shortages(source_node_id or store_id, merged)
        if short:
            self._fail(op_id, InsufficientStock(short))
        hold = _Hold(
            hid,
            store_id,
            HoldStatus.PLACED,
            [_HLine(line.sku, line.qty) for line in merged],
            customer_ref,
            now,
            now + pickup_window_ms,
            None,
            pickup_window_ms,
            ready_in_ms,
        )
        if source_node_id is None:
            for hl in hold.lines:
                self._move(store_id, hl.sku, held=hl.qty)
                hl.held = hl.qty
            hold.ready_by_ms = now + ready_in_ms
        else:
            assert tid is not None
            for line in merged:
                self._move(source_node_id, line.sku, reserved=line.qty)
            lines_ = [_TLine(line.sku, line.qty) for line in merged]
            self._transfers[tid] = _Transfer(
                tid, source_node_id, store_id, TransferStatus.REQUESTED, lines_, now, "hold", hid
            )
            hold.transfer_id, hold.source_node_id, hold.arrived = tid, source_node_id, False
        self._holds[hid] = hold
        return self._done(op_id, hold.frozen())

    async def _hold_step(self, action: str, op_id: str, hold_id: str) -> Any:
        """The checks every step of a hold makes: the hold to change, or the first outcome of
        ``op_id`` to replay."""
        check_op(op_id)
        self._doc_id("hold", hold_id)
        self._now()
        first = self._replay(op_id)
        if first is not _NEW:
            return first
        hold = self._hold(hold_id)
        allowed = {
            "ready": (HoldStatus.PLACED,),
            "collect": (HoldStatus.READY,),
            "cancel": _LIVE_HOLD,
        }[action]
        if hold.status not in allowed:
            self._fail(op_id, IllegalTransition("hold", hold_id, hold.status.value, action))
        if action == "ready" and not hold.arrived:
            self._fail(op_id, IllegalTransition("hold", hold_id, _AWAITING, action))
        if action == "ready" and hold.short:
            self._fail(op_id, IllegalTransition("hold", hold_id, _SHORT, action))
        return hold

    async def ready_hold(self, op_id: str, hold_id: str) -> Hold:
        hold = await self._hold_step("ready", op_id, hold_id)
        if not isinstance(hold, _Hold):  # a replay
            return hold
        hold.status = HoldStatus.READY
        return self._done(op_id, hold.frozen())

    async def collect_hold(self, op_id: str, hold_id: str) -> Hold:
        hold = await self._hold_step("collect", op_id, hold_id)
        if not isinstance(hold, _Hold):  # a replay
            return hold
        for hl in hold.lines:
            self._move(hold.store_id, hl.sku, on_hand=-hl.held, held=-hl.held)
            hl.held = 0
        hold.status = HoldStatus.COLLECTED
        return self._done(op_id, hold.frozen())

    async def cancel_hold(self, op_id: str, hold_id: str) -> Hold:
        hold = await self._hold_step("cancel", op_id, hold_id)
        if not isinstance(hold, _Hold):  # a replay
            return hold
        self._release_hold(hold, HoldStatus.CANCELLED)
        return self._done(op_id, hold.frozen())

    def _release_hold(self, hold: _Hold, status: HoldStatus) -> None:
        """Cancel or expiry: what is held goes back; an unshipped transfer is cancelled, one on
        its way is unlinked so that its goods arrive as ordinary stock."""
        for hl in hold.lines:
            if hl.held > 0:
                self._move(hold.store_id, hl.sku, held=-hl.held)
                hl.held = 0
        transfer = self._transfers.get(hold.transfer_id) if hold.transfer_id else None
        if transfer is not None and transfer.status is TransferStatus.REQUESTED:
            self._cancel_transfer(transfer)
        elif transfer is not None and transfer.status is TransferStatus.IN_TRANSIT:
            transfer.hold_id = None
        hold.status = status

    async def get_hold(self, hold_id: str) -> Hold:
        self._doc_id("hold", hold_id)
        self._now()
        return self._hold(hold_id).frozen()

    # -- expiry ---------------------------------------------------------------------------------

    async def expire_due(self) -> int:
        """Releases the reservations and holds due now; returns how many. Every other call
        releases what is due first, so this counts only what fell due since the previous call."""
        return self._expire(self._clock())
