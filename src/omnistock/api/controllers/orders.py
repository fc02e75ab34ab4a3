"""Orders (oms): route and reserve as one step."""

from __future__ import annotations

import msgspec
from litestar import Controller, Request, Response, post
from litestar.params import JSONBody

from omnistock.api.auth import Role
from omnistock.api.bodies import strict
from omnistock.api.controllers.routing import route_request
from omnistock.api.idempotency import REPLAYED, StoredResponses, operation
from omnistock.api.problems import handle
from omnistock.api.schemas import OrderIn, timestamp
from omnistock.domain.errors import DomainError
from omnistock.routing import Plan
from omnistock.services import orders


class OrderOut(msgspec.Struct):
    order_id: str
    reservation_id: str
    status: str
    expires_at: str
    plan: Plan


class OrdersController(Controller):
    path = "/v1/orders"
    tags = ["orders"]
    opt = {"role": Role.OMS}

    @post(
        "/",
        operation_id="placeOrder",
        summary="Route the order and reserve its plan as one step",
        status_code=201,
    )
    async def place(self, request: Request, data: JSONBody[OrderIn]) -> Response[OrderOut]:
        data = await strict(request, OrderIn)
        services = request.app.state.services
        op_id, claim = operation(request, data, required=True)
        assert claim is not None
        order = route_request(
            data.lines, data.destination, data.pickup_node_id, data.strategy, data.max_shipments
        )
        store = StoredResponses(services.runtime.connection.client)
        stored = await store.begin(op_id, claim)
        if stored is not None:
            status, body = stored
            return _raw(status, body, replayed=True)
        try:
            reservation, plan = await orders.place_order(
                services.ledger,
                await services.catalog.network_naming(data.pickup_node_id),
                order,
                order_id=data.order_id,
                op_id=op_id,
                ttl_ms=data.ttl_s * 1000,
            )
        except DomainError as exc:
            # A refusal (no plan could be reserved) is the order's answer: kept and replayed.
            refusal = handle(request, exc)
            if refusal.status_code == 409:
                await store.finish(op_id, claim, 409, bytes(refusal.content))
            else:
                await store.abandon(op_id)
            raise
        except BaseException:
            await store.abandon(op_id)
            raise
        body = msgspec.json.encode(
            OrderOut(
                order_id=data.order_id,
                reservation_id=reservation.reservation_id,
                status=reservation.status.value,
                expires_at=timestamp(reservation.expires_at_ms),
                plan=plan,
            )
        )
        await store.finish(op_id, claim, 201, body)
        services.metrics.outcome("ordered")
        return _raw(201, body, replayed=False)


def _raw(status: int, body: bytes, *, replayed: bool) -> Response:
    media = "application/json" if status < 400 else "application/problem+json"
    headers = {REPLAYED: "true"} if replayed else None
    return Response(content=body, status_code=status, media_type=media, headers=headers)
