"""Availability (storefront): what can be sold, per node, optionally near a point."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from litestar import Controller, Request, get, post
from litestar.datastructures import State
from litestar.openapi.spec import OpenAPIType, Operation
from litestar.openapi.spec import Parameter as OpenAPIParameter
from litestar.openapi.spec import Schema as OpenAPISchema
from litestar.params import FromPath, JSONBody
from litestar.response.base import ASGIResponse

from omnistock.api.auth import Role
from omnistock.api.bodies import strict
from omnistock.api.encoded import documented, json_response
from omnistock.api.paths import checked_id, point, takes_query
from omnistock.api.schemas import (
    AvailabilityItems,
    AvailabilityQuery,
    NodeAvailability,
    SkuAvailability,
)
from omnistock.domain.errors import InvalidInput
from omnistock.domain.ids import ID_PATTERN
from omnistock.domain.stock import Position
from omnistock.routing.network import great_circle_km
from omnistock.store.catalog import NodeCatalog

MAX_RADIUS_KM = 20_100.0


class Scope:
    """Which nodes a query looks at, and from where: node filter, point and radius."""

    def __init__(
        self,
        node_ids: Sequence[str] | None,
        near: tuple[float, float] | None,
        radius_km: float | None,
    ) -> None:
        if radius_km is not None and near is None:
            raise InvalidInput("radius_km", "needs near=lat,lon")
        self.node_ids = frozenset(node_ids) if node_ids else None
        self.near = near
        self.radius_km = radius_km

    def of(self, sku: str, positions: list[Position], catalog: NodeCatalog) -> SkuAvailability:
        rows: list[NodeAvailability] = []
        for p in positions:
            if self.node_ids is not None and p.node_id not in self.node_ids:
                continue
            if self.near is None:
                rows.append(NodeAvailability(p.node_id, p.available))
                continue
            node = catalog.cached(p.node_id)
            if node is None:
                continue
            km = great_circle_km(self.near[0], self.near[1], node.lat, node.lon)
            if self.radius_km is not None and km > self.radius_km:
                continue
            rows.append(NodeAvailability(p.node_id, p.available, round(km, 3)))
        if self.near is not None:
            rows.sort(key=lambda r: (r.distance_km, r.node_id))
        return SkuAvailability(sku, sum(r.available for r in rows), rows)


EVERYWHERE = Scope(None, None, None)


def scope_of_query(request: Request) -> Scope:
    """``near``, ``radius_km`` and ``node_id`` (repeatable), read by hand: on the storefront's
    hottest route, Litestar's parameter parsing costs more than the ledger read."""
    query = request.query_params
    near = query.get("near")
    radius_km = None
    if (raw := query.get("radius_km")) is not None:
        try:
            radius_km = float(raw)
        except ValueError:
            raise InvalidInput("radius_km", "must be a number of km") from None
        if not 0 < radius_km <= MAX_RADIUS_KM:
            raise InvalidInput("radius_km", f"must be more than 0 and at most {MAX_RADIUS_KM}")
    node_ids = query.getall("node_id", [])
    for n in node_ids:
        checked_id("node_id", n)
    return Scope(node_ids or None, point("near", near) if near is not None else None, radius_km)


QUERY_PARAMETERS = {
    "near": (
        "lat,lon in decimal degrees: sort nodes by great-circle distance and add distance_km",
        OpenAPISchema(type=OpenAPIType.STRING, pattern=r"^-?[0-9.]+,-?[0-9.]+$"),
    ),
    "radius_km": (
        "only nodes within this many km of near",
        OpenAPISchema(type=OpenAPIType.NUMBER, exclusive_minimum=0, maximum=MAX_RADIUS_KM),
    ),
    "node_id": (
        "only these nodes (repeat the parameter for several)",
        OpenAPISchema(
            type=OpenAPIType.ARRAY,
            items=OpenAPISchema(type=OpenAPIType.STRING, pattern=ID_PATTERN),
        ),
    ),
}


ONE_QUERY = takes_query(QUERY_PARAMETERS, repeatable=("node_id",))


@dataclass
class AvailabilityOperation(Operation):
    """Documents the query parameters that ``one`` reads by hand."""

    def __post_init__(self) -> None:
        self.parameters = [
            *(self.parameters or []),
            *(
                OpenAPIParameter(
                    name=name, param_in="query", description=text, required=False, schema=schema
                )
                for name, (text, schema) in QUERY_PARAMETERS.items()
            ),
        ]


class AvailabilityController(Controller):
    path = "/v1/availability"
    tags = ["availability"]
    opt = {"role": Role.STOREFRONT}

    @get(
        "/{sku:str}",
        operation_id="getAvailability",
        opt=ONE_QUERY,
        summary="Available quantity of one SKU, per node; near=lat,lon sorts by distance",
        operation_class=AvailabilityOperation,
        responses=documented(SkuAvailability),
    )
    async def one(self, request: Request, sku: FromPath[str]) -> ASGIResponse:
        checked_id("sku", sku)
        scope = scope_of_query(request) if request.scope["query_string"] else EVERYWHERE
        services = request.app.state.services
        positions = (await services.ledger.availability_many([sku]))[sku]
        return json_response(scope.of(sku, positions, services.catalog))

    @post(
        "/query",
        operation_id="queryAvailability",
        summary="Availability of up to 500 SKUs at once",
        status_code=200,
    )
    async def many(
        self, request: Request, state: State, data: JSONBody[AvailabilityQuery]
    ) -> AvailabilityItems:
        data = await strict(request, AvailabilityQuery)
        near = data.near
        where = (
            point("near", near) if isinstance(near, str) else (near.lat, near.lon) if near else None
        )
        scope = Scope(data.node_ids, where, data.radius_km)
        services = state.services
        found = await services.ledger.availability_many(data.skus)
        return AvailabilityItems([scope.of(s, found[s], services.catalog) for s in found])
