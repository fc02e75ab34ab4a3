"""Stock: counted quantities (admin), adjustments (oms), positions."""

from __future__ import annotations

from litestar import Controller, Request, Response, get, post, put
from litestar.datastructures import State
from litestar.params import FromPath, JSONBody

from omnistock.api import views
from omnistock.api.auth import Role
from omnistock.api.bodies import strict
from omnistock.api.idempotency import operation, replay_headers
from omnistock.api.paths import checked_id
from omnistock.api.schemas import AdjustmentsIn, AdjustmentsOut, PositionOut, StockIn
from omnistock.domain.errors import InvalidInput, NotFound
from omnistock.domain.stock import Adjustment, Reason


class StockController(Controller):
    path = "/v1/stock"
    tags = ["stock"]

    @put(
        "/{node_id:str}/{sku:str}",
        operation_id="setStock",
        summary="Set the counted on_hand (compare-and-set with if_version)",
        opt={"role": Role.ADMIN},
    )
    async def set_stock(
        self,
        request: Request,
        state: State,
        node_id: FromPath[str],
        sku: FromPath[str],
        data: JSONBody[StockIn],
    ) -> Response[PositionOut]:
        data = await strict(request, StockIn)
        services = state.services
        checked_id("node_id", node_id)
        checked_id("sku", sku)
        if await services.catalog.get(node_id) is None:
            raise NotFound("node", node_id)
        op_id, claim = operation(request, data, required=False)
        pos = await services.ledger.set_stock(
            op_id,
            node_id,
            sku,
            data.on_hand,
            safety_stock=data.safety_stock,
            if_version=data.if_version,
            claim=claim,
        )
        return Response(views.position(pos), headers=replay_headers(claim))

    @get(
        "/{node_id:str}/{sku:str}",
        operation_id="getStock",
        summary="The position of one SKU at one node",
        opt={"role": Role.OMS},
    )
    async def get_stock(
        self, state: State, node_id: FromPath[str], sku: FromPath[str]
    ) -> PositionOut:
        checked_id("node_id", node_id)
        checked_id("sku", sku)
        return views.position(await state.services.ledger.position(node_id, sku))

    @post(
        "/adjustments",
        operation_id="adjustStock",
        summary="Adjust on_hand by deltas with a reason, all or nothing",
        opt={"role": Role.OMS},
        status_code=200,
    )
    async def adjust(
        self, request: Request, state: State, data: JSONBody[AdjustmentsIn]
    ) -> Response[AdjustmentsOut]:
        data = await strict(request, AdjustmentsIn)
        services = state.services
        op_id, claim = operation(request, data, required=True)
        for i, a in enumerate(data.adjustments):
            if a.delta == 0:
                raise InvalidInput(f"adjustments[{i}].delta", "must not be 0")
        unknown = set(await services.catalog.unknown(a.node_id for a in data.adjustments))
        for i, a in enumerate(data.adjustments):
            if a.node_id in unknown:
                raise InvalidInput(f"adjustments[{i}].node_id", f"unknown node {a.node_id}")
        adjustments = [
            Adjustment(a.node_id, a.sku, a.delta, Reason(a.reason), a.ref) for a in data.adjustments
        ]
        positions = await services.ledger.adjust(op_id, adjustments, claim=claim)
        return Response(
            AdjustmentsOut([views.position(p) for p in positions]), headers=replay_headers(claim)
        )
