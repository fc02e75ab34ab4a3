"""A ledger script that fails on the server leaves nothing half-written, and the API says so.

Valkey does not roll back a Lua script that fails part-way: whatever it wrote before the failing
call stays. The ledger's scripts must therefore fail before their first write.

Wrong-typed keys: a key a script writes is replaced by a value of another type (a position hash
by a string, the event stream by a list, a pin set or a transfer document by a string or a
list, a request's idempotency claim by a list), chosen where the script reaches it after it has
written something else: the second line of a two-line release, commit, expiry, ship, receive,
transfer cancel and collect; the transfer of a hold being cancelled; the pin set of a pinned part
being committed; the event stream, which a batch appends to after all its operations wrote; the
claim of one request among a batch of others. The operation must fail, and the whole keyspace
(every key, its type, value and whether it has a time to live) must read exactly as before,
the planted key aside; other operations of the same batch run as usual. Once the key is put
back, the same operation id applies once.

Out of memory: with Valkey at its maxmemory limit (policy noeviction), the ledger script is
refused with OOM before it runs (it declares flags in a ``#!lua`` shebang and is not
``no-writes``, so the server judges it a write script up front), every operation of the batch
is refused and nothing is written; the API answers 503 problem+json; once memory is freed, the
same request applies once. Reads are answered all the same, by the ledger script's read-only
twin, as they would be after releasing what is due, and still write nothing.

Through the API a failed script is a problem+json (500 for a broken key, 503 for a full server)
with a title, answered at once, never a hang or a stack trace.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
import zlib
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import redis
from litestar.testing import AsyncTestClient

from omnistock.api.app import create_asgi
from omnistock.domain.movement import SkuQty
from omnistock.domain.stock import Line
from omnistock.reservations import keys
from omnistock.reservations.claims import RequestClaim
from omnistock.reservations.connect import LedgerConnection, open_ledger
from omnistock.reservations.events import parse_entry
from omnistock.reservations.redis_ledger import RedisLedger
from omnistock.reservations.runner import LedgerOutOfMemory, ScriptError
from omnistock.reservations.sweeper import Sweeper
from omnistock.runtime.valkey_server import EmbeddedValkey
from tests.api.conftest import auth, make_node, settings_for
from tests.integration.journal_support import wait_until

TTL_MS = 600_000
WINDOW_MS = 3_600_000
READY_MS = 60_000
# A failing request is answered at once; this bound only tells an answer from a hang.
ANSWER_WITHIN_S = 5.0


@pytest.fixture(scope="module")
def valkey(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedValkey]:
    server = EmbeddedValkey(tmp_path_factory.mktemp("script-failures"), durability="strict")
    server.start()
    try:
        yield server
        server.check()
    finally:
        server.stop()


class Clock:
    """The ledger's time in ms, moved by the test."""

    def __init__(self) -> None:
        self.now = int(time.time() * 1000)

    def __call__(self) -> int:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
async def conn(valkey: EmbeddedValkey, clock: Clock) -> AsyncIterator[LedgerConnection]:
    # One batch at a time, so that operations started together share one script call.
    opened = await open_ledger(valkey.url, clock=clock, max_in_flight=1)
    try:
        yield opened
    finally:
        await opened.aclose()


@pytest.fixture
def client(valkey: EmbeddedValkey) -> Iterator[redis.Redis]:
    with valkey.client() as c:
        yield c


# -- the keyspace, read whole -----------------------------------------------------------------


def keyspace(client: redis.Redis, *, leave_out: frozenset[bytes] = frozenset()) -> dict:
    """Every key: its type, its whole value and whether it has a time to live."""
    out: dict[bytes, tuple[bytes, Any, bool]] = {}
    for key in client.scan_iter(count=1000):
        if key in leave_out:
            continue
        kind = client.type(key)
        if kind == b"string":
            value: Any = client.get(key)
        elif kind == b"hash":
            value = sorted(client.hgetall(key).items())
        elif kind == b"zset":
            value = client.zrange(key, 0, -1, withscores=True)
        elif kind == b"list":
            value = client.lrange(key, 0, -1)
        elif kind == b"set":
            value = sorted(client.smembers(key))
        elif kind == b"stream":
            value = client.xrange(key)
        else:
            raise AssertionError(f"unexpected type {kind!r} of {key!r}")
        out[key] = (kind, value, client.pttl(key) >= 0)
    return out


def assert_unchanged(before: dict, after: dict) -> None:
    changed = sorted(k for k in before.keys() | after.keys() if before.get(k) != after.get(k))
    assert not changed, f"a failed script left writes behind in {changed}"


@dataclass
class Planted:
    """A key replaced by a value of another type; ``put_back`` restores the original."""

    client: redis.Redis
    key: bytes
    dump: bytes | None
    ttl_ms: int

    @classmethod
    def plant(cls, client: redis.Redis, key: str, kind: str = "string") -> Planted:
        raw = key.encode()
        dump = client.dump(raw)
        ttl = client.pttl(raw)
        client.delete(raw)
        if kind == "string":
            client.set(raw, "planted")
        elif kind == "list":
            client.rpush(raw, "planted")
        else:
            raise ValueError(kind)
        planted = cls(client, raw, dump, max(0, ttl))
        _planted.append(planted)
        return planted

    def put_back(self) -> None:
        if self.dump is _PUT_BACK:
            return
        self.client.delete(self.key)
        if self.dump is not None:
            self.client.restore(self.key, self.ttl_ms, self.dump)
        self.dump = _PUT_BACK


_PUT_BACK = b"\x00put back"
_planted: list[Planted] = []


@pytest.fixture(autouse=True)
def _put_back_what_was_planted() -> Iterator[None]:
    """A test that fails half-way must not leave a broken key to the next."""
    yield
    while _planted:
        _planted.pop().put_back()


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


def position_key(sku: str) -> str:
    return f"{keys.tag(keys.partition_of(sku))}:s:{sku}"


def doc_key(doc_id: str, kind: str) -> str:
    parsed = keys.parse_doc_id(doc_id, kind)
    assert parsed is not None
    return f"{keys.tag(parsed[0])}:d:{doc_id}"


STREAM = keys.event_streams(cluster=False)[0]


class Scene:
    """A warehouse and a store, SKUs ``a`` and ``b`` in distinct partitions, so that a line on
    ``b`` is a second key the script reaches after writing ``a``."""

    def __init__(self, ledger: RedisLedger) -> None:
        self.uid = uuid.uuid4().hex[:10]
        self.ledger = ledger
        self.wh, self.store = f"wh-{self.uid}", f"st-{self.uid}"
        self.a, self.b = _skus_in_distinct_partitions(self.uid, 2)
        self._n = 0

    def op(self, label: str) -> str:
        self._n += 1
        return f"{label}-{self.uid}-{self._n}"

    async def stock(self, node: str, qty: int) -> None:
        for sku in (self.a, self.b):
            await self.ledger.set_stock(self.op("set"), node, sku, qty)

    async def reserve(self, ttl_ms: int = TTL_MS) -> str:
        await self.stock(self.wh, 10)
        lines = [Line(self.wh, self.a, 2), Line(self.wh, self.b, 3)]
        return (await self.ledger.reserve(self.op("res"), lines, ttl_ms=ttl_ms)).reservation_id

    async def transfer(self) -> str:
        await self.stock(self.wh, 10)
        lines = [SkuQty(self.a, 3), SkuQty(self.b, 1)]
        return (
            await self.ledger.request_transfer(self.op("tr"), self.wh, self.store, lines)
        ).transfer_id

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

    async def quantities(self, node: str) -> list[tuple[int, int, int, int]]:
        out = []
        for sku in (self.a, self.b):
            p = await self.ledger.position(node, sku)
            assert p.reserved + p.held <= p.on_hand and p.available >= 0, p
            out.append((p.on_hand, p.reserved, p.held, p.inbound))
        return out


def events_of(client: redis.Redis, op_id: str) -> Counter:
    found: Counter = Counter()
    for entry_id, fields in client.xrange(STREAM):
        for event in parse_entry(entry_id, fields):
            if event.op_id == op_id:
                found[event.kind] += 1
    return found


async def fails_and_writes_nothing(
    client: redis.Redis, planted: Planted, call: Any, expected: type[Exception] = ScriptError
) -> Exception:
    """Runs ``call`` (a coroutine function), which must raise ``expected``, and checks that the
    keyspace, the planted key aside, is exactly as before."""
    before = keyspace(client, leave_out=frozenset({planted.key}))
    with pytest.raises(expected) as failed:
        await asyncio.wait_for(call(), ANSWER_WITHIN_S)
    assert_unchanged(before, keyspace(client, leave_out=frozenset({planted.key})))
    return failed.value


# -- a wrong-typed position key on the second line ------------------------------------------


async def test_release_with_a_broken_second_line_changes_nothing(
    conn: LedgerConnection, client: redis.Redis
) -> None:
    s = Scene(conn.ledger)
    rid = await s.reserve()
    planted = Planted.plant(client, position_key(s.b))
    op = s.op("release")
    error = await fails_and_writes_nothing(client, planted, lambda: s.ledger.release(op, rid))
    assert "WRONGTYPE" in str(error)
    planted.put_back()
    assert (await s.ledger.release(op, rid)).status == "released"
    assert await s.quantities(s.wh) == [(10, 0, 0, 0), (10, 0, 0, 0)]
    assert events_of(client, op) == Counter(release=2)


async def test_commit_with_a_broken_second_line_changes_nothing(
    conn: LedgerConnection, client: redis.Redis
) -> None:
    s = Scene(conn.ledger)
    rid = await s.reserve()
    planted = Planted.plant(client, position_key(s.b))
    op = s.op("commit")
    await fails_and_writes_nothing(client, planted, lambda: s.ledger.commit(op, rid))
    planted.put_back()
    assert (await s.ledger.commit(op, rid)).status == "committed"
    assert await s.quantities(s.wh) == [(8, 0, 0, 0), (7, 0, 0, 0)]
    assert events_of(client, op) == Counter(commit=2)


async def test_expiry_with_a_broken_second_line_changes_nothing(
    conn: LedgerConnection, client: redis.Redis, clock: Clock
) -> None:
    """Every script first expires what is due: with the expiring reservation's second line
    broken, the script that runs into it fails before writing anything."""
    s = Scene(conn.ledger)
    rid = await s.reserve(ttl_ms=1_000)
    clock.now += 2_000
    planted = Planted.plant(client, position_key(s.b))
    await fails_and_writes_nothing(client, planted, lambda: s.ledger.position(s.wh, s.a))
    planted.put_back()
    assert await s.quantities(s.wh) == [(10, 0, 0, 0), (10, 0, 0, 0)]
    assert (await s.ledger.get_reservation(rid)).status == "expired"
    assert events_of(client, f"expire:{rid}") == Counter(expire=2)


async def test_ship_with_a_broken_second_line_changes_nothing(
    conn: LedgerConnection, client: redis.Redis
) -> None:
    s = Scene(conn.ledger)
    tid = await s.transfer()
    planted = Planted.plant(client, position_key(s.b))
    op = s.op("ship")
    await fails_and_writes_nothing(client, planted, lambda: s.ledger.ship_transfer(op, tid))
    planted.put_back()
    assert (await s.ledger.ship_transfer(op, tid)).status == "in_transit"
    assert await s.quantities(s.wh) == [(7, 0, 0, 0), (9, 0, 0, 0)]
    assert await s.quantities(s.store) == [(0, 0, 0, 3), (0, 0, 0, 1)]
    assert events_of(client, op) == Counter(ship_out=2, ship_in=2)


async def test_receive_with_a_broken_second_line_changes_nothing(
    conn: LedgerConnection, client: redis.Redis
) -> None:
    s = Scene(conn.ledger)
    tid = await s.transfer()
    await s.ledger.ship_transfer(s.op("ship"), tid)
    planted = Planted.plant(client, position_key(s.b))
    op = s.op("receive")
    await fails_and_writes_nothing(client, planted, lambda: s.ledger.receive_transfer(op, tid))
    planted.put_back()
    assert (await s.ledger.receive_transfer(op, tid)).status == "received"
    assert await s.quantities(s.store) == [(3, 0, 0, 0), (1, 0, 0, 0)]
    assert events_of(client, op) == Counter(receive=2)


async def test_transfer_cancel_with_a_broken_second_line_changes_nothing(
    conn: LedgerConnection, client: redis.Redis
) -> None:
    s = Scene(conn.ledger)
    tid = await s.transfer()
    planted = Planted.plant(client, position_key(s.b))
    op = s.op("cancel")
    await fails_and_writes_nothing(client, planted, lambda: s.ledger.cancel_transfer(op, tid))
    planted.put_back()
    assert (await s.ledger.cancel_transfer(op, tid)).status == "cancelled"
    assert await s.quantities(s.wh) == [(10, 0, 0, 0), (10, 0, 0, 0)]
    assert events_of(client, op) == Counter(transfer_cancel=2)


async def test_collect_with_a_broken_second_line_changes_nothing(
    conn: LedgerConnection, client: redis.Redis
) -> None:
    s = Scene(conn.ledger)
    await s.stock(s.store, 5)
    hold = await s.hold()
    await s.ledger.ready_hold(s.op("ready"), hold.hold_id)
    planted = Planted.plant(client, position_key(s.b))
    op = s.op("collect")
    await fails_and_writes_nothing(client, planted, lambda: s.ledger.collect_hold(op, hold.hold_id))
    planted.put_back()
    assert (await s.ledger.collect_hold(op, hold.hold_id)).status == "collected"
    assert await s.quantities(s.store) == [(4, 0, 0, 0), (3, 0, 0, 0)]
    assert events_of(client, op) == Counter(collect=2)


# -- other keys a script reaches after its first write ---------------------------------------


async def test_cancelling_a_hold_whose_transfer_key_is_broken_changes_nothing(
    conn: LedgerConnection, client: redis.Redis
) -> None:
    """A hold supplied by a received transfer: cancelling it gives the held goods back and then
    reads its transfer. With the transfer's key of the wrong type, nothing is given back."""
    s = Scene(conn.ledger)
    await s.stock(s.wh, 10)
    hold = await s.hold(source_node_id=s.wh)
    await s.ledger.ship_transfer(s.op("ship"), hold.transfer_id)
    await s.ledger.receive_transfer(s.op("receive"), hold.transfer_id)
    assert await s.quantities(s.store) == [(1, 0, 1, 0), (2, 0, 2, 0)]
    planted = Planted.plant(client, doc_key(hold.transfer_id, "t"), kind="list")
    op = s.op("cancel")
    await fails_and_writes_nothing(client, planted, lambda: s.ledger.cancel_hold(op, hold.hold_id))
    planted.put_back()
    assert (await s.ledger.cancel_hold(op, hold.hold_id)).status == "cancelled"
    assert await s.quantities(s.store) == [(1, 0, 0, 0), (2, 0, 0, 0)]
    assert events_of(client, op) == Counter(hold_cancel=2)


async def test_committing_a_pinned_part_whose_pin_set_is_broken_changes_nothing(
    conn: LedgerConnection, client: redis.Redis
) -> None:
    """The first phase of a multi-partition commit pins a part (taken off the expiry clock);
    the commit then unpins it. With the pin set of the wrong type, the commit writes nothing."""
    s = Scene(conn.ledger)
    rid = await s.reserve()
    home = keys.home_of(rid)
    assert home is not None
    view = await s.ledger._call("pin", [keys.tag(home)], ["", rid, 60_000])
    assert b'"st":"p"' in view
    planted = Planted.plant(client, f"{keys.tag(home)}:pin")
    op = s.op("commit")
    await fails_and_writes_nothing(client, planted, lambda: s.ledger.commit(op, rid))
    planted.put_back()
    assert (await s.ledger.commit(op, rid)).status == "committed"
    assert await s.quantities(s.wh) == [(8, 0, 0, 0), (7, 0, 0, 0)]
    assert client.zscore(f"{keys.tag(home)}:pin", rid) is None


async def test_an_event_stream_of_the_wrong_type_fails_the_batch_before_any_write(
    conn: LedgerConnection, client: redis.Redis
) -> None:
    """Events are appended once per batch, after every operation in it has written: a stream
    of the wrong type must stop the operations before they write, not after."""
    scenes = [Scene(conn.ledger) for _ in range(4)]
    for s in scenes:
        await s.stock(s.wh, 10)
    planted = Planted.plant(client, STREAM, kind="list")
    ops = [s.op("res") for s in scenes]
    claims = [RequestClaim(f"fp-{op}") for op in ops]

    async def reserve_all() -> None:
        results = await asyncio.gather(
            *(
                s.ledger.reserve(op, [Line(s.wh, s.a, 1)], ttl_ms=TTL_MS, claim=claim)
                for s, op, claim in zip(scenes, ops, claims, strict=True)
            ),
            return_exceptions=True,
        )
        assert all(isinstance(r, ScriptError) for r in results), results
        raise results[0]

    await fails_and_writes_nothing(client, planted, reserve_all)
    planted.put_back()
    for s, op, claim in zip(scenes, ops, claims, strict=True):
        again = RequestClaim(claim.fingerprint)
        r = await s.ledger.reserve(op, [Line(s.wh, s.a, 1)], ttl_ms=TTL_MS, claim=again)
        assert r.status == "active"
        # The failed attempt left no claim either: this is the request's first application.
        assert again.replayed is False
        assert events_of(client, op) == Counter(reserve=1)
        assert (await s.ledger.position(s.wh, s.a)).reserved == 1


async def test_a_broken_claim_fails_its_own_request_and_no_other_in_the_batch(
    conn: LedgerConnection, client: redis.Redis
) -> None:
    scenes = [Scene(conn.ledger) for _ in range(5)]
    for s in scenes:
        await s.stock(s.wh, 10)
    ops = [s.op("res") for s in scenes]
    broken = 2
    planted = Planted.plant(client, f"{keys.tag(0)}:fp:{ops[broken]}", kind="list")
    before = keyspace(client, leave_out=frozenset({planted.key}))
    results = await asyncio.wait_for(
        asyncio.gather(
            *(
                s.ledger.reserve(
                    op, [Line(s.wh, s.a, 1)], ttl_ms=TTL_MS, claim=RequestClaim(f"fp-{op}")
                )
                for s, op in zip(scenes, ops, strict=True)
            ),
            return_exceptions=True,
        ),
        ANSWER_WITHIN_S,
    )
    assert isinstance(results[broken], ScriptError), results
    for i, (s, op) in enumerate(zip(scenes, ops, strict=True)):
        reserved = (await s.ledger.position(s.wh, s.a)).reserved
        if i == broken:
            assert reserved == 0 and events_of(client, op) == Counter()
        else:
            assert not isinstance(results[i], Exception), results[i]
            assert reserved == 1 and events_of(client, op) == Counter(reserve=1)
    # Besides the other requests' own writes, nothing of the broken one's.
    after = keyspace(client, leave_out=frozenset({planted.key}))
    broken_scene = scenes[broken]
    assert (
        after[position_key(broken_scene.a).encode()]
        == before[position_key(broken_scene.a).encode()]
    )
    home = keys.partition_of(broken_scene.a)
    rid = keys.reservation_id(ops[broken], home, single=True)
    assert f"{keys.tag(home)}:r:{rid}".encode() not in after
    planted.put_back()


# -- through the API ----------------------------------------------------------------------


@pytest.fixture
async def api(tmp_path: Path, valkey: EmbeddedValkey) -> AsyncIterator[AsyncTestClient]:
    settings = settings_for(tmp_path / "data", valkey.url, request_timeout_s=2.5)
    async with AsyncTestClient(app=create_asgi(settings), timeout=30) as c:
        yield c


def assert_clear_problem(response: Any, status: int) -> dict:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    problem = response.json()
    assert problem["status"] == status and problem["title"] and problem["detail"], problem
    assert "Traceback" not in response.text
    return problem


async def _api_scene(api: AsyncTestClient) -> tuple[str, str, str]:
    uid = uuid.uuid4().hex[:10]
    node = f"wh-{uid}"
    a, b = _skus_in_distinct_partitions(uid, 2)
    await make_node(api, node)
    for sku in (a, b):
        put = await api.put(f"/v1/stock/{node}/{sku}", json={"on_hand": 10}, headers=auth("admin"))
        assert put.status_code == 200, put.text
    return node, a, b


async def test_api_answers_a_broken_stream_with_a_problem_and_recovers(
    api: AsyncTestClient, client: redis.Redis
) -> None:
    node, a, b = await _api_scene(api)
    body = {"lines": [{"node_id": node, "sku": a, "qty": 2}, {"node_id": node, "sku": b, "qty": 1}]}
    headers = auth("oms", **{"Idempotency-Key": f"broken-{a}"})
    planted = Planted.plant(client, STREAM, kind="list")
    before = keyspace(client, leave_out=frozenset({planted.key}))
    started = time.monotonic()
    failed = await api.post("/v1/reservations", json=body, headers=headers)
    assert time.monotonic() - started < ANSWER_WITHIN_S
    assert_clear_problem(failed, 500)
    assert_unchanged(before, keyspace(client, leave_out=frozenset({planted.key})))
    planted.put_back()

    again = await api.post("/v1/reservations", json=body, headers=headers)
    assert again.status_code == 201, again.text
    assert again.headers.get("Idempotent-Replayed") is None
    for sku, qty in ((a, 2), (b, 1)):
        position = (await api.get(f"/v1/stock/{node}/{sku}", headers=auth("oms"))).json()
        assert (position["reserved"], position["available"]) == (qty, 10 - qty), position


async def test_api_answers_a_broken_release_with_a_problem_and_releases_once_after(
    api: AsyncTestClient, client: redis.Redis
) -> None:
    node, a, b = await _api_scene(api)
    made = await api.post(
        "/v1/reservations",
        json={
            "lines": [{"node_id": node, "sku": a, "qty": 2}, {"node_id": node, "sku": b, "qty": 3}]
        },
        headers=auth("oms", **{"Idempotency-Key": f"rel-{a}"}),
    )
    assert made.status_code == 201, made.text
    rid = made.json()["reservation_id"]
    planted = Planted.plant(client, position_key(b))
    before = keyspace(client, leave_out=frozenset({planted.key}))
    release_headers = auth("oms", **{"Idempotency-Key": f"release-{a}"})
    failed = await api.post(f"/v1/reservations/{rid}/release", headers=release_headers)
    assert_clear_problem(failed, 500)
    assert_unchanged(before, keyspace(client, leave_out=frozenset({planted.key})))
    planted.put_back()
    released = await api.post(f"/v1/reservations/{rid}/release", headers=release_headers)
    assert released.status_code == 200 and released.json()["status"] == "released", released.text
    for sku in (a, b):
        position = (await api.get(f"/v1/stock/{node}/{sku}", headers=auth("oms"))).json()
        assert (position["on_hand"], position["reserved"]) == (10, 0), position


# -- out of memory ----------------------------------------------------------------------------


@pytest.fixture
def full_valkey(tmp_path: Path) -> Iterator[EmbeddedValkey]:
    """A Valkey of its own (so that its memory limit touches no other test), policy
    noeviction."""
    server = EmbeddedValkey(
        tmp_path / "valkey-full", extra_config={"maxmemory-policy": "noeviction"}
    )
    server.start()
    try:
        yield server
    finally:
        server.stop()


def fill_to_the_limit(client: redis.Redis) -> list[bytes]:
    """Sets maxmemory just above what is used, writes until the server refuses with OOM, then
    lowers the limit below use, so that the server stays at its limit whatever small buffers
    come and go. Returns the filler keys."""
    used = int(client.info("memory")["used_memory"])
    client.config_set("maxmemory", used + 256 * 1024)
    filler: list[bytes] = []
    with pytest.raises(redis.exceptions.OutOfMemoryError):
        for n in range(100_000):
            key = f"filler:{n}".encode()
            client.set(key, b"x" * 4096)
            filler.append(key)
    used = int(client.info("memory")["used_memory"])
    client.config_set("maxmemory", used - 64 * 1024)
    with pytest.raises(redis.exceptions.OutOfMemoryError):
        client.set("probe", "x")
    return filler


def free_memory(client: redis.Redis, filler: list[bytes]) -> None:
    client.delete(*filler)
    client.config_set("maxmemory", 0)


async def test_at_maxmemory_writes_are_refused_before_any_write_and_recover(
    full_valkey: EmbeddedValkey,
) -> None:
    conn = await open_ledger(full_valkey.url, max_in_flight=1)
    try:
        s = Scene(conn.ledger)
        rid = await s.reserve()
        with full_valkey.client() as client:
            filler = fill_to_the_limit(client)
            before = keyspace(client)
            ops = [s.op("res"), s.op("res")]
            results = await asyncio.wait_for(
                asyncio.gather(
                    s.ledger.reserve(ops[0], [Line(s.wh, s.a, 1)], ttl_ms=TTL_MS),
                    s.ledger.release(ops[1], rid),
                    s.ledger.position(s.wh, s.b),
                    return_exceptions=True,
                ),
                ANSWER_WITHIN_S,
            )
            for result in results[:2]:
                assert isinstance(result, LedgerOutOfMemory), result
            # A read in the same batch is refused with it, then answered by the dry twin.
            assert (results[2].on_hand, results[2].reserved) == (10, 3), results[2]
            assert s.ledger.dry_read_fallbacks == 1
            assert_unchanged(before, keyspace(client))
            free_memory(client, filler)
        await s.ledger.reserve(ops[0], [Line(s.wh, s.a, 1)], ttl_ms=TTL_MS)
        assert (await s.ledger.release(ops[1], rid)).status == "released"
        assert await s.quantities(s.wh) == [(10, 1, 0, 0), (10, 0, 0, 0)]
    finally:
        await conn.aclose()


async def test_at_maxmemory_reads_release_what_is_due_without_writing_it(
    full_valkey: EmbeddedValkey, clock: Clock
) -> None:
    """Reads that would release an expired reservation and an expired hold (whose transfer is
    then cancelled) answer as if they had, write nothing, and read exactly as the reads that
    release them do once memory is freed."""
    conn = await open_ledger(full_valkey.url, clock=clock)
    try:
        s = Scene(conn.ledger)
        rid = await s.reserve(ttl_ms=TTL_MS)
        hold = await s.hold(source_node_id=s.wh)
        assert hold.transfer_id is not None
        assert await s.quantities(s.wh) == [(10, 3, 0, 0), (10, 5, 0, 0)]

        async def everything() -> list[Any]:
            return [
                await s.ledger.availability_many([s.a, s.b]),
                await s.ledger.position(s.wh, s.a),
                await s.ledger.get_reservation(rid),
                await s.ledger.get_hold(hold.hold_id),
                await s.ledger.get_transfer(hold.transfer_id),
            ]

        clock.now += TTL_MS + READY_MS + WINDOW_MS
        with full_valkey.client() as client:
            filler = fill_to_the_limit(client)
            before = keyspace(client)
            dry = await asyncio.wait_for(everything(), ANSWER_WITHIN_S)
            assert_unchanged(before, keyspace(client))
            assert s.ledger.dry_read_fallbacks == 5
            positions, wh_a, reservation, expired_hold, transfer = dry
            assert [(p.node_id, p.reserved) for p in positions[s.a]] == [(s.wh, 0)]
            assert [(p.node_id, p.reserved) for p in positions[s.b]] == [(s.wh, 0)]
            assert (wh_a.reserved, wh_a.available) == (0, 10)
            assert reservation.status == "expired"
            assert expired_hold.status == "expired"
            assert transfer.status == "cancelled"
            free_memory(client, filler)
        assert await everything() == dry
        assert s.ledger.dry_read_fallbacks == 5
    finally:
        await conn.aclose()


async def test_at_maxmemory_the_sweeper_says_so_once_keeps_trying_and_expires_once_freed(
    full_valkey: EmbeddedValkey, clock: Clock, caplog: pytest.LogCaptureFixture
) -> None:
    """Every sweep is refused while Valkey is full; the sweeper logs that once, not once per
    sweep, goes on sweeping, and on the first sweep after memory is freed releases what fell
    due meanwhile and says that a sweep succeeded again."""
    conn = await open_ledger(full_valkey.url, clock=clock)
    sweeper = Sweeper(conn.ledger, interval_s=0.005, failure_log_interval_s=3600)
    caplog.set_level(logging.WARNING, logger="omnistock.ledger.sweeper")

    def logged(start: str) -> list[str]:
        messages = [r.getMessage() for r in caplog.records]
        return [m for m in messages if m.startswith(start)]

    try:
        s = Scene(conn.ledger)
        rid = await s.reserve(ttl_ms=TTL_MS)
        clock.now += TTL_MS
        with full_valkey.client() as client:
            filler = fill_to_the_limit(client)
            sweeper.start()

            async def refused_often() -> bool:
                return sweeper.failures >= 50

            await wait_until(refused_often, timeout_s=30, what="50 refused sweeps")
            assert sweeper.expired_total == 0
            [failed] = logged("sweep failed")
            assert "1 in a row" in failed and "OOM" in failed, failed
            assert logged("sweep succeeded") == []
            free_memory(client, filler)

        async def expired() -> bool:
            return sweeper.expired_total >= 1

        await wait_until(expired, timeout_s=30, what="a sweep after memory was freed")
        failures = sweeper.failures
        assert logged("sweep succeeded") == [f"sweep succeeded after {failures} failures in a row"]
        assert len(logged("sweep failed")) == 1
        assert (await s.ledger.get_reservation(rid)).status == "expired"
        assert await s.quantities(s.wh) == [(10, 0, 0, 0), (10, 0, 0, 0)]
    finally:
        await sweeper.stop()
        await conn.aclose()


async def test_at_maxmemory_the_api_refuses_writes_with_503_answers_reads_and_recovers(
    tmp_path: Path, full_valkey: EmbeddedValkey
) -> None:
    settings = settings_for(tmp_path / "data", full_valkey.url, request_timeout_s=2.5)
    async with AsyncTestClient(app=create_asgi(settings), timeout=30) as api:
        node, a, _b = await _api_scene(api)
        body = {"lines": [{"node_id": node, "sku": a, "qty": 3}]}
        headers = auth("oms", **{"Idempotency-Key": f"oom-{a}"})
        with full_valkey.client() as client:
            filler = fill_to_the_limit(client)
            before = keyspace(client)
            started = time.monotonic()
            refused = await api.post("/v1/reservations", json=body, headers=headers)
            assert time.monotonic() - started < ANSWER_WITHIN_S
            problem = assert_clear_problem(refused, 503)
            assert "memory" in (problem["title"] + problem["detail"]).lower(), problem
            assert refused.headers.get("Retry-After")
            # The storefront still reads: on the ledger script's read-only twin.
            read = await api.get(f"/v1/availability/{a}", headers=auth("oms"))
            assert read.status_code == 200, read.text
            assert read.json()["available"] == 10, read.json()
            scraped = (await api.get("/metrics", headers=auth("storefront"))).text
            assert 'omnistock_ledger_outcomes_total{outcome="dry_read"} 1' in scraped
            assert_unchanged(before, keyspace(client))
            free_memory(client, filler)
        again = await api.post("/v1/reservations", json=body, headers=headers)
        assert again.status_code == 201, again.text
        assert again.headers.get("Idempotent-Replayed") is None
        position = (await api.get(f"/v1/stock/{node}/{a}", headers=auth("oms"))).json()
        assert (position["reserved"], position["available"]) == (3, 7), position
