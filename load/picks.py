"""What a simulated user picks, drawn from the seed manifest with a per-user random stream.

SKU demand follows Zipf's law over the catalogue's popularity ranks (the routing benchmark's
order model), customers are somewhere around the stores (which are themselves placed by city
population), a till sells what its store was stocked with, and a transfer replenishes a store
from a warehouse that carries the SKU. Everything is precomputed once per process.
"""

from __future__ import annotations

import bisect
import itertools
import math
import random
from dataclasses import dataclass
from functools import cached_property

from load.manifest import Manifest, NodeInfo

CUSTOMER_SIGMA_KM = 15.0


@dataclass(frozen=True)
class Point:
    lat: float
    lon: float

    def query(self) -> str:
        return f"{self.lat:.4f},{self.lon:.4f}"

    def body(self) -> dict:
        return {"lat": self.lat, "lon": self.lon}


class Catalogue:
    """The manifest with the lookups the users need, built once per process."""

    def __init__(self, manifest: Manifest) -> None:
        self.manifest = manifest
        self.skus = manifest.skus
        self.hot_skus = manifest.hot_skus or manifest.skus[:1]
        self.demand = list(itertools.accumulate(1.0 / r for r in range(1, len(self.skus) + 1)))
        self.stores = [n for n in manifest.nodes if n.kind != "warehouse"]
        self.warehouses = [n for n in manifest.nodes if n.kind == "warehouse"]
        self.stocked_stores = [n for n in self.stores if manifest.stocked.get(n.node_id)]
        self.pickup_stores = [n for n in self.stocked_stores if n.pickup]
        self.stocked_warehouses = [n for n in self.warehouses if manifest.stocked.get(n.node_id)]

    @cached_property
    def places(self) -> list[NodeInfo]:
        """Where customers are: around the stores, or the warehouses when there is no store."""
        return self.stores or list(self.manifest.nodes)


class Picker:
    def __init__(self, catalogue: Catalogue, rng: random.Random) -> None:
        self.c = catalogue
        self.rng = rng

    def rank(self) -> int:
        """A catalogue index (0: most popular), drawn by demand."""
        demand = self.c.demand
        return bisect.bisect_right(demand, self.rng.random() * demand[-1])

    def sku(self) -> str:
        return self.c.skus[self.rank()]

    def skus(self, n: int) -> list[str]:
        """`n` distinct SKUs by demand (fewer if the catalogue is smaller)."""
        n = min(n, len(self.c.skus))
        out: list[str] = []
        while len(out) < n:
            sku = self.sku()
            if sku not in out:
                out.append(sku)
        return out

    def hot_sku(self) -> str:
        return self.rng.choice(self.c.hot_skus)

    def page(self, size: int) -> list[str]:
        """A category page: `size` SKUs of neighbouring catalogue ranks from a demand-drawn one."""
        start = max(0, min(self.rank(), len(self.c.skus) - size))
        return list(self.c.skus[start : start + size])

    def customer(self) -> Point:
        """A point within tens of km of a store."""
        node = self.rng.choice(self.c.places)
        lat = node.lat + self.rng.gauss(0.0, CUSTOMER_SIGMA_KM) / 111.2
        scale = 111.2 * max(math.cos(math.radians(node.lat)), 0.1)
        lon = node.lon + self.rng.gauss(0.0, CUSTOMER_SIGMA_KM) / scale
        return Point(round(max(-90.0, min(90.0, lat)), 5), round((lon + 540.0) % 360.0 - 180.0, 5))

    def store_sku(self, pickup: bool = False) -> tuple[str, str] | None:
        """A store (with click & collect when `pickup`) and a SKU it was stocked with."""
        stores = self.c.pickup_stores if pickup else self.c.stocked_stores
        if not stores:
            return None
        store = self.rng.choice(stores).node_id
        return store, self.rng.choice(self.c.manifest.stocked[store])

    def replenishment(self) -> tuple[str, str, str] | None:
        """A warehouse, a store and a SKU the warehouse carries."""
        if not self.c.stocked_warehouses or not self.c.stores:
            return None
        wh = self.rng.choice(self.c.stocked_warehouses).node_id
        store = self.rng.choice(self.c.stores).node_id
        return wh, store, self.rng.choice(self.c.manifest.stocked[wh])
