"""Small hand-made networks shared by the routing unit tests."""

from __future__ import annotations

from omnistock.routing import Cost, Destination, Network, Node, OrderLine, RouteRequest

CUSTOMER = Destination(lat=48.8566, lon=2.3522)  # Paris


def node(node_id: str, lat: float, lon: float, **kw) -> Node:
    return Node(node_id=node_id, lat=lat, lon=lon, **kw)


def request(*lines: tuple[str, int], **kw) -> RouteRequest:
    kw.setdefault("destination", None if "pickup_node_id" in kw else CUSTOMER)
    return RouteRequest(lines=[OrderLine(sku, qty) for sku, qty in lines], **kw)


def network(*nodes: Node) -> Network:
    return Network(nodes)


FREE = Cost(0.0, 0.0, 0.0)
