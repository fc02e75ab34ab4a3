"""Routing (quote: storefront; batch: oms): plans, nothing reserved."""

from __future__ import annotations

import asyncio
from typing import Any

import msgspec
from litestar import Controller, Request, post
from litestar.params import JSONBody

from omnistock.api.auth import Role
from omnistock.api.bodies import strict
from omnistock.api.schemas import BatchIn, QuoteIn, SkuLineIn
from omnistock.routing import Destination, OrderLine, Plan, RouteRequest, plan_batch
from omnistock.routing.batch import BatchPlan, BatchSolverInfo, BatchSummary
from omnistock.services import orders

BATCH_BODY_BYTES = 16 * 1_048_576
BATCH_DEADLINE_S = 120.0
"""The batch route's request deadline (see the edge layer): its time limit plus reading stock."""


def route_request(
    lines: list[SkuLineIn],
    destination: Any,
    pickup_node_id: str | None,
    strategy: str,
    max_shipments: int | None,
) -> RouteRequest:
    return RouteRequest(
        lines=tuple(OrderLine(line.sku, line.qty) for line in lines),
        destination=None if destination is None else Destination(destination.lat, destination.lon),
        pickup_node_id=pickup_node_id,
        strategy=strategy,
        max_shipments=max_shipments,
    )


class BatchOrderOut(msgspec.Struct):
    order_id: str | None
    plan: Plan
    baseline_plan: Plan


class BatchOut(msgspec.Struct):
    orders: list[BatchOrderOut]
    total_cost: float
    shipments: int
    split_orders: int
    unfulfilled_units: int
    avoidable_splits: int
    avoidable_splits_removed: int
    solver: BatchSolverInfo
    baseline: BatchSummary


class RoutingController(Controller):
    path = "/v1/routing"
    tags = ["routing"]

    @post(
        "/quote",
        operation_id="quote",
        summary="Where an order would be fulfilled from, and at what cost; nothing is reserved",
        status_code=200,
        opt={"role": Role.STOREFRONT},
    )
    async def quote(self, request: Request, data: JSONBody[QuoteIn]) -> Plan:
        data = await strict(request, QuoteIn)
        services = request.app.state.services
        order = route_request(
            data.lines, data.destination, data.pickup_node_id, data.strategy, data.max_shipments
        )
        network = await services.catalog.network_naming(data.pickup_node_id)
        return await orders.plan(services.ledger, network, order)

    @post(
        "/batch",
        operation_id="planBatch",
        summary="Plan many orders together, sharing stock and node capacity; nothing is reserved",
        status_code=200,
        opt={"role": Role.OMS},
        request_max_body_size=BATCH_BODY_BYTES,
    )
    async def batch(self, request: Request, data: JSONBody[BatchIn]) -> BatchOut:
        data = await strict(request, BatchIn)
        services = request.app.state.services
        network = services.catalog.network()
        requests = [
            route_request(o.lines, o.destination, None, o.strategy, o.max_shipments)
            for o in data.orders
        ]
        skus = [line.sku for r in requests for line in r.lines]
        available = await orders.snapshot(services.ledger, network, skus)
        result: BatchPlan = await asyncio.to_thread(
            plan_batch, network, available, requests, time_limit_s=data.time_limit_ms / 1000
        )
        return BatchOut(
            orders=[
                BatchOrderOut(o.order_id, p, b)
                for o, p, b in zip(data.orders, result.plans, result.baseline_plans, strict=True)
            ],
            total_cost=result.total_cost,
            shipments=result.shipments,
            split_orders=result.split_orders,
            unfulfilled_units=result.unfulfilled_units,
            avoidable_splits=result.avoidable_splits,
            avoidable_splits_removed=result.avoidable_splits_removed,
            solver=result.solver,
            baseline=result.baseline,
        )
