"""Transfers (oms): stock moving between nodes, reserved at the source until it ships."""

from __future__ import annotations

from litestar import Controller, Request, Response, get, post
from litestar.params import FromPath, JSONBody

from omnistock.api import views
from omnistock.api.auth import Role
from omnistock.api.bodies import strict
from omnistock.api.controllers.lists import LIST_QUERY, After, Limit, TransferStatus, list_page
from omnistock.api.idempotency import operation, replay_headers
from omnistock.api.paths import checked_id
from omnistock.api.schemas import ReceiveIn, TransferIn, TransferOut, TransferPage
from omnistock.domain.errors import InvalidInput
from omnistock.domain.movement import SkuQty, Transfer


class TransfersController(Controller):
    path = "/v1/transfers"
    tags = ["transfers"]
    opt = {"role": Role.OMS}

    @post("/", operation_id="requestTransfer", summary="Reserve at the source", status_code=201)
    async def request_transfer(
        self, request: Request, data: JSONBody[TransferIn]
    ) -> Response[TransferOut]:
        data = await strict(request, TransferIn)
        services = request.app.state.services
        op_id, claim = operation(request, data, required=True)
        for field, node in (("from_node", data.from_node), ("to_node", data.to_node)):
            if await services.catalog.get(node) is None:
                raise InvalidInput(field, f"unknown node {node}")
        transfer = await services.ledger.request_transfer(
            op_id,
            data.from_node,
            data.to_node,
            [SkuQty(line.sku, line.qty) for line in data.lines],
            reason=data.reason,
            claim=claim,
        )
        return Response(views.transfer(transfer), status_code=201, headers=replay_headers(claim))

    @get(
        "/",
        operation_id="listTransfers",
        opt=LIST_QUERY,
        summary="Transfers by status (default requested and in transit), newest first, "
        "as of the journal",
    )
    async def list_all(
        self,
        request: Request,
        status: TransferStatus = None,
        limit: Limit = 50,
        after: After = None,
    ) -> TransferPage:
        ledger = request.app.state.services.ledger
        items, next_after = await list_page(
            request, "t", status, limit, after, ledger.get_transfer, views.transfer
        )
        return TransferPage(items, next_after)

    @get("/{transfer_id:str}", operation_id="getTransfer", summary="A transfer")
    async def get_one(self, request: Request, transfer_id: FromPath[str]) -> TransferOut:
        checked_id("transfer_id", transfer_id)
        return views.transfer(await request.app.state.services.ledger.get_transfer(transfer_id))

    @post(
        "/{transfer_id:str}/ship",
        operation_id="shipTransfer",
        summary="Leaves the source: source on_hand drops, destination inbound rises",
        status_code=200,
    )
    async def ship(self, request: Request, transfer_id: FromPath[str]) -> Response[TransferOut]:
        ledger = request.app.state.services.ledger
        return await _step(
            request, transfer_id, lambda op, c: ledger.ship_transfer(op, transfer_id, claim=c)
        )

    @post(
        "/{transfer_id:str}/cancel",
        operation_id="cancelTransfer",
        summary="Only before ship: the reservation at the source is given back",
        status_code=200,
    )
    async def cancel(self, request: Request, transfer_id: FromPath[str]) -> Response[TransferOut]:
        ledger = request.app.state.services.ledger
        return await _step(
            request, transfer_id, lambda op, c: ledger.cancel_transfer(op, transfer_id, claim=c)
        )

    @post(
        "/{transfer_id:str}/receive",
        operation_id="receiveTransfer",
        summary="Arrives: on_hand rises by what arrived; a shortfall is recorded as a loss",
        status_code=200,
    )
    async def receive(
        self, request: Request, transfer_id: FromPath[str], data: JSONBody[ReceiveIn | None] = None
    ) -> Response[TransferOut]:
        # No body, or JSON null (the document allows it), receives everything shipped.
        sent = await strict(request, ReceiveIn | None) if await request.body() else None
        body = sent if sent is not None else ReceiveIn()
        arrived = None
        if body.lines is not None:
            arrived = [SkuQty(line.sku, line.qty) for line in body.lines]
        ledger = request.app.state.services.ledger
        return await _step(
            request,
            transfer_id,
            lambda op, c: ledger.receive_transfer(op, transfer_id, arrived, claim=c),
            body,
        )


async def _step(request: Request, transfer_id: str, run, body=None) -> Response[TransferOut]:
    checked_id("transfer_id", transfer_id)
    op_id, claim = operation(request, body, required=False)
    transfer: Transfer = await run(op_id, claim)
    return Response(views.transfer(transfer), headers=replay_headers(claim))
