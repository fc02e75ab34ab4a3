"""``omnistock rebuild``: after Redis lost everything, the ledger comes back from the database as it
was (positions with their versions, open and finished reservations, transfers and holds, their
deadlines), expiry stays exact, retried requests replay instead of applying twice, and a ledger
that is not empty is only written over when forced.

Each test runs on a Valkey of its own (it is flushed) and a SQLite database in its tmp_path; the
ledger runs on a fake clock so that deadlines can be reached at will.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from omnistock.domain.errors import IllegalTransition
from omnistock.domain.movement import HoldStatus, SkuQty, TransferStatus
from omnistock.domain.reservation import ReservationStatus
from omnistock.domain.stock import Adjustment, Line, Position, Reason
from omnistock.reservations import keys
from omnistock.reservations.connect import LedgerConnection, open_ledger
from omnistock.reservations.redis_ledger import RedisLedger
from omnistock.runtime.valkey_cluster import EmbeddedCluster
from omnistock.runtime.valkey_server import EmbeddedValkey
from omnistock.store.database import create_schema, default_url, documents, open_engine
from omnistock.store.projector import Projector, _Part, _Read, stream_position
from omnistock.store.rebuild import RebuildRefused, rebuild
from tests.integration.ledger_fixtures import DAY_MS, FakeClock, Names

LONG_MS = DAY_MS
SHORT_MS = 60_000


@pytest.fixture
def own_valkey(tmp_path: Path) -> Iterator[EmbeddedValkey]:
    server = EmbeddedValkey(tmp_path / "valkey")
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
async def engine(tmp_path: Path) -> AsyncIterator[AsyncEngine]:
    engine = open_engine(default_url(tmp_path), timeout_s=2)
    try:
        await create_schema(engine)
        yield engine
    finally:
        await engine.dispose()


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
async def conn(own_valkey: EmbeddedValkey, clock: FakeClock) -> AsyncIterator[LedgerConnection]:
    c = await open_ledger(own_valkey.url, durability="strict", clock=clock)
    try:
        yield c
    finally:
        await c.aclose()


@dataclass
class World:
    """What a workload made: its SKUs and the ids of everything it created."""

    names: Names
    dc: str
    s1: str
    s2: str
    skus: list[str]
    reservations: dict[str, str] = field(default_factory=dict)
    transfers: dict[str, str] = field(default_factory=dict)
    holds: dict[str, str] = field(default_factory=dict)
    ops: dict[str, str] = field(default_factory=dict)
    answers: dict[str, Any] = field(default_factory=dict)  # what some of the ops returned


async def workload(ledger: RedisLedger, names: Names | None = None) -> World:
    """Stock, adjustments, reservations, transfers and holds in every state, some left open."""
    names = names or Names()
    w = World(names, names.node("dc"), names.node("s1"), names.node("s2"), [])
    w.skus = names.skus_in_distinct_partitions(4)
    a, b, c, d = w.skus
    op = names.op
    for node in (w.dc, w.s1, w.s2):
        for i, sku in enumerate(w.skus):
            await ledger.set_stock(op(), node, sku, 50, safety_stock=i % 2)
    w.ops["set"] = op()
    w.answers["set"] = await ledger.set_stock(w.ops["set"], w.dc, d, 60)
    w.ops["adjust"] = op()
    w.answers["adjust"] = await ledger.adjust(
        w.ops["adjust"],
        [
            Adjustment(w.dc, a, 10, Reason.RECEIPT, "po-1"),
            Adjustment(w.s1, b, -3, Reason.SALE),
            Adjustment(w.dc, a, -1, Reason.DAMAGE),
        ],
    )

    reserve = ledger.reserve
    committed = await reserve(op(), [Line(w.dc, a, 2), Line(w.dc, b, 1)], ttl_ms=LONG_MS)
    await ledger.commit(op(), committed.reservation_id)
    released = await reserve(op(), [Line(w.s1, c, 2)], ttl_ms=LONG_MS)
    await ledger.release(op(), released.reservation_id)
    w.ops["reserve"] = op()
    kept = await reserve(
        w.ops["reserve"], [Line(w.dc, a, 3), Line(w.dc, c, 1)], ttl_ms=LONG_MS, order_ref="o-1"
    )
    due = await reserve(op(), [Line(w.s2, d, 4)], ttl_ms=SHORT_MS)
    w.reservations |= {
        "committed": committed.reservation_id,
        "released": released.reservation_id,
        "kept": kept.reservation_id,
        "due": due.reservation_id,
    }

    transfer = ledger.request_transfer
    received = await transfer(op(), w.dc, w.s1, [SkuQty(a, 2), SkuQty(b, 1)], reason="restock")
    await ledger.ship_transfer(op(), received.transfer_id)
    await ledger.receive_transfer(op(), received.transfer_id, [SkuQty(a, 2)])  # b lost
    in_transit = await transfer(op(), w.dc, w.s2, [SkuQty(c, 3)])
    w.ops["ship"] = op()
    w.answers["ship"] = await ledger.ship_transfer(w.ops["ship"], in_transit.transfer_id)
    requested = await transfer(op(), w.dc, w.s1, [SkuQty(d, 2)])
    cancelled = await transfer(op(), w.dc, w.s2, [SkuQty(a, 1)])
    await ledger.cancel_transfer(op(), cancelled.transfer_id)
    w.transfers |= {
        "received": received.transfer_id,
        "in_transit": in_transit.transfer_id,
        "requested": requested.transfer_id,
        "cancelled": cancelled.transfer_id,
    }

    async def hold(store: str, lines: list[SkuQty], source: str | None = None, window=LONG_MS):
        return await ledger.place_hold(
            op(),
            store,
            lines,
            customer_ref=names.op("cust"),
            pickup_window_ms=window,
            ready_in_ms=3_600_000,
            source_node_id=source,
        )

    placed = await hold(w.s1, [SkuQty(b, 2)], window=SHORT_MS * 2)
    ready = await hold(w.s2, [SkuQty(a, 1)])
    await ledger.ready_hold(op(), ready.hold_id)  # emits no event: reached by refresh
    collected = await hold(w.s1, [SkuQty(c, 1)])
    await ledger.ready_hold(op(), collected.hold_id)
    await ledger.collect_hold(op(), collected.hold_id)
    dropped = await hold(w.s2, [SkuQty(d, 1)])
    await ledger.cancel_hold(op(), dropped.hold_id)
    waiting = await hold(w.s1, [SkuQty(d, 2)], source=w.dc)
    shipped = await hold(w.s2, [SkuQty(b, 2)], source=w.dc)
    await ledger.ship_transfer(op(), shipped.transfer_id)
    arrived = await hold(w.s1, [SkuQty(a, 1), SkuQty(c, 1)], source=w.dc)
    await ledger.ship_transfer(op(), arrived.transfer_id)
    await ledger.receive_transfer(op(), arrived.transfer_id)
    abandoned = await hold(w.s2, [SkuQty(c, 1)], source=w.dc)
    await ledger.ship_transfer(op(), abandoned.transfer_id)
    await ledger.cancel_hold(op(), abandoned.hold_id)  # holds nothing yet: emits no event
    w.holds |= {
        "placed": placed.hold_id,
        "ready": ready.hold_id,
        "collected": collected.hold_id,
        "dropped": dropped.hold_id,
        "waiting": waiting.hold_id,
        "shipped": shipped.hold_id,
        "arrived": arrived.hold_id,
        "abandoned": abandoned.hold_id,
    }
    for name in ("waiting", "shipped", "arrived", "abandoned"):
        h = await ledger.get_hold(w.holds[name])
        assert h.transfer_id is not None
        w.transfers[f"hold:{name}"] = h.transfer_id
    return w


async def catch_up(projector: Projector) -> None:
    await projector.ensure_groups()
    while await projector.lag() > 0:
        await projector.step()
    await projector.refresh()


@dataclass
class Snapshot:
    positions: dict[str, list[Position]]
    reservations: dict[str, Any]
    transfers: dict[str, Any]
    holds: dict[str, Any]
    raw: dict[str, bytes]  # every record and document key, as stored
    deadlines: dict[str, list[tuple[bytes, float]]]


async def scan(client: Any, pattern: str) -> list[str]:
    found = set()
    async for key in client.scan_iter(match=pattern, count=1000):
        found.add(key.decode() if isinstance(key, bytes) else key)
    return sorted(found)


async def snapshot(conn: LedgerConnection, w: World) -> Snapshot:
    ledger, client = conn.ledger, conn.client
    raw = {}
    for key in await scan(client, "{os.*}:[rd]:*"):
        raw[key] = await client.get(key)
    deadlines = {}
    for key in await scan(client, "{os.*}:exp"):
        deadlines[key] = await client.zrange(key, 0, -1, withscores=True)
    return Snapshot(
        await ledger.availability_many(w.skus),
        {n: await ledger.get_reservation(i) for n, i in w.reservations.items()},
        {n: await ledger.get_transfer(i) for n, i in w.transfers.items()},
        {n: await ledger.get_hold(i) for n, i in w.holds.items()},
        raw,
        deadlines,
    )


async def lose_everything(conn: LedgerConnection) -> None:
    await conn.client.flushall()
    assert await scan(conn.client, "{os.*}") == []


async def test_rebuild_restores_the_ledger_exactly_after_redis_lost_everything(
    conn: LedgerConnection, engine: AsyncEngine
) -> None:
    await assert_restored_exactly(conn, engine)


async def test_rebuild_restores_the_ledger_exactly_from_postgresql(
    conn: LedgerConnection, postgres_url: str
) -> None:
    engine = open_engine(postgres_url, timeout_s=10)
    try:
        await create_schema(engine)
        await assert_restored_exactly(conn, engine)
    finally:
        await engine.dispose()


async def assert_restored_exactly(conn: LedgerConnection, engine: AsyncEngine) -> None:
    w = await workload(conn.ledger)
    await catch_up(Projector(conn.client, engine, cluster=False, block_ms=20))
    before = await snapshot(conn, w)
    assert before.holds["ready"].status is HoldStatus.READY
    assert before.holds["abandoned"].status is HoldStatus.CANCELLED

    await lose_everything(conn)
    report = await rebuild(conn, engine, force=False)

    after = await snapshot(conn, w)
    assert after.positions == before.positions  # versions included
    assert after.reservations == before.reservations
    assert after.transfers == before.transfers
    assert after.holds == before.holds
    assert after.raw == before.raw  # every record and document byte for byte
    assert after.deadlines == before.deadlines
    assert report.mismatches == []
    assert report.positions == sum(len(p) for p in before.positions.values())
    # kept and due; in_transit, requested and the transfers of waiting, shipped and abandoned
    assert (report.reservations, report.transfers) == (2, 5)
    assert report.holds == 5  # placed, ready, waiting, shipped, arrived
    assert report.results >= 2 + 1  # set and adjust; the steps of transfers and holds
    rendered = report.render()
    assert "every position matches its open documents" in rendered
    assert f"positions:          {report.positions}" in rendered


async def test_expiry_stays_exact_after_a_rebuild(
    conn: LedgerConnection, engine: AsyncEngine, clock: FakeClock
) -> None:
    w = await workload(conn.ledger)
    await catch_up(Projector(conn.client, engine, cluster=False, block_ms=20))
    due = await conn.ledger.get_reservation(w.reservations["due"])
    placed = await conn.ledger.get_hold(w.holds["placed"])
    d, b = w.skus[3], w.skus[1]
    s2_d = await conn.ledger.position(w.s2, d)
    s1_b = await conn.ledger.position(w.s1, b)
    await lose_everything(conn)
    await rebuild(conn, engine, force=False)

    clock.set(due.expires_at_ms - 1)
    assert (await conn.ledger.get_reservation(due.reservation_id)).status == "active"
    assert (await conn.ledger.position(w.s2, d)).reserved == s2_d.reserved
    clock.set(due.expires_at_ms)
    assert (await conn.ledger.position(w.s2, d)).reserved == s2_d.reserved - 4
    assert (await conn.ledger.get_reservation(due.reservation_id)).status == "expired"

    clock.set(placed.expires_at_ms)
    assert (await conn.ledger.get_hold(placed.hold_id)).status is HoldStatus.EXPIRED
    assert (await conn.ledger.position(w.s1, b)).held == s1_b.held - 2
    # A deadline that passed while the ledger was down expires at the first read after rebuild.
    kept = await conn.ledger.get_reservation(w.reservations["kept"])
    assert kept.status == "active"
    clock.set(kept.expires_at_ms + 1)
    assert (await conn.ledger.get_reservation(kept.reservation_id)).status == "expired"


async def test_a_deadline_passed_while_redis_was_down_expires_at_the_first_read(
    conn: LedgerConnection, engine: AsyncEngine, clock: FakeClock
) -> None:
    names = Names()
    node, sku = names.node(), names.sku()
    await conn.ledger.set_stock(names.op(), node, sku, 5)
    res = await conn.ledger.reserve(names.op(), [Line(node, sku, 5)], ttl_ms=SHORT_MS)
    await catch_up(Projector(conn.client, engine, cluster=False, block_ms=20))
    await lose_everything(conn)
    clock.advance(2 * SHORT_MS)  # the ledger was down past the deadline

    await rebuild(conn, engine, force=False)

    assert (await conn.ledger.position(node, sku)).available == 5
    assert (await conn.ledger.get_reservation(res.reservation_id)).status == "expired"


async def test_requests_retried_after_a_rebuild_replay_instead_of_applying_twice(
    conn: LedgerConnection, engine: AsyncEngine
) -> None:
    ledger = conn.ledger
    w = await workload(ledger)
    await catch_up(Projector(conn.client, engine, cluster=False, block_ms=20))
    before = await snapshot(conn, w)
    await lose_everything(conn)
    await rebuild(conn, engine, force=False)
    a, b, c, d = w.skus

    again = await ledger.adjust(
        w.ops["adjust"],
        [
            Adjustment(w.dc, a, 10, Reason.RECEIPT, "po-1"),
            Adjustment(w.s1, b, -3, Reason.SALE),
            Adjustment(w.dc, a, -1, Reason.DAMAGE),
        ],
    )
    assert again == w.answers["adjust"]  # what it answered then, not applied again
    assert await ledger.set_stock(w.ops["set"], w.dc, d, 60) == w.answers["set"]
    reserved = await ledger.reserve(
        w.ops["reserve"], [Line(w.dc, a, 3), Line(w.dc, c, 1)], ttl_ms=LONG_MS, order_ref="o-1"
    )
    assert reserved == before.reservations["kept"]
    shipped = await ledger.ship_transfer(w.ops["ship"], w.transfers["in_transit"])
    assert shipped == w.answers["ship"]
    assert shipped.status is TransferStatus.IN_TRANSIT
    with pytest.raises(IllegalTransition):  # another op: a real conflict, as before the loss
        await ledger.ship_transfer(w.names.op(), w.transfers["in_transit"])
    committed = await ledger.get_reservation(w.reservations["committed"])
    assert committed.status is ReservationStatus.COMMITTED

    assert await ledger.availability_many(w.skus) == before.positions


async def test_rebuild_refuses_a_ledger_that_is_not_empty_unless_forced(
    conn: LedgerConnection, engine: AsyncEngine
) -> None:
    w = await workload(conn.ledger)
    await catch_up(Projector(conn.client, engine, cluster=False, block_ms=20))
    before = await snapshot(conn, w)

    with pytest.raises(RebuildRefused, match="not empty"):
        await rebuild(conn, engine, force=False)
    assert await snapshot(conn, w) == before

    # Half the ledger lost: a forced rebuild puts the rest back over what is left.
    for key in (await scan(conn.client, "{os.*}"))[::2]:
        await conn.client.delete(key)
    report = await rebuild(conn, engine, force=True)

    assert report.forced and report.mismatches == []
    assert "--force" in report.render()
    after = await snapshot(conn, w)
    assert after.positions == before.positions
    assert (after.reservations, after.transfers, after.holds) == (
        before.reservations,
        before.transfers,
        before.holds,
    )


async def test_rebuild_of_an_empty_database_restores_nothing(
    conn: LedgerConnection, engine: AsyncEngine
) -> None:
    report = await rebuild(conn, engine, force=False)
    assert (report.positions, report.reservations, report.results) == (0, 0, 0)
    assert await scan(conn.client, "{os.*}:[sdr]:*") == []


async def test_the_report_names_positions_the_open_documents_do_not_account_for(
    conn: LedgerConnection, engine: AsyncEngine
) -> None:
    w = await workload(conn.ledger)
    await catch_up(Projector(conn.client, engine, cluster=False, block_ms=20))
    kept = w.reservations["kept"]
    async with engine.begin() as db:  # a projection that lost a reservation
        await db.execute(sa.delete(documents).where(documents.c.doc_id == kept))
    await lose_everything(conn)

    report = await rebuild(conn, engine, force=False)

    a, c = w.skus[0], w.skus[2]
    assert sorted(m.split(":")[0] for m in report.mismatches) == sorted(
        [f"{w.dc}/{a}", f"{w.dc}/{c}"]
    )
    assert "do not match" in report.render()


async def test_an_older_read_does_not_overwrite_a_newer_one(engine: AsyncEngine) -> None:
    """Projectors sharing the stream commit in any order: the part read last stays, whatever
    order the reads commit in, and a part read as gone is deleted only by a newer read."""
    hold = b'{"k":"h","st":"%s","exp":5,"ln":[[3,"s",1,1]],"store":"n"}'
    projector = Projector(_NoClient(), engine, cluster=False)

    async def commit(status: bytes, entry_id: str) -> None:
        raw = hold % status if status else b""
        part = _Part("h", "h3-x", 3, raw, -1, stream_position(entry_id), 1)
        await projector._project(keys.stream_key(0), _Read([], "0-0", entry_id, 1, True, [part]))

    async def row() -> tuple[str, str] | None:
        async with engine.connect() as db:
            rows = (await db.execute(sa.select(documents.c.status, documents.c.seen))).all()
        return tuple(rows[0]) if rows else None

    await commit(b"y", "20-0")
    await commit(b"p", "10-5")
    assert await row() == ("y", stream_position("20-0"))
    await commit(b"", "19-9")  # an older read that found it gone
    assert await row() == ("y", stream_position("20-0"))
    await commit(b"k", "20-0")  # the same moment again (a redelivered batch): upserts
    assert await row() == ("k", stream_position("20-0"))
    await commit(b"", "21-0")
    assert await row() is None


class _NoClient:
    def register_script(self, source: str) -> None:
        return None


# -- a cluster ---------------------------------------------------------------------------------


@pytest.fixture
def own_cluster(tmp_path: Path) -> Iterator[EmbeddedCluster]:
    cluster = EmbeddedCluster(tmp_path / "cluster", shards=3)
    cluster.start()
    try:
        yield cluster
    finally:
        cluster.stop()


@pytest.mark.cluster
async def test_rebuild_restores_a_cluster_exactly(
    own_cluster: EmbeddedCluster, engine: AsyncEngine
) -> None:
    clock = FakeClock()
    conn = await open_ledger(own_cluster.url, cluster=True, durability="strict", clock=clock)
    try:
        w = await workload(conn.ledger)
        assert all(keys.is_multi_part(r) for r in [w.reservations["kept"]])
        await catch_up(Projector(conn.client, engine, cluster=True, block_ms=0))
        before = await snapshot(conn, w)
        with pytest.raises(RebuildRefused):
            await rebuild(conn, engine, force=False)

        for primary in own_cluster.primaries:
            with primary.client() as direct:
                direct.flushall()
        report = await rebuild(conn, engine, force=False)

        after = await snapshot(conn, w)
        assert after == before
        assert report.mismatches == []
        due = before.reservations["due"]
        clock.set(due.expires_at_ms)
        assert (await conn.ledger.get_reservation(due.reservation_id)).status == "expired"
    finally:
        await conn.aclose()
