"""Choosing where a store's missing goods come from: the nearest node that has them all."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from omnistock.domain.movement import SkuQty
from omnistock.domain.node import Node
from omnistock.routing.network import great_circle_km


def nearest_source(
    store: Node,
    nodes: Sequence[Node],
    available: Mapping[tuple[str, str], int],
    lines: Sequence[SkuQty],
) -> Node | None:
    """The node nearest to ``store`` (ties: lowest node id) that has every line available,
    itself excluded; None when no single node has them all. ``available`` maps (node, sku)."""
    best: tuple[float, str, Node] | None = None
    for node in nodes:
        if node.node_id == store.node_id:
            continue
        if all(available.get((node.node_id, line.sku), 0) >= line.qty for line in lines):
            km = great_circle_km(node.lat, node.lon, store.lat, store.lon)
            key = (km, node.node_id, node)
            if best is None or key[:2] < best[:2]:
                best = key
    return None if best is None else best[2]
