"""A reply lost between Valkey and the ledger client: the operation still applies exactly once.

The ledger client reaches Valkey through a proxy (``tcp_proxy``) that lets every command
through to the server but loses the reply to the one that carries the operation's id: the
connection is closed at once (``close``) or left hanging until the client's socket timeout
(``stall``). The command ran on the server; the client only knows that it failed. It then tries
again with the same operation id, either inside the ledger library (``RedisLedger`` retries a
call that found Redis unavailable) or, with the library's retries turned off, as a caller would
after catching ``LedgerUnavailable``.

For reserve, release, commit, adjust, set_stock, hold placement (from the store's stock and
through a transfer), hold ready, collect and cancel, and transfer request, ship, receive (whole
and short) and cancel, the test then reads the real stores back, without the proxy: every
position changed by one application exactly, and the ledger's event stream holds exactly one
application's events under the operation's id. Each case also checks that its fault happened
(the proxy lost at least one reply).

Through the HTTP API (the ASGI app on the proxy), a reservation whose every reply is lost gets a
503 problem; retried after the network heals with the same Idempotency-Key, it gets 201 marked
as replayed, and the stock is reserved once.
"""

from __future__ import annotations

import uuid
import zlib
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import redis
from litestar.testing import AsyncTestClient

from omnistock.api.app import create_asgi
from omnistock.domain.movement import SkuQty
from omnistock.domain.stock import Adjustment, Line, Reason
from omnistock.reservations import keys
from omnistock.reservations.connect import LedgerConnection, open_ledger
from omnistock.reservations.events import parse_entry
from omnistock.reservations.redis_ledger import RedisLedger
from omnistock.reservations.runner import LedgerUnavailable
from omnistock.runtime.valkey_server import EmbeddedValkey
from tests.api.conftest import auth, make_node, settings_for
from tests.faults.tcp_proxy import Mode, ReplyDroppingProxy

SOCKET_TIMEOUT_S = 0.3
WINDOW_MS = 3_600_000
READY_MS = 60_000
TTL_MS = 600_000

Ledger = RedisLedger


@pytest.fixture(scope="module")
def valkey(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedValkey]:
    server = EmbeddedValkey(tmp_path_factory.mktemp("lost-replies"), durability="strict")
    server.start()
    try:
        yield server
        server.check()
    finally:
        server.stop()


@pytest.fixture(scope="module")
def proxy(valkey: EmbeddedValkey) -> Iterator[ReplyDroppingProxy]:
    with ReplyDroppingProxy(valkey.host, valkey.port) as running:
        yield running


@pytest.fixture
async def direct(valkey: EmbeddedValkey) -> AsyncIterator[LedgerConnection]:
    """A ledger straight on the server: sets the scene up and reads the outcome back."""
    conn = await open_ledger(valkey.url)
    try:
        yield conn
    finally:
        await conn.aclose()


@pytest.fixture
async def proxied(proxy: ReplyDroppingProxy) -> AsyncIterator[LedgerConnection]:
    """A ledger that reaches the server through the proxy."""
    proxy.clear()
    conn = await open_ledger(proxy.url, timeout_s=SOCKET_TIMEOUT_S)
    try:
        yield conn
    finally:
        proxy.clear()
        await conn.aclose()


# -- scenes -----------------------------------------------------------------------------------


def _skus_in_distinct_partitions(uid: str, count: int) -> list[str]:
    skus: list[str] = []
    seen: set[int] = set()
    n = 0
    while len(skus) < count:
        sku = f"s-{uid}-{n}"
        n += 1
        p = zlib.crc32(sku.encode()) % keys.PARTITIONS
        if p not in seen:
            seen.add(p)
            skus.append(sku)
    return skus


@dataclass
class Case:
    """The operation under test, under ``op_id``, and what one application of it leaves."""

    op_id: str
    run: Callable[[Ledger], Awaitable[Any]]
    # (node, sku) -> (on_hand, reserved, held, inbound) after one application
    positions: dict[tuple[str, str], tuple[int, int, int, int]]
    # the kinds of the events one application records, with their counts
    events: Counter = field(default_factory=Counter)
    check: Callable[[Any], None] = lambda _result: None


class Scene:
    """A warehouse and a store (pickup), two SKUs in distinct partitions."""

    def __init__(self, ledger: Ledger) -> None:
        uid = uuid.uuid4().hex[:10]
        self.ledger = ledger
        self.uid = uid
        self.wh = f"wh-{uid}"
        self.store = f"st-{uid}"
        self.a, self.b = _skus_in_distinct_partitions(uid, 2)
        self._n = 0

    def op(self, label: str) -> str:
        self._n += 1
        return f"{label}-{self.uid}-{self._n}"

    async def stock(self, node: str, a: int, b: int) -> None:
        await self.ledger.set_stock(self.op("set"), node, self.a, a)
        await self.ledger.set_stock(self.op("set"), node, self.b, b)

    async def hold(self, **kwargs: Any) -> Any:
        return await self.ledger.place_hold(
            self.op("hold"),
            self.store,
            [SkuQty(self.a, 1), SkuQty(self.b, 2)],
            customer_ref="c-1",
            pickup_window_ms=WINDOW_MS,
            ready_in_ms=READY_MS,
            **kwargs,
        )

    async def transfer(self) -> Any:
        return await self.ledger.request_transfer(
            self.op("tr"), self.wh, self.store, [SkuQty(self.a, 3), SkuQty(self.b, 1)]
        )


async def case_reserve(s: Scene) -> Case:
    await s.stock(s.wh, 10, 10)
    op = s.op("reserve")

    def check(r: Any) -> None:
        assert r.status == "active" and r.reservation_id == keys.reservation_id(
            op, keys.partition_of(s.a), single=True
        )

    return Case(
        op,
        lambda L: L.reserve(op, [Line(s.wh, s.a, 2), Line(s.wh, s.b, 3)], ttl_ms=TTL_MS),
        {(s.wh, s.a): (10, 2, 0, 0), (s.wh, s.b): (10, 3, 0, 0)},
        Counter(reserve=2),
        check,
    )


async def _reserved(s: Scene) -> str:
    await s.stock(s.wh, 10, 10)
    r = await s.ledger.reserve(
        s.op("reserve"), [Line(s.wh, s.a, 2), Line(s.wh, s.b, 3)], ttl_ms=TTL_MS
    )
    return r.reservation_id


async def case_release(s: Scene) -> Case:
    rid = await _reserved(s)
    op = s.op("release")
    return Case(
        op,
        lambda L: L.release(op, rid),
        {(s.wh, s.a): (10, 0, 0, 0), (s.wh, s.b): (10, 0, 0, 0)},
        Counter(release=2),
        lambda r: _is(r.status, "released"),
    )


async def case_commit(s: Scene) -> Case:
    rid = await _reserved(s)
    op = s.op("commit")
    return Case(
        op,
        lambda L: L.commit(op, rid),
        {(s.wh, s.a): (8, 0, 0, 0), (s.wh, s.b): (7, 0, 0, 0)},
        Counter(commit=2),
        lambda r: _is(r.status, "committed"),
    )


async def case_adjust(s: Scene) -> Case:
    await s.stock(s.wh, 10, 10)
    op = s.op("adjust")
    adjustments = [
        Adjustment(s.wh, s.a, 5, Reason("receipt")),
        Adjustment(s.wh, s.b, -2, Reason("damage")),
    ]
    return Case(
        op,
        lambda L: L.adjust(op, adjustments),
        {(s.wh, s.a): (15, 0, 0, 0), (s.wh, s.b): (8, 0, 0, 0)},
        Counter(receipt=1, damage=1),
        lambda r: _is([p.on_hand for p in r], [15, 8]),
    )


async def case_set_stock(s: Scene) -> Case:
    await s.stock(s.wh, 10, 10)
    op = s.op("set")
    return Case(
        op,
        lambda L: L.set_stock(op, s.wh, s.a, 4),
        {(s.wh, s.a): (4, 0, 0, 0), (s.wh, s.b): (10, 0, 0, 0)},
        Counter(set=1),
        lambda r: _is(r.on_hand, 4),
    )


async def case_hold_place(s: Scene) -> Case:
    await s.stock(s.store, 5, 5)
    op = s.op("hold")
    return Case(
        op,
        lambda L: L.place_hold(
            op,
            s.store,
            [SkuQty(s.a, 1), SkuQty(s.b, 2)],
            customer_ref="c-1",
            pickup_window_ms=WINDOW_MS,
            ready_in_ms=READY_MS,
        ),
        {(s.store, s.a): (5, 0, 1, 0), (s.store, s.b): (5, 0, 2, 0)},
        Counter(hold=2),
        lambda h: _is(h.status, "placed"),
    )


async def case_hold_place_from_source(s: Scene) -> Case:
    await s.stock(s.wh, 10, 10)
    op = s.op("hold")
    return Case(
        op,
        lambda L: L.place_hold(
            op,
            s.store,
            [SkuQty(s.a, 1), SkuQty(s.b, 2)],
            customer_ref="c-1",
            pickup_window_ms=WINDOW_MS,
            ready_in_ms=READY_MS,
            source_node_id=s.wh,
        ),
        {
            (s.wh, s.a): (10, 1, 0, 0),
            (s.wh, s.b): (10, 2, 0, 0),
            (s.store, s.a): (0, 0, 0, 0),
            (s.store, s.b): (0, 0, 0, 0),
        },
        Counter(transfer_reserve=2),
        lambda h: _is((h.status, h.transfer_id is not None), ("placed", True)),
    )


async def case_hold_ready(s: Scene) -> Case:
    await s.stock(s.store, 5, 5)
    hold = await s.hold()
    op = s.op("ready")
    return Case(
        op,
        lambda L: L.ready_hold(op, hold.hold_id),
        {(s.store, s.a): (5, 0, 1, 0), (s.store, s.b): (5, 0, 2, 0)},
        Counter(),
        lambda h: _is(h.status, "ready"),
    )


async def case_hold_collect(s: Scene) -> Case:
    await s.stock(s.store, 5, 5)
    hold = await s.hold()
    await s.ledger.ready_hold(s.op("ready"), hold.hold_id)
    op = s.op("collect")
    return Case(
        op,
        lambda L: L.collect_hold(op, hold.hold_id),
        {(s.store, s.a): (4, 0, 0, 0), (s.store, s.b): (3, 0, 0, 0)},
        Counter(collect=2),
        lambda h: _is(h.status, "collected"),
    )


async def case_hold_cancel(s: Scene) -> Case:
    await s.stock(s.store, 5, 5)
    hold = await s.hold()
    op = s.op("cancel")
    return Case(
        op,
        lambda L: L.cancel_hold(op, hold.hold_id),
        {(s.store, s.a): (5, 0, 0, 0), (s.store, s.b): (5, 0, 0, 0)},
        Counter(hold_cancel=2),
        lambda h: _is(h.status, "cancelled"),
    )


async def case_transfer_request(s: Scene) -> Case:
    await s.stock(s.wh, 10, 10)
    op = s.op("tr")
    return Case(
        op,
        lambda L: L.request_transfer(op, s.wh, s.store, [SkuQty(s.a, 3), SkuQty(s.b, 1)]),
        {(s.wh, s.a): (10, 3, 0, 0), (s.wh, s.b): (10, 1, 0, 0)},
        Counter(transfer_reserve=2),
        lambda t: _is(t.status, "requested"),
    )


async def case_transfer_ship(s: Scene) -> Case:
    await s.stock(s.wh, 10, 10)
    transfer = await s.transfer()
    op = s.op("ship")
    return Case(
        op,
        lambda L: L.ship_transfer(op, transfer.transfer_id),
        {
            (s.wh, s.a): (7, 0, 0, 0),
            (s.wh, s.b): (9, 0, 0, 0),
            (s.store, s.a): (0, 0, 0, 3),
            (s.store, s.b): (0, 0, 0, 1),
        },
        Counter(ship_out=2, ship_in=2),
        lambda t: _is(t.status, "in_transit"),
    )


async def _shipped(s: Scene) -> str:
    await s.stock(s.wh, 10, 10)
    transfer = await s.transfer()
    await s.ledger.ship_transfer(s.op("ship"), transfer.transfer_id)
    return transfer.transfer_id


async def case_transfer_receive(s: Scene) -> Case:
    tid = await _shipped(s)
    op = s.op("receive")
    return Case(
        op,
        lambda L: L.receive_transfer(op, tid),
        {
            (s.wh, s.a): (7, 0, 0, 0),
            (s.wh, s.b): (9, 0, 0, 0),
            (s.store, s.a): (3, 0, 0, 0),
            (s.store, s.b): (1, 0, 0, 0),
        },
        Counter(receive=2),
        lambda t: _is(t.status, "received"),
    )


async def case_transfer_receive_short(s: Scene) -> Case:
    tid = await _shipped(s)
    op = s.op("receive")
    return Case(
        op,
        lambda L: L.receive_transfer(op, tid, [SkuQty(s.a, 2), SkuQty(s.b, 1)]),
        {(s.store, s.a): (2, 0, 0, 0), (s.store, s.b): (1, 0, 0, 0)},
        Counter(receive=2, loss=1),
        lambda t: _is([line.received for line in t.lines], [2, 1]),
    )


async def case_transfer_cancel(s: Scene) -> Case:
    await s.stock(s.wh, 10, 10)
    transfer = await s.transfer()
    op = s.op("cancel")
    return Case(
        op,
        lambda L: L.cancel_transfer(op, transfer.transfer_id),
        {(s.wh, s.a): (10, 0, 0, 0), (s.wh, s.b): (10, 0, 0, 0)},
        Counter(transfer_cancel=2),
        lambda t: _is(t.status, "cancelled"),
    )


def _is(actual: Any, expected: Any) -> None:
    assert actual == expected, (actual, expected)


CASES: dict[str, Callable[[Scene], Awaitable[Case]]] = {
    "reserve": case_reserve,
    "release": case_release,
    "commit": case_commit,
    "adjust": case_adjust,
    "set_stock": case_set_stock,
    "hold_place": case_hold_place,
    "hold_place_from_source": case_hold_place_from_source,
    "hold_ready": case_hold_ready,
    "hold_collect": case_hold_collect,
    "hold_cancel": case_hold_cancel,
    "transfer_request": case_transfer_request,
    "transfer_ship": case_transfer_ship,
    "transfer_receive": case_transfer_receive,
    "transfer_receive_short": case_transfer_receive_short,
    "transfer_cancel": case_transfer_cancel,
}


# -- reading the outcome back -----------------------------------------------------------------


def events_of(server: EmbeddedValkey, op_id: str) -> Counter:
    """The kinds of the events the ledger recorded under ``op_id``, from its event stream."""
    found: Counter = Counter()
    with server.client() as client:
        for stream in keys.event_streams(cluster=False):
            for entry_id, fields in client.xrange(stream):
                for event in parse_entry(entry_id, fields):
                    if event.op_id == op_id:
                        found[event.kind] += 1
    return found


async def assert_applied_once(
    case: Case, result: Any, direct: LedgerConnection, server: EmbeddedValkey
) -> None:
    case.check(result)
    for (node, sku), expected in case.positions.items():
        p = await direct.ledger.position(node, sku)
        assert (p.on_hand, p.reserved, p.held, p.inbound) == expected, (node, sku, p)
        assert p.reserved + p.held <= p.on_hand and p.available >= 0, p
    assert events_of(server, case.op_id) == case.events


# -- the tests --------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["close", "stall"])
@pytest.mark.parametrize("name", list(CASES))
async def test_the_ledger_retries_a_lost_reply_and_applies_once(
    name: str,
    mode: Mode,
    proxy: ReplyDroppingProxy,
    proxied: LedgerConnection,
    direct: LedgerConnection,
    valkey: EmbeddedValkey,
) -> None:
    case = await CASES[name](Scene(direct.ledger))
    rule = proxy.drop_replies(case.op_id, times=1, mode=mode)
    result = await case.run(proxied.ledger)
    assert rule.hits == 1, "the reply was not lost: the test proved nothing"
    await assert_applied_once(case, result, direct, valkey)


@pytest.mark.parametrize("name", list(CASES))
async def test_a_caller_retrying_with_the_same_operation_id_applies_once(
    name: str,
    proxy: ReplyDroppingProxy,
    proxied: LedgerConnection,
    direct: LedgerConnection,
    valkey: EmbeddedValkey,
) -> None:
    """No retries inside the library: the caller sees LedgerUnavailable (the outcome is
    unknown to it) and repeats the call with the same operation id."""
    no_retries = RedisLedger(proxied.runner, cluster=False, attempts=1)
    case = await CASES[name](Scene(direct.ledger))
    rule = proxy.drop_replies(case.op_id, times=None, mode="close")
    with pytest.raises(LedgerUnavailable):
        await case.run(no_retries)
    with pytest.raises(LedgerUnavailable):  # still cut off: the retry fails the same way
        await case.run(no_retries)
    assert rule.hits == 2
    proxy.clear()
    result = await case.run(no_retries)
    await assert_applied_once(case, result, direct, valkey)


# -- through the HTTP API ---------------------------------------------------------------------


@pytest.fixture
async def api(
    tmp_path: Path, proxy: ReplyDroppingProxy, valkey: EmbeddedValkey
) -> AsyncIterator[AsyncTestClient]:
    proxy.clear()
    settings = settings_for(
        tmp_path / "data", proxy.url, request_timeout_s=2.0, redis_timeout_s=SOCKET_TIMEOUT_S
    )
    async with AsyncTestClient(app=create_asgi(settings), timeout=30) as client:
        yield client
    proxy.clear()


@pytest.mark.parametrize("mode", ["close", "stall"])
async def test_http_reserve_whose_replies_are_lost_answers_503_and_a_retry_reserves_once(
    mode: Mode, api: AsyncTestClient, proxy: ReplyDroppingProxy, valkey: EmbeddedValkey
) -> None:
    uid = uuid.uuid4().hex[:10]
    node, sku = f"wh-{uid}", f"s-{uid}"
    await make_node(api, node)
    stocked = await api.put(f"/v1/stock/{node}/{sku}", json={"on_hand": 10}, headers=auth("admin"))
    assert stocked.status_code == 200, stocked.text
    body = {"lines": [{"node_id": node, "sku": sku, "qty": 4}]}
    headers = auth("oms", **{"Idempotency-Key": f"lost-{uid}"})

    # Every reply to a script call that names the SKU is lost, however often it is tried.
    rule = proxy.drop_replies(sku, times=None, mode=mode)
    cut = await api.post("/v1/reservations", json=body, headers=headers)
    assert cut.status_code == 503, cut.text
    assert cut.headers["content-type"].startswith("application/problem+json")
    assert cut.json()["title"] and cut.json()["status"] == 503
    assert rule.hits >= 1
    proxy.clear()

    again = await api.post("/v1/reservations", json=body, headers=headers)
    assert again.status_code == 201, again.text
    # The first attempt did reserve on the server: the retry is its replay.
    assert again.headers.get("Idempotent-Replayed") == "true"
    rid = again.json()["reservation_id"]
    seen = await api.get(f"/v1/reservations/{rid}", headers=auth("oms"))
    assert seen.status_code == 200 and seen.json()["status"] == "active", seen.text
    position = await api.get(f"/v1/stock/{node}/{sku}", headers=auth("oms"))
    assert (position.json()["reserved"], position.json()["available"]) == (4, 6), position.text
    with redis.Redis(host=valkey.host, port=valkey.port) as client:
        reserve_events = [
            e
            for stream in keys.event_streams(cluster=False)
            for entry_id, fields in client.xrange(stream)
            for e in parse_entry(entry_id, fields)
            if e.sku == sku and e.kind == "reserve"
        ]
    assert len(reserve_events) == 1, reserve_events
