"""Live availability through a real ``omnistock serve --workers 2`` over HTTP: a till sale made
through any worker reaches streams on every worker within a second of its acknowledgement (the
measured times are printed), the stream gauge in /metrics adds up every worker and goes back to
0 when clients hang up, and SIGTERM with streams open stops the service within seconds, ending
each stream cleanly.
"""

from __future__ import annotations

import asyncio
import json
import statistics
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.api.conftest import KEYS, NODE_BODY
from tests.hostile.support import Served, start_serve, stop_serve

WITHIN_S = 1.0
STREAMS = 4
MAX_STREAMS = 16
SALES = 12
MAX_SALES = 60
ADJUSTMENTS = ["/v1/stock/adjustments", "POST", "200"]


def headers(role: str, **extra: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {KEYS[role]}", **extra}


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    """Two workers, strict durability (the default: a sale is acknowledged once on disk)."""
    s = start_serve(tmp_path_factory.mktemp("live"), workers=2, OMNISTOCK_DURABILITY="strict")
    try:
        yield s
    finally:
        stop_serve(s)


class EventReader:
    """One open stream, its events queued with the moment each arrived."""

    def __init__(self, response: httpx.Response) -> None:
        self.response = response
        self.events: asyncio.Queue[tuple[float, dict[str, Any]]] = asyncio.Queue()
        self.ended = asyncio.Event()
        self.task = asyncio.create_task(self._read())

    async def _read(self) -> None:
        try:
            event: str | None = None
            async for text in self.response.aiter_lines():
                if text.startswith("event: "):
                    event = text[len("event: ") :]
                elif text.startswith("data: ") and event == "availability":
                    self.events.put_nowait((time.monotonic(), json.loads(text[len("data: ") :])))
        finally:
            self.ended.set()

    async def next(self, within: float = 5.0) -> tuple[float, dict[str, Any]]:
        return await asyncio.wait_for(self.events.get(), within)


async def seed(http: httpx.AsyncClient, node: str, stock: dict[str, int]) -> None:
    response = await http.put(f"/v1/nodes/{node}", json=NODE_BODY, headers=headers("admin"))
    assert response.status_code in (200, 201), response.text
    for sku, on_hand in stock.items():
        response = await http.put(
            f"/v1/stock/{node}/{sku}", json={"on_hand": on_hand}, headers=headers("admin")
        )
        assert response.status_code == 200, response.text


async def sale(base: str, node: str, sku: str, key: str) -> float:
    """A till sale on a connection of its own (so on whichever worker takes it); returns the
    moment it was acknowledged."""
    async with httpx.AsyncClient(base_url=base, timeout=10) as http:
        response = await http.post(
            "/v1/stock/adjustments",
            json={"adjustments": [{"node_id": node, "sku": sku, "delta": -1, "reason": "sale"}]},
            headers=headers("oms", **{"Idempotency-Key": key}),
        )
        acked = time.monotonic()
    assert response.status_code == 200, response.text
    return acked


def worker_gauges(served: Served) -> dict[str, float]:
    """Each worker's open streams, from the metric snapshots the workers share."""
    out = {}
    for path in (served.data_dir / "metrics").glob("*.json"):
        try:
            out[path.stem] = json.loads(path.read_text())["gauges"].get("omnistock_live_streams", 0)
        except (OSError, ValueError, KeyError):
            continue
    return out


def worker_sales(served: Served) -> dict[str, float]:
    """Each worker's answered stock adjustments, from the same snapshots."""
    out = {}
    for path in (served.data_dir / "metrics").glob("*.json"):
        try:
            rows = json.loads(path.read_text())["requests"]
        except (OSError, ValueError, KeyError):
            continue
        out[path.stem] = sum(row[3] for row in rows if row[:3] == ADJUSTMENTS)
    return out


def busy(per_worker: dict[str, float]) -> list[str]:
    return [worker for worker, count in per_worker.items() if count > 0]


async def counted(http: httpx.AsyncClient, streams: int) -> bool:
    """Whether /metrics (whichever worker answers) counts ``streams`` open streams."""
    text = (await http.get("/metrics", headers=headers("storefront"))).text
    rows = [r for r in text.splitlines() if r.startswith("omnistock_live_streams ")]
    assert rows, "no omnistock_live_streams in /metrics"
    return float(rows[0].split()[1]) == streams


async def in_snapshots(served: Served, streams: int) -> bool:
    """Whether the workers' metric snapshots, together, count ``streams`` open streams."""
    return sum(worker_gauges(served).values()) == streams


async def open_stream(client: httpx.AsyncClient, skus: str) -> EventReader:
    request = client.build_request(
        "GET", "/v1/availability/stream", params={"skus": skus}, headers=headers("storefront")
    )
    response = await client.send(request, stream=True)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/event-stream")
    return EventReader(response)


async def eventually(check: Any, within: float = 10.0) -> None:
    deadline = time.monotonic() + within
    while not await check():
        assert time.monotonic() < deadline, "not reached in time"
        await asyncio.sleep(0.1)


async def test_a_sale_through_any_worker_reaches_streams_on_every_worker_within_a_second(
    served: Served,
) -> None:
    node, a, b, other = "live-wh-1", "live-a", "live-b", "live-other"
    async with (
        httpx.AsyncClient(base_url=served.base, timeout=10) as http,
        httpx.AsyncClient(base_url=served.base, timeout=None) as streams,
    ):
        await seed(http, node, {a: 1000, b: 1000, other: 1000})
        readers: list[EventReader] = []
        try:
            # Streams until both workers hold some (the kernel decides which worker accepts
            # a connection); each stream is counted, wherever it is open.
            while len(readers) < STREAMS or len(busy(worker_gauges(served))) < 2:
                assert len(readers) < MAX_STREAMS, worker_gauges(served)
                readers.append(await open_stream(streams, f"{a},{b}"))
                firsts = {(await readers[-1].next())[1]["sku"] for _ in range(2)}
                assert firsts == {a, b}
                await eventually(lambda: counted(http, len(readers)))
                if len(readers) >= STREAMS:
                    # A worker writes its snapshot once a second: wait for every stream to
                    # show there before judging which workers hold some.
                    await eventually(lambda: in_snapshots(served, len(readers)))
            print(f"streams per worker: {worker_gauges(served)}")

            latencies: list[float] = []
            left = {a: 1000, b: 1000}
            sales = 0
            # Sales until both workers have taken some (each on a connection of its own).
            while sales < SALES or len(busy(worker_sales(served))) < 2:
                assert sales < MAX_SALES, worker_sales(served)
                sku = (a, b)[sales % 2]
                await sale(served.base, node, other, f"live-other-{sales}")  # watched by none
                acked = await sale(served.base, node, sku, f"live-sale-{sales}")
                sales += 1
                left[sku] -= 1
                for reader in readers:
                    arrived, event = await reader.next(within=WITHIN_S + 2)
                    assert event == {
                        "sku": sku,
                        "available": left[sku],
                        "nodes": [{"node_id": node, "available": left[sku]}],
                    }
                    latencies.append(arrived - acked)
            ms = sorted(round(s * 1000, 1) for s in latencies)
            print(
                f"ack->event over HTTP, {len(ms)} deliveries ({sales} sales x {len(readers)} "
                f"streams, 2 workers): median {statistics.median(ms)} ms, "
                f"p90 {ms[int(len(ms) * 0.9)]} ms, max {ms[-1]} ms"
            )
            assert max(latencies) < WITHIN_S, ms
        finally:
            for reader in readers:
                reader.task.cancel()
                await reader.response.aclose()

        # Hung up: every worker gives its subscriptions back.
        await eventually(lambda: counted(http, 0))


async def test_sigterm_with_streams_open_stops_the_service_within_seconds(tmp_path: Path) -> None:
    served = start_serve(tmp_path, workers=2)
    try:
        async with httpx.AsyncClient(base_url=served.base, timeout=None) as http:
            started: list[asyncio.Event] = []

            async def watch() -> str:
                """Reads a stream to its end; returns how it ended."""
                first = asyncio.Event()
                started.append(first)
                request = http.build_request(
                    "GET",
                    "/v1/availability/stream",
                    params={"skus": "sig-a,sig-b"},
                    headers=headers("storefront"),
                )
                try:
                    async with http.stream(
                        request.method, request.url, headers=request.headers
                    ) as r:
                        assert r.status_code == 200
                        async for _chunk in r.aiter_bytes():
                            first.set()
                    return "ended"
                except httpx.TransportError as exc:
                    return f"broken: {exc!r}"

            tasks = [asyncio.create_task(watch()) for _ in range(3)]
            await eventually(lambda: _all_set(started, 3))
            stopping = time.monotonic()
            served.proc.terminate()
            endings = await asyncio.wait_for(asyncio.gather(*tasks), 15)
        code = await asyncio.to_thread(served.proc.wait, 15)
        took = time.monotonic() - stopping
        print(f"SIGTERM with 3 open streams: exited {code} after {took:.2f} s, streams {endings}")
        assert code == 0, served.text()
        assert endings == ["ended"] * 3
        assert took < 5.0, took
        assert "refused to gracefully stop" not in served.text(), served.text()
    finally:
        stop_serve(served)


async def _all_set(events: list[asyncio.Event], count: int) -> bool:
    return len(events) == count and all(e.is_set() for e in events)
