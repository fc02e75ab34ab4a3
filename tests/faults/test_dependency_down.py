"""With Valkey down or hung, requests answer 503 fast, and the service recovers by itself.

Each test runs the app on a Valkey of its own, so stopping it disturbs nothing else.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from litestar.testing import AsyncTestClient

from omnistock.api.app import create_asgi
from omnistock.runtime.valkey_server import EmbeddedValkey
from tests.api.conftest import Ids, auth, make_node, set_stock, settings_for

REQUEST_TIMEOUT_S = 1.0


@pytest.fixture
def ids() -> Ids:
    return Ids()


@pytest.fixture
def own_valkey(tmp_path: Path) -> Iterator[EmbeddedValkey]:
    server = EmbeddedValkey(tmp_path / "valkey")
    server.start()
    try:
        yield server
    finally:
        if server.pid is not None:
            os.kill(server.pid, signal.SIGCONT)
        server.stop()


@pytest.fixture
async def client(tmp_path: Path, own_valkey: EmbeddedValkey) -> AsyncIterator[AsyncTestClient]:
    settings = settings_for(
        tmp_path / "data",
        own_valkey.url,
        request_timeout_s=REQUEST_TIMEOUT_S,
        redis_timeout_s=0.5,
    )
    async with AsyncTestClient(app=create_asgi(settings), timeout=30) as c:
        yield c


async def _timed_get(client: AsyncTestClient, path: str, **kwargs) -> tuple[int, float, dict]:
    start = time.monotonic()
    response = await client.get(path, **kwargs)
    elapsed = time.monotonic() - start
    body = response.json() if response.content else {}
    return response.status_code, elapsed, body


async def _stocked(client: AsyncTestClient, ids: Ids) -> tuple[str, str]:
    node, sku = ids.node(), ids.sku()
    await make_node(client, node)
    await set_stock(client, node, sku, 5)
    return node, sku


async def test_valkey_stopped_gives_fast_503_and_service_recovers(
    client: AsyncTestClient, own_valkey: EmbeddedValkey, ids: Ids
) -> None:
    _node, sku = await _stocked(client, ids)
    own_valkey.stop()

    status, elapsed, body = await _timed_get(client, f"/v1/availability/{sku}", headers=auth("oms"))
    assert status == 503 and body["status"] == 503
    assert elapsed < REQUEST_TIMEOUT_S + 0.5
    status, _, ready = await _timed_get(client, "/readyz")
    assert (
        status == 503 and ready["checks"]["redis"] != "ok" and ready["checks"]["database"] == "ok"
    )

    own_valkey.start()
    status, _, body = await _timed_get(client, f"/v1/availability/{sku}", headers=auth("oms"))
    assert status == 200 and body["available"] == 5
    assert (await client.get("/readyz")).status_code == 200


async def test_hung_valkey_answers_503_within_the_request_timeout(
    client: AsyncTestClient, own_valkey: EmbeddedValkey, ids: Ids
) -> None:
    node, sku = await _stocked(client, ids)
    assert own_valkey.pid is not None
    os.kill(own_valkey.pid, signal.SIGSTOP)
    try:
        start = time.monotonic()
        response = await client.post(
            "/v1/reservations",
            json={"lines": [{"node_id": node, "sku": sku, "qty": 2}]},
            headers=auth("oms", **{"Idempotency-Key": "hung-1"}),
        )
        elapsed = time.monotonic() - start
        assert response.status_code == 503, response.text
        assert response.headers["content-type"].startswith("application/problem+json")
        assert elapsed < REQUEST_TIMEOUT_S + 0.5
    finally:
        os.kill(own_valkey.pid, signal.SIGCONT)

    # The cut-off request may or may not have applied; retrying it under its key is safe and
    # reserves exactly once.
    again = await client.post(
        "/v1/reservations",
        json={"lines": [{"node_id": node, "sku": sku, "qty": 2}]},
        headers=auth("oms", **{"Idempotency-Key": "hung-1"}),
    )
    assert again.status_code == 201, again.text
    status, _, body = await _timed_get(client, f"/v1/availability/{sku}", headers=auth("oms"))
    assert status == 200 and body["available"] == 3
