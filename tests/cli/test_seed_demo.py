"""``omnistock seed --demo``: the demo retailer's network and stock, the same on every run, and a
second run that changes nothing (no position, no version, no event, no node), even after stock
was sold in between.

The first run finds no service and starts the embedded Valkey itself; the later ones find a
"running service" through ``valkey.url``, as they would beside ``omnistock serve``.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
import redis
import sqlalchemy as sa

from omnistock.demo import catalogue
from omnistock.demo import seed as demo_seed
from omnistock.demo.seed import SeedReport
from omnistock.domain.ids import is_valid_id
from omnistock.domain.node import check_node
from omnistock.domain.stock import Adjustment, Reason
from omnistock.reservations import keys
from omnistock.runtime.bootstrap import start_embedded_valkey
from omnistock.runtime.settings import Settings
from omnistock.runtime.targets import Result, local_target
from omnistock.runtime.tools import url_file
from omnistock.store.database import default_url, nodes, open_engine
from tests.cli.support import omnistock, use_data_dir

Snapshot = tuple[dict[tuple[str, str], tuple[int, ...]], dict[str, int], int]


def test_the_demo_is_a_realistic_retailer_and_the_same_every_time() -> None:
    demo = catalogue.build()
    assert demo == catalogue.build.__wrapped__()  # deterministic, not only cached
    warehouses = [n for n in demo.nodes if n.kind == "warehouse"]
    stores = [n for n in demo.nodes if n.kind == "store"]
    assert len(warehouses) == 3 and 30 <= len(stores) <= 60
    for node in demo.nodes:
        check_node(node)
    assert all(s.pickup for s in stores) and not any(w.pickup for w in warehouses)
    assert all(24 < n.lat < 50 and -125 < n.lon < -66 for n in demo.nodes)  # contiguous US
    assert 200 <= len(demo.skus) <= 400 and len(set(demo.skus)) == len(demo.skus)
    assert all(is_valid_id(s) for s in demo.skus)
    assert {"shoe-runner-42", "tee-classic-m-black"} <= set(demo.skus)
    pairs = [(p.node_id, p.sku) for p in demo.positions]
    assert len(set(pairs)) == len(pairs)
    at_stores = [p for p in demo.positions if p.node_id.startswith("store-")]
    at_dcs = [p for p in demo.positions if p.node_id.startswith("dc-")]
    # Long tail: stores shallow and carrying a fraction of the range, DCs deep and broad.
    assert max(p.on_hand for p in at_stores) <= 24
    assert len(at_stores) < 0.5 * len(stores) * len(demo.skus)
    assert sum(p.on_hand == 0 for p in at_stores) > 0.05 * len(at_stores)
    assert len(at_dcs) > 0.7 * len(warehouses) * len(demo.skus)

    def mean(ps: list[catalogue.Position]) -> float:
        return sum(p.on_hand for p in ps) / len(ps)

    assert mean(at_dcs) > 10 * mean(at_stores)


@pytest.fixture
def settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Settings:
    return use_data_dir(monkeypatch, tmp_path / "data")


async def snapshot(settings: Settings, valkey_url: str) -> Snapshot:
    """Every demo SKU's positions with their versions, every node's change stamp, and the
    length of the ledger's event stream."""
    demo = catalogue.build()
    async with local_target(settings) as target:
        found = await target.ledger.availability_many(list(demo.skus))
    with redis.Redis.from_url(valkey_url) as client:
        events = client.xlen(keys.stream_key(0))
    positions = {
        (p.node_id, p.sku): (p.on_hand, p.reserved, p.safety_stock, p.version)
        for at in found.values()
        for p in at
    }
    engine = open_engine(default_url(settings.data_dir), timeout_s=2)
    try:
        async with engine.connect() as conn:
            rows = (await conn.execute(sa.select(nodes.c.node_id, nodes.c.changed_ns))).all()
    finally:
        await engine.dispose()
    return positions, {node_id: stamp for node_id, stamp in rows}, events


def test_seed_demo_creates_the_network_and_stock_and_seeding_again_changes_nothing(
    settings: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    demo = catalogue.build()
    assert omnistock("seed", "--demo", "--no-progress") == 0  # no service: its own Valkey
    out = capsys.readouterr().out
    assert f"{len(demo.nodes)} node(s) created" in out
    assert f"{len(demo.positions):,} position(s) set, 0 already there" in out

    server = start_embedded_valkey(settings)  # the service starts on the seeded data
    url_file(settings).write_text(server.url + "\n")
    try:
        first, stamps, _ = asyncio.run(snapshot(settings, server.url))
        assert len(first) == len(demo.positions) and len(stamps) == len(demo.nodes)
        for p in demo.positions:
            assert first[(p.node_id, p.sku)] == (p.on_hand, 0, p.safety_stock, 1)
        sold = next(p for p in demo.positions if p.on_hand >= 3 and p.node_id.startswith("store-"))
        asyncio.run(sell(settings, sold.node_id, sold.sku, 2))
        before = asyncio.run(snapshot(settings, server.url))

        assert omnistock("seed", "--demo", "--no-progress") == 0

        out = capsys.readouterr().out
        assert f"0 node(s) created, {len(demo.nodes)} already there" in out
        assert f"0 position(s) set, {len(demo.positions):,} already there" in out
        after = asyncio.run(snapshot(settings, server.url))
        assert after == before  # positions, versions, node stamps and the event stream
        assert after[0][(sold.node_id, sold.sku)] == (sold.on_hand - 2, 0, 0, 2)

        # Once the ledger has forgotten the first seeding's operations (after 48 hours), the
        # version check still keeps every position as it is.
        report = asyncio.run(seed_forgotten(settings))
        assert report.positions_set == 0 and report.counts[Result.CONFLICT] == len(demo.positions)
        assert asyncio.run(snapshot(settings, server.url)) == before
    finally:
        url_file(settings).unlink(missing_ok=True)
        server.stop()


async def sell(settings: Settings, node_id: str, sku: str, qty: int) -> None:
    async with local_target(settings) as target:
        await target.ledger.adjust("till-1", [Adjustment(node_id, sku, -qty, Reason.SALE)])


async def seed_forgotten(settings: Settings) -> SeedReport:
    first_ids = demo_seed.op_id
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(demo_seed, "op_id", lambda p: "later:" + first_ids(p))
        async with local_target(settings) as target:
            return await demo_seed.seed(target, progress=False)
