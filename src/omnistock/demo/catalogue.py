"""The demo retailer: a US apparel and footwear chain, its network and its stock.

Pure and deterministic (one ``random.Random`` with a fixed seed), so every run builds the same
demo and seeding it again finds nothing to do:

* a national distribution centre in Plainfield (by Indianapolis) and regional ones in Reno
  (west) and Allentown (east): cheap per unit and per km, deep stock of almost every SKU;
* a store in each of about fifty large cities (real coordinates, ``cities.csv``): click & collect
  everywhere, ship-from-store at most of them, dearer per shipment and per unit;
* about three hundred SKUs with readable ids (``shoe-runner-42``, ``tee-classic-m-black``), ranked
  by popularity (core sizes and colours sell best), with long-tail stock: popular SKUs in most
  stores, slow ones in a few, store quantities in single digits, and some positions counted at
  zero (sold out there).
"""

from __future__ import annotations

import csv
import itertools
import random
import re
from dataclasses import dataclass
from functools import cache
from importlib import resources

from omnistock.domain.node import Cost, Node

SEED = "omnistock-demo:1"

DISTRIBUTION_CENTRES = (
    # node id, name, city, state, priority, capacity per day, cost
    ("dc-national", "National DC", "Plainfield", "IN", 10, 20_000, Cost(5.0, 0.0015, 0.25)),
    ("dc-west", "West DC", "Reno", "NV", 20, 8_000, Cost(5.5, 0.002, 0.3)),
    ("dc-east", "East DC", "Allentown", "PA", 20, 8_000, Cost(5.5, 0.002, 0.3)),
)
PICKUP_READY_MINUTES = (30, 30, 60, 60, 120)
SHIP_FROM_STORE_SHARE = 0.8
SOLD_OUT_SHARE = 0.12
WAREHOUSE_SAFETY_STOCK = 5

SIZES = ("xs", "s", "m", "l", "xl", "xxl")
SIZE_WEIGHT = {"xs": 0.4, "s": 0.8, "m": 1.0, "l": 1.0, "xl": 0.7, "xxl": 0.35}
SHOE_SIZES = tuple(range(38, 47))
COLOUR_WEIGHT = {"black": 1.0, "white": 0.9, "navy": 0.8, "grey": 0.7}
WAISTS = (28, 30, 32, 34, 36, 38)
LENGTHS = (30, 32, 34)


@dataclass(frozen=True)
class City:
    name: str
    state: str
    lat: float
    lon: float
    population: int


@dataclass(frozen=True)
class Position:
    node_id: str
    sku: str
    on_hand: int
    safety_stock: int = 0


@dataclass(frozen=True)
class Demo:
    nodes: tuple[Node, ...]
    skus: tuple[str, ...]  # most popular first
    positions: tuple[Position, ...]  # counted positions; a pair absent here holds nothing

    def units(self) -> int:
        return sum(p.on_hand for p in self.positions)


@cache
def cities() -> tuple[City, ...]:
    """The bundled cities, most populous first."""
    text = resources.files("omnistock.demo").joinpath("cities.csv").read_text(encoding="utf-8")
    rows = csv.DictReader(line for line in text.splitlines() if not line.startswith("#"))
    found = [
        City(r["name"], r["state"], float(r["lat"]), float(r["lon"]), int(r["population"]))
        for r in rows
    ]
    return tuple(sorted(found, key=lambda c: -c.population))


def slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")


@cache
def build() -> Demo:
    rng = random.Random(SEED)
    nodes = [*_distribution_centres(), *_stores(rng)]
    skus = _ranked_skus(rng)
    return Demo(tuple(nodes), skus, tuple(_stock(rng, nodes, skus)))


def _distribution_centres() -> list[Node]:
    by_name = {(c.name, c.state): c for c in cities()}
    out = []
    for node_id, name, city_name, state, priority, capacity, cost in DISTRIBUTION_CENTRES:
        city = by_name[(city_name, state)]
        out.append(
            Node(
                node_id=node_id,
                lat=city.lat,
                lon=city.lon,
                kind="warehouse",
                ships=True,
                pickup=False,
                cost=cost,
                priority=priority,
                capacity_per_day=capacity,
                name=f"{name}, {city.name}, {city.state}",
            )
        )
    return out


def _stores(rng: random.Random) -> list[Node]:
    dc_sites = {(city, state) for _id, _n, city, state, *_ in DISTRIBUTION_CENTRES}
    out = []
    for city in cities():
        if (city.name, city.state) in dc_sites:
            continue
        flagship = city.population >= 1_000_000
        ships = flagship or rng.random() < SHIP_FROM_STORE_SHARE
        out.append(
            Node(
                node_id=f"store-{slug(city.name)}-{city.state.lower()}",
                lat=city.lat,
                lon=city.lon,
                kind="store",
                ships=ships,
                pickup=True,
                cost=Cost(
                    per_shipment=round(rng.uniform(7.5, 9.5), 2),
                    per_km=0.008,
                    per_unit=round(rng.uniform(0.9, 1.2), 2),
                ),
                # Lower goes first under the priority strategy: big-city flagships before others.
                priority=rng.randint(50, 69) if flagship else rng.randint(70, 99),
                capacity_per_day=rng.choice((60, 80, 120)) if ships else 0,
                pickup_ready_minutes=rng.choice(PICKUP_READY_MINUTES),
                name=f"{city.name}, {city.state}",
            )
        )
    return out


def _families() -> list[tuple[str, float]]:
    """Every SKU id with its demand weight before noise."""
    out: list[tuple[str, float]] = []

    def add(prefix: str, base: float, *axes: dict[str, float]) -> None:
        for combo in itertools.product(*(axis.items() for axis in axes)):
            weight = base
            for _name, w in combo:
                weight *= w
            out.append(("-".join([prefix, *(name for name, _w in combo)]), weight))

    def sizes(*names: str) -> dict[str, float]:
        return {n: SIZE_WEIGHT[n] for n in names}

    def colours(*names: str) -> dict[str, float]:
        return {n: COLOUR_WEIGHT.get(n, 0.5) for n in names}

    shoe_sizes = {str(s): 1.0 - abs(s - 42.5) / 6 for s in SHOE_SIZES}
    for model, base in (("runner", 1.0), ("trail", 0.6), ("court", 0.7), ("walker", 0.4)):
        add(f"shoe-{model}", base, shoe_sizes)
    add("boot-chelsea", 0.35, shoe_sizes)
    add("tee-classic", 1.0, sizes(*SIZES), colours("black", "white", "navy", "grey", "olive"))
    add("tee-vneck", 0.5, sizes("s", "m", "l", "xl"), colours("black", "white", "grey"))
    add("polo-pique", 0.45, sizes("s", "m", "l", "xl", "xxl"), colours("navy", "white", "green"))
    add("shirt-oxford", 0.4, sizes("s", "m", "l", "xl", "xxl"), colours("blue", "white"))
    add("hoodie-zip", 0.6, sizes("s", "m", "l", "xl", "xxl"), colours("black", "grey", "navy"))
    add("hoodie-pullover", 0.55, sizes("s", "m", "l", "xl", "xxl"), colours("black", "grey"))
    waists = {f"{w}": 1.0 - abs(w - 32) / 9 for w in WAISTS}
    for fit, base in (("slim", 0.6), ("straight", 0.45)):
        for waist, ww in waists.items():
            for length in LENGTHS:
                lw = 1.0 if length == 32 else 0.6
                out.append((f"jeans-{fit}-{waist}x{length}", base * ww * lw))
    add("chino", 0.4, colours("khaki", "navy", "black"), waists)
    add("shorts-run", 0.35, sizes("s", "m", "l", "xl"), colours("black", "navy", "red"))
    add("leggings", 0.45, sizes("xs", "s", "m", "l", "xl"), colours("black"))
    add("dress-wrap", 0.3, sizes("xs", "s", "m", "l", "xl"), colours("black", "navy", "floral"))
    add("jacket-rain", 0.3, sizes("s", "m", "l", "xl"), colours("black", "yellow", "navy"))
    add("jacket-puffer", 0.35, sizes("s", "m", "l", "xl"), colours("black", "olive", "navy"))
    add("socks-crew-3pk", 0.7, {"s": 0.6, "m": 1.0, "l": 0.9}, colours("black", "white"))
    add("socks-ankle-3pk", 0.5, {"s": 0.6, "m": 1.0, "l": 0.9}, colours("black", "white"))
    add("cap-logo", 0.5, colours("black", "white", "navy", "red", "green"))
    add("beanie-knit", 0.3, colours("black", "grey", "navy", "orange"))
    add("scarf-wool", 0.2, colours("grey", "navy", "camel"))
    add("belt-leather", 0.25, {"s": 0.6, "m": 1.0, "l": 0.9, "xl": 0.5}, colours("black", "brown"))
    add("bag-daypack-20l", 0.3, colours("black", "grey", "navy", "olive"))
    add("bottle-steel-750ml", 0.4, colours("black", "white", "blue", "pink"))
    return out


def _ranked_skus(rng: random.Random) -> tuple[str, ...]:
    """The SKU ids, most popular first: the family's weight with some noise."""
    scored = [(w * rng.lognormvariate(0.0, 0.35), sku) for sku, w in _families()]
    scored.sort(key=lambda x: (-x[0], x[1]))
    return tuple(sku for _w, sku in scored)


def _stock(rng: random.Random, nodes: list[Node], skus: tuple[str, ...]) -> list[Position]:
    national, *regional = [n.node_id for n in nodes if n.kind == "warehouse"]
    stores = [n.node_id for n in nodes if n.kind == "store"]
    n = len(skus)
    out: list[Position] = []
    for rank, sku in enumerate(skus, 1):
        share = 1.0 - (rank - 1) / n  # 1 for the best seller, towards 0 for the slowest
        demand = rank**-0.7
        if rng.random() < 0.97:
            on_hand = 0 if rng.random() < 0.03 else int(60 + 2500 * demand * rng.uniform(0.5, 1.5))
            out.append(Position(national, sku, on_hand, WAREHOUSE_SAFETY_STOCK))
        for dc in regional:
            if rng.random() < 0.55 + 0.4 * share:
                on_hand = (
                    0 if rng.random() < 0.05 else int(15 + 600 * demand * rng.uniform(0.4, 1.6))
                )
                out.append(Position(dc, sku, on_hand, WAREHOUSE_SAFETY_STOCK))
        breadth = round(len(stores) * (0.9 * share**2 + 0.04))
        for store in sorted(rng.sample(stores, max(1, breadth))):
            if rng.random() < SOLD_OUT_SHARE:
                out.append(Position(store, sku, 0))
            else:
                on_hand = min(24, int(rng.paretovariate(1.6) * (1 + 3 * share)))
                out.append(Position(store, sku, max(1, on_hand)))
    return out
