"""GET /v1/availability/stream through the app as served (edge layer included), on real Valkey
servers: the first events, each kind of change, what is not sent, refusals before the stream
starts, disconnects, slow clients, keep-alives, a Valkey restart and a 3-shard cluster.

Test clients read a response whole, and a stream never ends, so the stream is read by calling
the ASGI app directly, in the test's own event loop, where the app's lifespan runs too; ordinary
requests go through httpx's ASGI transport on the same app. A real ``omnistock serve`` is
tests/integration/test_live_availability.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from omnistock.api import live as live_module
from omnistock.api.app import create_asgi
from omnistock.api.live import LiveAvailability, Snapshot, Subscription
from omnistock.reservations import keys
from omnistock.runtime.valkey_cluster import EmbeddedCluster
from omnistock.runtime.valkey_server import EmbeddedValkey
from tests.api.conftest import NODE_BODY, Ids, auth, settings_for
from tests.api.support import assert_problem, idem, line

PATH = "/v1/availability/stream"
WITHIN_S = 1.0
"""The contract: a change shows on the stream within a second of the ledger event."""


class LiveStream:
    """One stream request to the app: its status, headers and events as they arrive."""

    def __init__(self, app: Any, query: str, headers: dict[str, str], path: str = PATH) -> None:
        self.app = app
        self.path = path
        self.query = query
        self.headers = headers
        self.status: int | None = None
        self.response_headers: dict[str, str] = {}
        self._messages: asyncio.Queue[dict] = asyncio.Queue()
        self._gone = asyncio.Event()
        self._requested = False
        self._buffer = b""
        self._blocks: list[bytes] = []
        self.send_gate: asyncio.Event | None = None  # set: the client reads; clear: it stalls
        self.task: asyncio.Task | None = None

    async def _receive(self) -> dict:
        if not self._requested:
            self._requested = True
            return {"type": "http.request", "body": b"", "more_body": False}
        await self._gone.wait()
        return {"type": "http.disconnect"}

    async def _send(self, message: dict) -> None:
        if self.send_gate is not None and message["type"] == "http.response.body":
            await self.send_gate.wait()
        await self._messages.put(message)

    async def start(self) -> LiveStream:
        scope = {
            "type": "http",
            "asgi": {"version": "3.0", "spec_version": "2.3"},
            "http_version": "1.1",
            "method": "GET",
            "scheme": "http",
            "path": self.path,
            "raw_path": self.path.encode(),
            "query_string": self.query.encode(),
            "root_path": "",
            "headers": [(k.lower().encode(), v.encode()) for k, v in self.headers.items()],
            "client": ("127.0.0.1", 50000),
            "server": ("test", 80),
            "state": {},
        }
        self.task = asyncio.create_task(self.app(scope, self._receive, self._send))
        start = await asyncio.wait_for(self._messages.get(), 10)
        assert start["type"] == "http.response.start", start
        self.status = start["status"]
        self.response_headers = {k.decode(): v.decode() for k, v in start["headers"]}
        return self

    async def body(self) -> bytes:
        """The whole body of an answer that is not a stream."""
        await asyncio.wait_for(self.task, 10)  # type: ignore[arg-type]
        out = b""
        while not self._messages.empty():
            out += self._messages.get_nowait().get("body", b"")
        return out

    async def next_block(self, within: float) -> bytes | None:
        """The next event or comment (without its blank line); None when the stream ended."""
        deadline = time.monotonic() + within
        while not self._blocks:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"nothing on the stream within {within} s")
            message = await asyncio.wait_for(self._messages.get(), left)
            self._buffer += message.get("body", b"")
            *blocks, self._buffer = self._buffer.split(b"\n\n")
            self._blocks += blocks
            if not message.get("more_body") and not self._blocks:
                return None
        return self._blocks.pop(0)

    async def next_event(self, within: float = 5.0) -> dict[str, Any]:
        """The data of the next availability event, keep-alives skipped."""
        while True:
            block = await self.next_block(within)
            assert block is not None, "the stream ended"
            if block.startswith(b":"):
                continue
            head, data = block.split(b"\n")
            assert head == b"event: availability", block
            assert data.startswith(b"data: "), block
            return json.loads(data[len(b"data: ") :])

    async def disconnect(self) -> None:
        self._gone.set()
        if self.task is not None:
            await asyncio.wait_for(self.task, 10)


class LiveApp:
    """The app as served with its lifespan running in this event loop."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self._lifespan: asyncio.Task | None = None
        self._to_app: asyncio.Queue[dict] = asyncio.Queue()
        self._from_app: asyncio.Queue[dict] = asyncio.Queue()
        self.http: httpx.AsyncClient | None = None
        self.streams: list[LiveStream] = []

    @property
    def live(self) -> LiveAvailability:
        return self.app.app.state.services.live

    async def __aenter__(self) -> LiveApp:
        scope = {"type": "lifespan", "asgi": {"version": "3.0"}, "state": {}}
        self._lifespan = asyncio.create_task(self.app(scope, self._to_app.get, self._from_app.put))
        await self._to_app.put({"type": "lifespan.startup"})
        reply = await asyncio.wait_for(self._from_app.get(), 60)
        assert reply["type"] == "lifespan.startup.complete", reply
        self.http = httpx.AsyncClient(
            transport=httpx.ASGITransport(app=self.app), base_url="http://test", timeout=30
        )
        return self

    async def __aexit__(self, *exc: object) -> None:
        for stream in self.streams:
            with contextlib.suppress(Exception):
                await stream.disconnect()
        if self.http is not None:
            await self.http.aclose()
        await self._to_app.put({"type": "lifespan.shutdown"})
        reply = await asyncio.wait_for(self._from_app.get(), 30)
        assert reply["type"] == "lifespan.shutdown.complete", reply
        await asyncio.wait_for(self._lifespan, 10)  # type: ignore[arg-type]

    async def stream(
        self, skus: list[str] | str, role: str | None = "storefront", path: str = PATH
    ) -> LiveStream:
        query = skus if isinstance(skus, str) else "skus=" + ",".join(skus)
        stream = LiveStream(self.app, query, auth(role) if role else {}, path)
        self.streams.append(stream)
        return await stream.start()

    async def availability(self, sku: str) -> dict[str, Any]:
        response = await self.http.get(f"/v1/availability/{sku}", headers=auth("storefront"))  # type: ignore[union-attr]
        assert response.status_code == 200, response.text
        return response.json()

    async def node(self, node_id: str, **fields: Any) -> None:
        response = await self.http.put(  # type: ignore[union-attr]
            f"/v1/nodes/{node_id}", json={**NODE_BODY, **fields}, headers=auth("admin")
        )
        assert response.status_code in (200, 201), response.text

    async def stock(self, node_id: str, sku: str, on_hand: int, **fields: Any) -> None:
        response = await self.http.put(  # type: ignore[union-attr]
            f"/v1/stock/{node_id}/{sku}", json={"on_hand": on_hand, **fields}, headers=auth("admin")
        )
        assert response.status_code == 200, response.text

    async def sale(self, ids: Ids, node_id: str, sku: str, qty: int = 1) -> float:
        """A till sale; returns the moment it was acknowledged."""
        response = await self.http.post(  # type: ignore[union-attr]
            "/v1/stock/adjustments",
            json={
                "adjustments": [{"node_id": node_id, "sku": sku, "delta": -qty, "reason": "sale"}]
            },
            headers=idem(ids.key()),
        )
        acked = time.monotonic()
        assert response.status_code == 200, response.text
        return acked

    async def post(self, path: str, body: dict[str, Any] | None, key: str) -> dict[str, Any]:
        response = await self.http.post(path, json=body, headers=idem(key))  # type: ignore[union-attr]
        assert response.status_code in (200, 201), response.text
        return response.json()


@contextlib.asynccontextmanager
async def live_app(data_dir: Path, redis_url: str, **settings: Any) -> AsyncIterator[LiveApp]:
    async with LiveApp(create_asgi(settings_for(data_dir, redis_url, **settings))) as app:
        yield app


@pytest.fixture
async def app(tmp_path: Path, valkey_server: EmbeddedValkey) -> AsyncIterator[LiveApp]:
    async with live_app(tmp_path, valkey_server.url) as running:
        yield running


async def stocked(app: LiveApp, ids: Ids, **stock: int) -> tuple[str, list[str]]:
    """A warehouse holding ``stock`` of fresh SKUs (keyword order)."""
    node = ids.node("wh")
    await app.node(node)
    skus = []
    for label, on_hand in stock.items():
        sku = ids.sku(label)
        await app.stock(node, sku, on_hand)
        skus.append(sku)
    return node, skus


async def wait_for(condition: Any, within: float = 5.0) -> None:
    deadline = time.monotonic() + within
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.01)


# -- the first events and each kind of change ----------------------------------------------------


async def test_first_events_carry_each_skus_current_availability(app: LiveApp, ids: Ids) -> None:
    _node, (a,) = await stocked(app, ids, a=7)
    other = ids.node("store")
    await app.node(other, kind="store", pickup=True)
    await app.stock(other, a, 3)
    unknown = ids.sku("nothing")
    stream = await app.stream([a, unknown, a])
    assert stream.status == 200
    assert stream.response_headers["content-type"].startswith("text/event-stream")
    assert stream.response_headers["cache-control"] == "no-cache"
    # One event per SKU (a SKU named twice counts once), in the order given, each exactly the
    # body of GET /v1/availability/{sku}.
    assert await stream.next_event() == await app.availability(a)
    assert await stream.next_event() == await app.availability(unknown)
    first = await app.availability(a)
    assert first["available"] == 10 and len(first["nodes"]) == 2
    assert (await app.availability(unknown)) == {"sku": unknown, "available": 0, "nodes": []}


async def test_a_till_sale_shows_within_a_second_of_its_acknowledgement(
    app: LiveApp, ids: Ids
) -> None:
    node, (a, b) = await stocked(app, ids, a=5, b=9)
    stream = await app.stream([a, b])
    await stream.next_event()
    await stream.next_event()
    latencies = []
    for sku, left in ((a, 4), (b, 8), (a, 3)):
        acked = await app.sale(ids, node, sku)
        event = await stream.next_event(within=WITHIN_S + 1)
        latencies.append(time.monotonic() - acked)
        assert event == {
            "sku": sku,
            "available": left,
            "nodes": [{"node_id": node, "available": left}],
        }
    print(f"ack->event ms (in process): {[round(s * 1000, 1) for s in latencies]}")
    assert max(latencies) < WITHIN_S, latencies


async def test_reserve_release_commit_and_hold_each_show_their_figures(
    app: LiveApp, ids: Ids
) -> None:
    store = ids.node("store")
    await app.node(store, kind="store", pickup=True)
    a = ids.sku("a")
    await app.stock(store, a, 10)
    stream = await app.stream([a])
    assert (await stream.next_event())["available"] == 10

    made = await app.post("/v1/reservations", {"lines": [line(store, a, 3)]}, ids.key())
    assert (await stream.next_event())["available"] == 7
    await app.post(f"/v1/reservations/{made['reservation_id']}/release", None, ids.key())
    assert (await stream.next_event())["available"] == 10

    made = await app.post("/v1/reservations", {"lines": [line(store, a, 2)]}, ids.key())
    assert (await stream.next_event())["available"] == 8
    # A commit takes on_hand and reserved down together: available stays 8, nothing is sent.
    await app.post(f"/v1/reservations/{made['reservation_id']}/commit", None, ids.key())
    hold = await app.post(
        "/v1/holds",
        {"store_id": store, "lines": [{"sku": a, "qty": 5}], "customer_ref": "c-1"},
        ids.key(),
    )
    assert await stream.next_event() == {
        "sku": a,
        "available": 3,
        "nodes": [{"node_id": store, "available": 3}],
    }
    await app.post(f"/v1/holds/{hold['hold_id']}/cancel", None, ids.key())
    assert (await stream.next_event())["available"] == 8
    assert await app.availability(a) == {
        "sku": a,
        "available": 8,
        "nodes": [{"node_id": store, "available": 8}],
    }


async def test_an_expiry_shows_once_the_sweeper_releases_it(
    tmp_path: Path, valkey_server: EmbeddedValkey, ids: Ids
) -> None:
    # The sweeper at its default interval, as served (the API fixtures turn it off).
    async with live_app(tmp_path, valkey_server.url, sweep_interval_ms=1000) as app:
        node, (a,) = await stocked(app, ids, a=4)
        stream = await app.stream([a])
        assert (await stream.next_event())["available"] == 4
        made = await app.post(
            "/v1/reservations", {"lines": [line(node, a, 3)], "ttl_s": 1}, ids.key()
        )
        assert (await stream.next_event())["available"] == 1
        expires = _epoch(made["expires_at"])
        event = await stream.next_event(within=5)
        late = time.time() - expires
        print(f"expiry shown {late * 1000:.0f} ms after expires_at (sweeper every 1 s)")
        assert event["available"] == 4
        # Released by the sweeper within its interval, then sent within the stream's second.
        assert late < 1.0 + WITHIN_S, late


def _epoch(timestamp: str) -> float:
    from datetime import datetime

    return datetime.fromisoformat(timestamp.replace("Z", "+00:00")).timestamp()


# -- what is not sent ----------------------------------------------------------------------------


async def test_an_unrelated_sku_sends_nothing(app: LiveApp, ids: Ids) -> None:
    node, (watched, unrelated) = await stocked(app, ids, watched=5, unrelated=50)
    stream = await app.stream([watched])
    await stream.next_event()
    for _ in range(5):
        await app.sale(ids, node, unrelated)
    await app.sale(ids, node, watched)
    # Events arrive in order: had the unrelated sales sent anything, it would come first.
    assert (await stream.next_event())["sku"] == watched


async def test_a_change_that_leaves_the_figures_as_they_were_sends_nothing(
    app: LiveApp, ids: Ids
) -> None:
    node, (a,) = await stocked(app, ids, a=5)
    stream = await app.stream([a])
    await stream.next_event()
    # Counting the same quantity again, and moving safety stock and on_hand together, are
    # ledger events that leave what is available unchanged.
    await app.stock(node, a, 5)
    await app.stock(node, a, 6, safety_stock=1)
    await app.sale(ids, node, a)
    assert (await stream.next_event())["available"] == 4


async def test_a_burst_of_changes_is_read_together_and_ends_on_the_latest_figures(
    app: LiveApp, ids: Ids
) -> None:
    node, (a,) = await stocked(app, ids, a=100)
    stream = await app.stream([a])
    await stream.next_event()
    reads_before = app.live.reads
    started = time.monotonic()
    await asyncio.gather(*(app.sale(ids, node, a) for _ in range(40)))
    elapsed = time.monotonic() - started
    seen = []
    while not seen or seen[-1] != 60:
        seen.append((await stream.next_event(within=WITHIN_S + 1))["available"])
    reads = app.live.reads - reads_before
    print(f"40 sales in {elapsed * 1000:.0f} ms: {len(seen)} events, {reads} reads")
    assert seen == sorted(seen, reverse=True), seen  # never an older figure after a newer one
    assert len(seen) <= 40
    # At most one read per coalescing interval, plus the one that starts the burst.
    assert reads <= (elapsed + WITHIN_S) / live_module.COALESCE_S + 2, reads


# -- refusals before the stream starts -----------------------------------------------------------


@pytest.mark.parametrize(
    "query",
    [
        "",
        "skus=",
        "skus=a,,b",
        "skus=a,",
        "skus=bad%20sku",
        "skus=" + "x" * 65,
        "skus=" + ",".join(f"s{i}" for i in range(101)),
    ],
    ids=["missing", "empty", "empty-item", "trailing-comma", "space", "too-long", "101-skus"],
)
async def test_bad_skus_are_422_naming_skus(app: LiveApp, query: str) -> None:
    stream = await app.stream(query)
    assert stream.status == 422
    problem = json.loads(await stream.body())
    assert problem["field"] == "skus" and problem["status"] == 422, problem
    assert app.live.streams == 0


async def test_an_unknown_query_parameter_is_422_naming_it(app: LiveApp) -> None:
    stream = await app.stream("skus=a&near=1,2")
    assert stream.status == 422
    assert json.loads(await stream.body())["field"] == "near"


async def test_a_hundred_skus_are_accepted(app: LiveApp, ids: Ids) -> None:
    skus = [ids.sku() for _ in range(100)]
    stream = await app.stream(skus)
    assert stream.status == 200
    assert [(await stream.next_event())["sku"] for _ in skus] == skus


async def test_no_key_or_a_wrong_key_is_401(app: LiveApp) -> None:
    for headers in ({}, {"Authorization": "Bearer not-a-key-of-this-service"}):
        response = await app.http.get(PATH, params={"skus": "a"}, headers=headers)  # type: ignore[union-attr]
        assert_problem(response, 401)
    assert app.live.streams == 0


async def test_the_document_describes_the_stream_and_its_refusals(app: LiveApp) -> None:
    document = (await app.http.get("/schema/openapi.json")).json()  # type: ignore[union-attr]
    op = document["paths"][PATH]["get"]
    assert op["operationId"] == "streamAvailability" and op["summary"]
    assert set(op["responses"]) == {"200", "401", "422", "503"}
    assert list(op["responses"]["200"]["content"]) == ["text/event-stream"]
    (skus,) = [p for p in op["parameters"] if p["name"] == "skus"]
    assert skus["in"] == "query" and skus["required"] is True
    assert op["security"]


# -- the subscription's life ---------------------------------------------------------------------


async def test_a_disconnect_gives_the_subscription_back(app: LiveApp, ids: Ids) -> None:
    _node, (a,) = await stocked(app, ids, a=5)
    streams = [await app.stream([a]) for _ in range(3)]
    assert app.live.streams == 3
    metrics = await app.http.get("/metrics", headers=auth("storefront"))  # type: ignore[union-attr]
    assert "\nomnistock_live_streams 3\n" in metrics.text
    for stream in streams:
        await stream.disconnect()
    assert app.live.streams == 0
    metrics = await app.http.get("/metrics", headers=auth("storefront"))  # type: ignore[union-attr]
    assert "\nomnistock_live_streams 0\n" in metrics.text
    # The request was counted when it started, its time being the time to its first byte.
    assert 'route="/v1/availability/stream",method="GET",status="200"} 3' in metrics.text


async def test_a_slow_client_holds_only_the_latest_figures_and_others_go_on(
    app: LiveApp, ids: Ids
) -> None:
    node, (a, b) = await stocked(app, ids, a=50, b=50)
    slow = await app.stream([a, b])
    await slow.next_event()
    await slow.next_event()
    slow.send_gate = asyncio.Event()  # the slow client stops reading
    fast = await app.stream([a])
    await fast.next_event()
    for left in range(49, 29, -1):
        await app.sale(ids, node, a)
        await app.sale(ids, node, b)
        assert (await fast.next_event(within=WITHIN_S + 1))["available"] == left
    (subscription,) = [s for s in app.live._subscriptions if set(s.skus) == {a, b}]
    assert len(subscription._pending) <= 2  # one per SKU at most, never a backlog
    slow.send_gate.set()
    # What the slow client gets next: one stalled chunk, then the latest figures of each SKU.
    latest: dict[str, int] = {}
    while latest != {a: 30, b: 30}:
        event = await slow.next_event(within=WITHIN_S + 1)
        latest[event["sku"]] = event["available"]


def test_a_subscription_keeps_one_pending_figure_per_sku_and_drops_older_ones() -> None:
    sub = Subscription(["a"])
    sub.prime("a", Snapshot(5, b"five"))
    for stamp in range(6, 1006):
        sub.offer("a", Snapshot(stamp, b"%d" % stamp))
    sub.offer("a", Snapshot(7, b"older"))
    assert sub._pending == {"a": Snapshot(1005, b"1005")}
    assert sub._take() == b"event: availability\ndata: 1005\n\n"
    sub.offer("a", Snapshot(1005, b"1005"))
    assert sub._take() == b""  # the same figures again: nothing


async def test_keep_alives_come_while_nothing_changes(
    app: LiveApp, ids: Ids, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(live_module, "KEEPALIVE_S", 0.2)
    _node, (a,) = await stocked(app, ids, a=1)
    stream = await app.stream([a])
    await stream.next_event()
    assert await stream.next_block(within=2) == b": keep-alive"
    assert await stream.next_block(within=2) == b": keep-alive"


@pytest.mark.parametrize("path", [PATH, PATH + "/"], ids=["path", "trailing-slash"])
async def test_a_stream_outlives_the_request_deadline(
    tmp_path: Path,
    valkey_server: EmbeddedValkey,
    ids: Ids,
    monkeypatch: pytest.MonkeyPatch,
    path: str,
) -> None:
    monkeypatch.setattr(live_module, "KEEPALIVE_S", 0.2)
    async with live_app(tmp_path, valkey_server.url, request_timeout_s=0.3) as app:
        node, (a,) = await stocked(app, ids, a=5)
        stream = await app.stream([a], path=path)
        assert (await stream.next_event())["available"] == 5
        for _ in range(4):  # 0.8 s: well past the 0.3 s deadline
            assert await stream.next_block(within=2) == b": keep-alive"
        await app.sale(ids, node, a)
        assert (await stream.next_event())["available"] == 4


async def test_closing_ends_every_stream_and_the_ones_that_come_after(
    app: LiveApp, ids: Ids
) -> None:
    _node, (a,) = await stocked(app, ids, a=1)
    stream = await app.stream([a])
    await stream.next_event()
    app.live.close()  # what the service's stop signal does
    assert await stream.next_block(within=2) is None
    late = await app.stream([a])
    assert late.status == 200
    await late.next_event()
    assert await late.next_block(within=2) is None
    await wait_for(lambda: app.live.streams == 0)


# -- Valkey restarted, and a cluster ------------------------------------------------------------


async def test_a_valkey_restart_keeps_the_stream_and_sends_what_changed(
    tmp_path: Path, ids: Ids, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(live_module, "KEEPALIVE_S", 0.3)
    server = EmbeddedValkey(tmp_path / "valkey", durability="strict")
    server.start()
    try:
        async with live_app(tmp_path, server.url, request_timeout_s=1.0) as app:
            node, (a,) = await stocked(app, ids, a=5)
            stream = await app.stream([a])
            assert (await stream.next_event())["available"] == 5
            server.kill()
            # Down: new streams are refused with 503 before they start; the open one stays
            # open with its keep-alives.
            refused = await app.stream([a])
            assert refused.status == 503
            assert json.loads(await refused.body())["status"] == 503
            assert await stream.next_block(within=2) == b": keep-alive"
            server.restart()
            # The first sale after the restart may fall in the follower's gap (before it reads
            # again): it is sent all the same.
            deadline = time.monotonic() + 10
            while True:
                try:
                    await app.sale(ids, node, a)
                    break
                except AssertionError:
                    assert time.monotonic() < deadline
                    await asyncio.sleep(0.1)
            assert (await stream.next_event(within=5))["available"] == 4
            await wait_for(lambda: app.live.follower_healthy)
            await app.sale(ids, node, a)
            assert (await stream.next_event(within=WITHIN_S + 1))["available"] == 3
    finally:
        server.stop()


async def test_a_hung_valkey_refuses_new_streams_in_time_and_keeps_open_ones(
    tmp_path: Path, ids: Ids, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(live_module, "KEEPALIVE_S", 0.3)
    server = EmbeddedValkey(tmp_path / "valkey", durability="strict")
    server.start()
    try:
        async with live_app(
            tmp_path, server.url, request_timeout_s=1.0, redis_timeout_s=0.5
        ) as app:
            node, (a,) = await stocked(app, ids, a=5)
            stream = await app.stream([a])
            assert (await stream.next_event())["available"] == 5
            os.kill(server.pid, signal.SIGSTOP)  # type: ignore[arg-type]
            try:
                started = time.monotonic()
                refused = await app.stream([a])
                assert refused.status == 503
                assert time.monotonic() - started < 1.5
                # The follower's read times out meanwhile; the open stream keeps its keep-alives.
                await wait_for(lambda: not app.live.follower_healthy, within=10)
                assert await stream.next_block(within=2) == b": keep-alive"
            finally:
                os.kill(server.pid, signal.SIGCONT)  # type: ignore[arg-type]
            await wait_for(lambda: app.live.follower_healthy, within=10)
            await app.sale(ids, node, a)
            assert (await stream.next_event(within=WITHIN_S + 1))["available"] == 4
    finally:
        server.stop()


@pytest.mark.cluster
async def test_streams_on_a_cluster_follow_every_partition_they_watch(
    tmp_path: Path, valkey_cluster: EmbeddedCluster, ids: Ids
) -> None:
    async with live_app(tmp_path, valkey_cluster.url, redis_cluster=True) as app:
        node = ids.node("wh")
        await app.node(node)
        # SKUs in partitions of their own, spread over the shards; one more not watched.
        skus: list[str] = []
        while len(skus) < 6:
            sku = ids.sku()
            if keys.partition_of(sku) not in {keys.partition_of(s) for s in skus}:
                skus.append(sku)
        watched, unrelated = skus[:5], skus[5]
        for sku in skus:
            await app.stock(node, sku, 10)
        stream = await app.stream(watched)
        for sku in watched:
            assert await stream.next_event() == await app.availability(sku)
        latencies = []
        for i, sku in enumerate(watched):
            await app.sale(ids, node, unrelated)
            acked = await app.sale(ids, node, sku, qty=i + 1)
            event = await stream.next_event(within=WITHIN_S + 1)
            latencies.append(time.monotonic() - acked)
            assert event == {
                "sku": sku,
                "available": 9 - i,
                "nodes": [{"node_id": node, "available": 9 - i}],
            }
        print(f"ack->event ms (cluster, in process): {[round(s * 1000, 1) for s in latencies]}")
        assert max(latencies) < WITHIN_S
        # A reservation over several partitions (a saga on a cluster) shows on each SKU.
        await app.post(
            "/v1/reservations", {"lines": [line(node, s, 1) for s in watched[:2]]}, ids.key()
        )
        got = {}
        for _ in range(2):
            event = await stream.next_event()
            got[event["sku"]] = event["available"]
        assert got == {watched[0]: 8, watched[1]: 7}


async def test_the_follower_reads_only_while_someone_watches(app: LiveApp, ids: Ids) -> None:
    node, (a,) = await stocked(app, ids, a=5)
    follower = app.live._follower
    reads: list[float] = []
    read = follower.read

    async def counted(streams: set[str]) -> set[str]:
        reads.append(time.monotonic())
        return await read(streams)

    follower.read = counted  # type: ignore[method-assign]
    stream = await app.stream([a])
    await stream.next_event()
    await app.sale(ids, node, a)
    await stream.next_event()
    assert reads
    await stream.disconnect()
    # The read under way when the last stream closed ends within its block time; none after.
    await asyncio.sleep(live_module.BLOCK_MS / 1000 + 0.5)
    settled = len(reads)
    await app.sale(ids, node, a)
    await asyncio.sleep(0.3)
    assert len(reads) == settled


def test_the_sku_of_each_event_is_read_as_the_ledger_writes_it() -> None:
    from omnistock.reservations.events import parse_entry, skus_of_entry

    lines = [
        "op-1\treserve\tstore-1\tsku:a.1\t0\t2\t0\t0\t10\t2\t0\t0\t0\t3\tr1-x\t1795349528000",
        "op-1\tsale\twh-2\tsku-b\t-1\t0\t0\t0\t9\t0\t0\t1\t0\t4\t\t1795349528000",
    ]
    fields = {b"e": "\n".join(lines).encode()}
    assert skus_of_entry(fields) == [e.sku for e in parse_entry(b"1-0", fields)]
    assert skus_of_entry(fields) == ["sku:a.1", "sku-b"]


async def test_streams_opened_together_all_start(app: LiveApp, ids: Ids) -> None:
    node, skus = await stocked(app, ids, a=1, b=2, c=3)
    streams = await asyncio.gather(*(app.stream([skus[i % 3]]) for i in range(30)))
    assert [s.status for s in streams] == [200] * 30
    for stream in streams:
        await stream.next_event()
    await app.sale(ids, node, skus[0])
    for stream in streams[::3]:
        assert (await stream.next_event())["available"] == 0
    for stream in streams:
        await stream.disconnect()
    assert app.live.streams == 0
