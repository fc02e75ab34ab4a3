"""Reservations (oms): stock promised to an order until committed, released or expired."""

from __future__ import annotations

from litestar import Controller, Request, get, post
from litestar.datastructures import State
from litestar.params import FromPath, JSONBody
from litestar.response.base import ASGIResponse

from omnistock.api import views
from omnistock.api.auth import Role
from omnistock.api.bodies import strict
from omnistock.api.controllers.lists import LIST_QUERY, After, Limit, ReservationStatus, list_page
from omnistock.api.encoded import documented, json_response
from omnistock.api.idempotency import operation, replay_headers
from omnistock.api.paths import checked_id
from omnistock.api.schemas import ReservationOut, ReservationPage, ReserveIn
from omnistock.domain.errors import InsufficientStock, InvalidInput
from omnistock.domain.stock import Line


class ReservationsController(Controller):
    path = "/v1/reservations"
    tags = ["reservations"]
    opt = {"role": Role.OMS}

    @post(
        "/",
        operation_id="reserve",
        summary="Reserve every line or none",
        status_code=201,
        responses=documented(ReservationOut, 201),
    )
    async def reserve(
        self, request: Request, state: State, data: JSONBody[ReserveIn]
    ) -> ASGIResponse:
        data = await strict(request, ReserveIn)
        services = state.services
        op_id, claim = operation(request, data, required=True)
        unknown = set(await services.catalog.unknown(line.node_id for line in data.lines))
        for i, line in enumerate(data.lines):
            if line.node_id in unknown:
                raise InvalidInput(f"lines[{i}].node_id", f"unknown node {line.node_id}")
        lines = [Line(line.node_id, line.sku, line.qty) for line in data.lines]
        try:
            reservation = await services.ledger.reserve(
                op_id, lines, ttl_ms=data.ttl_s * 1000, order_ref=data.order_ref, claim=claim
            )
        except InsufficientStock:
            services.metrics.outcome("short")
            raise
        services.metrics.outcome("replayed" if claim and claim.replayed else "reserved")
        return json_response(views.reservation(reservation), 201, replay_headers(claim))

    @get(
        "/",
        operation_id="listReservations",
        opt=LIST_QUERY,
        summary="Reservations by status (default active), newest first, as of the journal",
    )
    async def list_all(
        self,
        request: Request,
        state: State,
        status: ReservationStatus = None,
        limit: Limit = 50,
        after: After = None,
    ) -> ReservationPage:
        ledger = state.services.ledger
        items, next_after = await list_page(
            request, "r", status, limit, after, ledger.get_reservation, views.reservation
        )
        return ReservationPage(items, next_after)

    @get("/{reservation_id:str}", operation_id="getReservation", summary="A reservation")
    async def get_one(self, state: State, reservation_id: FromPath[str]) -> ReservationOut:
        checked_id("reservation_id", reservation_id)
        return views.reservation(await state.services.ledger.get_reservation(reservation_id))

    @post(
        "/{reservation_id:str}/commit",
        operation_id="commitReservation",
        summary="The goods left: on_hand and reserved both drop",
        status_code=200,
        responses=documented(ReservationOut),
    )
    async def commit(
        self, request: Request, state: State, reservation_id: FromPath[str]
    ) -> ASGIResponse:
        return await self._finish("commit", request, state, reservation_id)

    @post(
        "/{reservation_id:str}/release",
        operation_id="releaseReservation",
        summary="Back to available",
        status_code=200,
        responses=documented(ReservationOut),
    )
    async def release(
        self, request: Request, state: State, reservation_id: FromPath[str]
    ) -> ASGIResponse:
        return await self._finish("release", request, state, reservation_id)

    async def _finish(
        self, action: str, request: Request, state: State, reservation_id: str
    ) -> ASGIResponse:
        checked_id("reservation_id", reservation_id)
        services = state.services
        op_id, claim = operation(request, required=False)
        ledger = services.ledger
        finish = ledger.commit if action == "commit" else ledger.release
        reservation = await finish(op_id, reservation_id, claim=claim)
        services.metrics.outcome("committed" if action == "commit" else "released")
        return json_response(views.reservation(reservation), headers=replay_headers(claim))
