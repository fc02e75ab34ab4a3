"""The network and catalogue a load test runs against, built from `benchmarks/geo.py`.

Pure and deterministic (`random.Random(seed)` only): warehouses at the benchmark's DC sites,
stores in real US cities drawn by population, and the benchmark's long-tail stock (a handful of
SKUs almost everywhere, most in one to five stores, warehouses holding most SKUs in depth).
On top of that, only a share of the stores offers click & collect (`pickup`), each with its own
pick time, and the most popular SKUs are the hot SKUs of a flash sale: a limited drop whose
stock (about `hot_units` each, spread over the same nodes) a spike of orders can sell out.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

import msgspec

from benchmarks import geo
from omnistock.routing import Network, Node

PICKUP_READY_MINUTES = (15, 30, 60)


@dataclass(frozen=True)
class Catalogue:
    nodes: tuple[Node, ...]
    skus: tuple[str, ...]  # most popular first
    stock: dict[str, dict[str, int]]  # sku -> node_id -> on_hand (zeros omitted)
    hot_skus: tuple[str, ...]


def build(
    *,
    warehouses: int = 3,
    stores: int = 150,
    skus: int = 5_000,
    hot: int = 5,
    hot_units: int = 100,
    pickup_share: float = 0.6,
    seed: int = 0,
) -> Catalogue:
    """`warehouses` (1 to 3) DCs and `stores` stores, `skus` SKUs with long-tail stock."""
    if not 1 <= warehouses <= len(geo.WAREHOUSE_SITES):
        raise ValueError(f"warehouses must be 1 to {len(geo.WAREHOUSE_SITES)}")
    if stores < 1 or skus < 1 or not 0 <= hot <= skus:
        raise ValueError("need at least one store and one SKU, and at most as many hot SKUs")
    rng = random.Random(f"load-network:{warehouses}:{stores}:{seed}")
    nodes = [*geo.warehouses(warehouses), *_stores(stores, seed, rng, pickup_share)]
    stock = geo.build_stock(Network(nodes), skus, seed)
    ids = tuple(geo.sku_id(rank) for rank in range(1, skus + 1))
    for sku in ids[:hot]:
        stock[sku] = limited(stock[sku], hot_units)
    return Catalogue(tuple(nodes), ids, stock, ids[:hot])


def limited(units: dict[str, int], total: int) -> dict[str, int]:
    """The same nodes with their quantities scaled to about `total` in all (at least one each)."""
    held = sum(units.values())
    if held <= total:
        return dict(units)
    return {node: max(1, round(qty * total / held)) for node, qty in units.items()}


def _stores(count: int, seed: int, rng: random.Random, pickup_share: float) -> list[Node]:
    # geo.build_network(n) makes n - warehouse_count(n) stores: pick the n that gives `count`.
    n = next(count + w for w in (1, 2, 3) if geo.warehouse_count(count + w) == w)
    stores = [node for node in geo.build_network(n, seed).nodes if node.kind == "store"]
    assert len(stores) == count
    return [
        msgspec.structs.replace(
            node,
            pickup=rng.random() < pickup_share,
            pickup_ready_minutes=rng.choice(PICKUP_READY_MINUTES),
        )
        for node in stores
    ]
