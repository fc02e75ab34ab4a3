"""Nodes (admin): the catalog of places that hold stock."""

from __future__ import annotations

from litestar import Controller, Request, Response, get, put
from litestar.datastructures import State
from litestar.params import FromPath, JSONBody

from omnistock.api import views
from omnistock.api.auth import Role
from omnistock.api.bodies import strict
from omnistock.api.paths import checked_id
from omnistock.api.schemas import NodeIn, NodeList, NodeOut
from omnistock.domain.errors import NotFound
from omnistock.domain.node import Cost, Node, check_node


class NodesController(Controller):
    path = "/v1/nodes"
    tags = ["nodes"]
    opt = {"role": Role.ADMIN}

    @put("/{node_id:str}", operation_id="putNode", summary="Create or replace a node")
    async def put_node(
        self, request: Request, state: State, node_id: FromPath[str], data: JSONBody[NodeIn]
    ) -> Response[NodeOut]:
        data = await strict(request, NodeIn)
        cost = data.cost
        node = Node(
            node_id=checked_id("node_id", node_id),
            lat=data.lat,
            lon=data.lon,
            kind=data.kind,
            ships=data.ships,
            pickup=data.pickup,
            cost=Cost(cost.per_shipment, cost.per_km, cost.per_unit) if cost else Cost(),
            priority=data.priority,
            capacity_per_day=data.capacity_per_day,
            pickup_ready_minutes=data.pickup_ready_minutes,
            name=data.name,
        )
        check_node(node)
        created = await state.services.catalog.put(node)
        return Response(views.node(node), status_code=201 if created else 200)

    @get("/", operation_id="listNodes", summary="Every node, by id")
    async def list_nodes(self, state: State) -> NodeList:
        return NodeList([views.node(n) for n in await state.services.catalog.all()])

    @get("/{node_id:str}", operation_id="getNode", summary="One node")
    async def get_node(self, state: State, node_id: FromPath[str]) -> NodeOut:
        node = await state.services.catalog.get(checked_id("node_id", node_id))
        if node is None:
            raise NotFound("node", node_id)
        return views.node(node)
