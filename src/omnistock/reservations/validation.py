"""Input checks done before any script runs, so a bad call never reaches Redis."""

from __future__ import annotations

import re
from collections.abc import Sequence

from omnistock.domain.errors import InvalidInput
from omnistock.domain.ids import is_valid_id
from omnistock.domain.movement import MAX_PICKUP_WINDOW_S, SkuQty
from omnistock.domain.reservation import MAX_TTL_S
from omnistock.domain.stock import MAX_QTY, Adjustment, Line, Reason

MAX_OP_ID = 512
MAX_LINES = 1000


_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def _printable(value: str) -> bool:
    """No control characters: events are stored as tab-separated lines."""
    return _CONTROL.search(value) is None


def check_op(op_id: str) -> None:
    if not isinstance(op_id, str) or not 0 < len(op_id) <= MAX_OP_ID or not _printable(op_id):
        raise InvalidInput("op_id", f"must be 1 to {MAX_OP_ID} printable characters")


def check_id(field: str, value: str) -> None:
    if not is_valid_id(value):
        raise InvalidInput(field, "must match ^[A-Za-z0-9._:-]{1,64}$")


def _is_qty(value: int, low: int) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and low <= value <= MAX_QTY


def check_qty(field: str, value: int, *, low: int) -> None:
    if not _is_qty(value, low):
        raise InvalidInput(field, f"must be an integer from {low} to {MAX_QTY}")


def check_lines(op_id: str, lines: Sequence[Line], ttl_ms: int, order_ref: str | None) -> None:
    check_op(op_id)
    if not 0 < len(lines) <= MAX_LINES:
        raise InvalidInput("lines", f"1 to {MAX_LINES} lines")
    totals: dict[tuple[str, str], int] = {}
    for i, line in enumerate(lines):
        # Field names are made only for a line that fails: this runs on every reservation.
        if not is_valid_id(line.node_id):
            check_id(f"lines[{i}].node_id", line.node_id)
        if not is_valid_id(line.sku):
            check_id(f"lines[{i}].sku", line.sku)
        if not _is_qty(line.qty, 1):
            check_qty(f"lines[{i}].qty", line.qty, low=1)
        key = (line.node_id, line.sku)
        totals[key] = totals.get(key, 0) + line.qty
        if totals[key] > MAX_QTY:
            raise InvalidInput(
                f"lines[{i}].qty", f"lines of one node and SKU add up to more than {MAX_QTY}"
            )
    if not isinstance(ttl_ms, int) or not 0 < ttl_ms <= MAX_TTL_S * 1000:
        raise InvalidInput("ttl_s", f"must be from 1 ms to {MAX_TTL_S} s")
    if order_ref is not None:
        check_id("order_ref", order_ref)


def check_set(
    op_id: str, node_id: str, sku: str, on_hand: int, safety: int | None, if_version: int | None
) -> None:
    check_op(op_id)
    check_id("node_id", node_id)
    check_id("sku", sku)
    check_qty("on_hand", on_hand, low=0)
    if safety is not None:
        check_qty("safety_stock", safety, low=0)
    if if_version is not None:
        check_qty("if_version", if_version, low=0)


def check_adjustments(op_id: str, adjustments: Sequence[Adjustment]) -> None:
    check_op(op_id)
    if not 0 < len(adjustments) <= MAX_LINES:
        raise InvalidInput("adjustments", f"1 to {MAX_LINES} adjustments")
    for i, a in enumerate(adjustments):
        check_id(f"adjustments[{i}].node_id", a.node_id)
        check_id(f"adjustments[{i}].sku", a.sku)
        if not isinstance(a.delta, int) or a.delta == 0 or abs(a.delta) > MAX_QTY:
            raise InvalidInput(f"adjustments[{i}].delta", f"a non-zero integer within ±{MAX_QTY}")
        if not isinstance(a.reason, Reason):
            raise InvalidInput(f"adjustments[{i}].reason", "one of " + ", ".join(Reason))
        if a.ref is not None and not (
            isinstance(a.ref, str) and 0 < len(a.ref) <= 128 and _printable(a.ref)
        ):
            raise InvalidInput(f"adjustments[{i}].ref", "1 to 128 printable characters")


def check_sku_lines(lines: Sequence[SkuQty]) -> None:
    if not 0 < len(lines) <= MAX_LINES:
        raise InvalidInput("lines", f"1 to {MAX_LINES} lines")
    for i, line in enumerate(lines):
        check_id(f"lines[{i}].sku", line.sku)
        check_qty(f"lines[{i}].qty", line.qty, low=1)


def check_transfer(op_id: str, from_node: str, to_node: str, lines: Sequence[SkuQty]) -> None:
    """A transfer request, its lines already merged by SKU."""
    check_op(op_id)
    check_id("from_node", from_node)
    check_id("to_node", to_node)
    if from_node == to_node:
        raise InvalidInput("to_node", "must differ from from_node")
    check_sku_lines(lines)


def check_hold(
    op_id: str,
    store_id: str,
    lines: Sequence[SkuQty],
    customer_ref: str,
    pickup_window_ms: int,
    ready_in_ms: int,
    source_node_id: str | None,
) -> None:
    """A hold to place, its lines already merged by SKU."""
    check_op(op_id)
    check_id("store_id", store_id)
    if source_node_id is not None:
        check_id("source_node_id", source_node_id)
        if source_node_id == store_id:
            raise InvalidInput("source_node_id", "must differ from store_id")
    check_sku_lines(lines)
    if not isinstance(customer_ref, str) or not 0 < len(customer_ref) <= 128:
        raise InvalidInput("customer_ref", "1 to 128 characters")
    window_ok = isinstance(pickup_window_ms, int) and not isinstance(pickup_window_ms, bool)
    if not window_ok or not 0 < pickup_window_ms <= MAX_PICKUP_WINDOW_S * 1000:
        raise InvalidInput("pickup_window_s", f"must be from 1 ms to {MAX_PICKUP_WINDOW_S} s")
    check_qty("ready_in", ready_in_ms, low=0)


def check_arrivals(op_id: str, arrived: Sequence[SkuQty] | None) -> None:
    """What arrived of a transfer (None: everything shipped): each SKU once, quantities from 0.
    Whether the SKUs are on the transfer, and no more than shipped, is the ledger's to check."""
    check_op(op_id)
    if arrived is None:
        return
    seen: set[str] = set()
    for i, line in enumerate(arrived):
        check_id(f"lines[{i}].sku", line.sku)
        check_qty(f"lines[{i}].qty", line.qty, low=0)
        if line.sku in seen:
            raise InvalidInput(f"lines[{i}].sku", "named twice")
        seen.add(line.sku)
