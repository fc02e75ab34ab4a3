"""Turns an allocation (units per line and candidate node) into shipments and shortfalls."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from omnistock.routing.cost import shipment_cost
from omnistock.routing.model import Shipment, ShipmentLine, Unfulfilled
from omnistock.routing.network import Network


def assemble(
    network: Network,
    skus: Sequence[str],
    qty: np.ndarray,
    node_index: np.ndarray,
    dist: np.ndarray,
    alloc: np.ndarray,
    *,
    free_node: int | None = None,
) -> tuple[tuple[Shipment, ...], tuple[Unfulfilled, ...]]:
    """Shipments in candidate order, each costed by the formula, and what no shipment covers.

    ``alloc[line, c]`` is what candidate ``c`` (network index ``node_index[c]``, ``dist[c]`` km
    away) ships of the line. ``free_node`` is a pickup store serving its own order: no distance,
    no cost.
    """
    shipments = []
    per_node = alloc.sum(axis=0)
    for c in np.flatnonzero(per_node):  # only the nodes that ship: a few among many candidates
        n = int(node_index[c])
        node = network.nodes[n]
        local = n == free_node
        km = 0.0 if local else float(dist[c])
        lines = tuple(
            ShipmentLine(sku=sku, qty=int(q)) for sku, q in zip(skus, alloc[:, c], strict=True) if q
        )
        cost = 0.0 if local else shipment_cost(node.cost, km, int(per_node[c]))
        shipments.append(Shipment(node_id=node.node_id, lines=lines, distance_km=km, cost=cost))
    shipped = alloc.sum(axis=1)
    unfulfilled = tuple(
        Unfulfilled(sku=sku, qty=int(q - s))
        for sku, q, s in zip(skus, qty, shipped, strict=True)
        if q > s
    )
    return tuple(shipments), unfulfilled
