"""BOPIS holds (oms): goods held at a store for a customer until collected."""

from __future__ import annotations

from litestar import Controller, Request, Response, get, post
from litestar.params import FromPath, JSONBody

from omnistock.api import views
from omnistock.api.auth import Role
from omnistock.api.bodies import strict
from omnistock.api.controllers.lists import LIST_QUERY, After, HoldStatus, Limit, list_page
from omnistock.api.idempotency import operation, replay_headers
from omnistock.api.paths import checked_id
from omnistock.api.schemas import HoldIn, HoldOut, HoldPage
from omnistock.domain.errors import InsufficientStock, InvalidInput
from omnistock.domain.movement import Hold, SkuQty, merge_sku_lines
from omnistock.routing.sourcing import nearest_source

CHOOSE_ATTEMPTS = 3


class HoldsController(Controller):
    path = "/v1/holds"
    tags = ["holds"]
    opt = {"role": Role.OMS}

    @post(
        "/", operation_id="placeHold", summary="Hold goods at a store for pickup", status_code=201
    )
    async def place(self, request: Request, data: JSONBody[HoldIn]) -> Response[HoldOut]:
        data = await strict(request, HoldIn)
        services = request.app.state.services
        op_id, claim = operation(request, data, required=True)
        store = await services.catalog.get(data.store_id)
        if store is None:
            raise InvalidInput("store_id", f"unknown node {data.store_id}")
        if not store.pickup:
            raise InvalidInput("store_id", f"{data.store_id} does not offer pickup")
        if data.source_node_id is not None and data.allow_transfer:
            raise InvalidInput(
                "allow_transfer", "name a source_node_id or allow_transfer, not both"
            )
        if (
            data.source_node_id is not None
            and await services.catalog.get(data.source_node_id) is None
        ):
            raise InvalidInput("source_node_id", f"unknown node {data.source_node_id}")
        lines = merge_sku_lines([SkuQty(line.sku, line.qty) for line in data.lines])

        async def place(source: str | None, attempt: int = 0) -> Hold:
            # Each look at the stock is its own operation: a refusal is remembered under its
            # id, and a retried request replays every attempt in turn. The key's claim rides on
            # the first.
            return await services.ledger.place_hold(
                op_id if attempt == 0 else f"{op_id}:{attempt}",
                data.store_id,
                lines,
                customer_ref=data.customer_ref,
                pickup_window_ms=data.pickup_window_s * 1000,
                ready_in_ms=store.pickup_ready_minutes * 60_000,
                source_node_id=source,
                claim=claim if attempt == 0 else None,
            )

        if not data.allow_transfer:
            hold = await place(data.source_node_id)
        else:
            hold = await _place_anywhere(services, store, lines, place)
        return Response(views.hold(hold), status_code=201, headers=replay_headers(claim))

    @get(
        "/",
        operation_id="listHolds",
        opt=LIST_QUERY,
        summary="Holds by status (default placed and ready), newest first, as of the journal",
    )
    async def list_all(
        self,
        request: Request,
        status: HoldStatus = None,
        limit: Limit = 50,
        after: After = None,
    ) -> HoldPage:
        ledger = request.app.state.services.ledger
        items, next_after = await list_page(
            request, "h", status, limit, after, ledger.get_hold, views.hold
        )
        return HoldPage(items, next_after)

    @get("/{hold_id:str}", operation_id="getHold", summary="A hold")
    async def get_one(self, request: Request, hold_id: FromPath[str]) -> HoldOut:
        checked_id("hold_id", hold_id)
        return views.hold(await request.app.state.services.ledger.get_hold(hold_id))

    @post(
        "/{hold_id:str}/ready",
        operation_id="readyHold",
        summary="Picked and staged at the pickup desk",
        status_code=200,
    )
    async def ready(self, request: Request, hold_id: FromPath[str]) -> Response[HoldOut]:
        return await _step(request, hold_id, "ready_hold")

    @post(
        "/{hold_id:str}/collect",
        operation_id="collectHold",
        summary="Handed to the customer: on_hand and held drop",
        status_code=200,
    )
    async def collect(self, request: Request, hold_id: FromPath[str]) -> Response[HoldOut]:
        return await _step(request, hold_id, "collect_hold")

    @post(
        "/{hold_id:str}/cancel",
        operation_id="cancelHold",
        summary="Back to the shelf",
        status_code=200,
    )
    async def cancel(self, request: Request, hold_id: FromPath[str]) -> Response[HoldOut]:
        return await _step(request, hold_id, "cancel_hold")


async def _place_anywhere(services, store, lines, place) -> Hold:
    """At the store when it has everything; otherwise from the nearest node that has it all,
    by a transfer. Stock can move between the look and the hold: then look again."""
    error: InsufficientStock | None = None
    for attempt in range(CHOOSE_ATTEMPTS):
        found = await services.ledger.availability_many([line.sku for line in lines])
        available = {(p.node_id, p.sku): p.available for ps in found.values() for p in ps}
        if all(available.get((store.node_id, line.sku), 0) >= line.qty for line in lines):
            source = None
        else:
            nodes = [n for n in services.catalog.all_cached() if n.node_id != store.node_id]
            chosen = nearest_source(store, nodes, available, lines)
            if chosen is None:
                return await place(None, attempt)  # refused with the store's shortages
            source = chosen.node_id
        try:
            return await place(source, attempt)
        except InsufficientStock as exc:
            error = exc
    assert error is not None
    raise error


async def _step(request: Request, hold_id: str, method: str) -> Response[HoldOut]:
    checked_id("hold_id", hold_id)
    op_id, claim = operation(request, required=False)
    ledger = request.app.state.services.ledger
    hold = await getattr(ledger, method)(op_id, hold_id, claim=claim)
    return Response(views.hold(hold), headers=replay_headers(claim))
