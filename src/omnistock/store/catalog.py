"""The node catalog: nodes kept in SQL, cached in each worker for the hot path.

A worker sees its own changes at once. Changes made by other workers (or processes) are picked
up by ``refresh``, which the runtime calls every second; a node the cache does not know yet is
looked up in the database before it is called unknown, so a new node named by a request is
usable everywhere at once (``network_naming`` does the same for a routing network). Only an edit
to an existing node, or a new node no request names (a candidate source for routing), can take
up to a second to reach other workers.
"""

from __future__ import annotations

import time
from collections.abc import Iterable

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from omnistock.domain.node import Cost, Node
from omnistock.routing.network import Network
from omnistock.store.database import nodes


def _row_of(node: Node, changed_ns: int) -> dict:
    return {
        "node_id": node.node_id,
        "name": node.name,
        "kind": node.kind,
        "lat": node.lat,
        "lon": node.lon,
        "ships": node.ships,
        "pickup": node.pickup,
        "capacity_per_day": node.capacity_per_day,
        "priority": node.priority,
        "cost_per_shipment": node.cost.per_shipment,
        "cost_per_km": node.cost.per_km,
        "cost_per_unit": node.cost.per_unit,
        "pickup_ready_minutes": node.pickup_ready_minutes,
        "changed_ns": changed_ns,
    }


def _node_of(row: sa.Row) -> Node:
    m = row._mapping
    return Node(
        node_id=m["node_id"],
        lat=m["lat"],
        lon=m["lon"],
        kind=m["kind"],
        ships=m["ships"],
        pickup=m["pickup"],
        cost=Cost(m["cost_per_shipment"], m["cost_per_km"], m["cost_per_unit"]),
        priority=m["priority"],
        capacity_per_day=m["capacity_per_day"],
        pickup_ready_minutes=m["pickup_ready_minutes"],
        name=m["name"],
    )


class NodeCatalog:
    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine
        self._nodes: dict[str, Node] = {}
        self._signature: tuple[int, int] | None = None
        self._network: Network | None = None

    async def put(self, node: Node) -> bool:
        """Creates or replaces a node; True when it was created."""
        row = _row_of(node, time.time_ns())
        async with self._engine.begin() as conn:
            changed = await conn.execute(
                nodes.update().where(nodes.c.node_id == node.node_id).values(row)
            )
            created = changed.rowcount == 0
        if created:
            try:
                async with self._engine.begin() as conn:
                    await conn.execute(nodes.insert().values(row))
            except sa.exc.IntegrityError:
                # Another request created it meanwhile: this one replaces it.
                async with self._engine.begin() as conn:
                    await conn.execute(
                        nodes.update().where(nodes.c.node_id == node.node_id).values(row)
                    )
                created = False
        self._nodes[node.node_id] = node
        self._network = None
        return created

    async def get(self, node_id: str) -> Node | None:
        node = self._nodes.get(node_id)
        if node is not None:
            return node
        async with self._engine.connect() as conn:
            row = (await conn.execute(sa.select(nodes).where(nodes.c.node_id == node_id))).first()
        if row is None:
            return None
        node = self._nodes[node_id] = _node_of(row)
        self._network = None
        return node

    async def unknown(self, node_ids: Iterable[str]) -> list[str]:
        """The ids among ``node_ids`` that name no node, in the order given."""
        missing = []
        for node_id in dict.fromkeys(node_ids):
            if node_id not in self._nodes and await self.get(node_id) is None:
                missing.append(node_id)
        return missing

    def cached(self, node_id: str) -> Node | None:
        return self._nodes.get(node_id)

    def all_cached(self) -> list[Node]:
        return sorted(self._nodes.values(), key=lambda n: n.node_id)

    async def all(self) -> list[Node]:
        await self.refresh()
        return self.all_cached()

    async def refresh(self) -> bool:
        """Reloads every node when the catalog changed since the last load; True if it did."""
        async with self._engine.connect() as conn:
            count, latest = (
                await conn.execute(sa.select(sa.func.count(), sa.func.max(nodes.c.changed_ns)))
            ).one()
            signature = (int(count), int(latest or 0))
            if signature == self._signature:
                return False
            rows = (await conn.execute(sa.select(nodes))).all()
        self._nodes = {row._mapping["node_id"]: _node_of(row) for row in rows}
        self._signature = signature
        self._network = None
        return True

    async def network_naming(self, *node_ids: str | None) -> Network:
        """The routing network, holding every node named (None names none) that exists, even
        one made by another worker since the last refresh."""
        await self.unknown(n for n in node_ids if n is not None)
        return self.network()

    def network(self) -> Network:
        """The routing network of every cached node, rebuilt only when the catalog changed."""
        if self._network is None:
            self._network = Network(self._nodes.values())
        return self._network
