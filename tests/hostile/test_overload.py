"""A real ``omnistock serve`` past its request limit refuses at once instead of queueing.

With the embedded Valkey hung (SIGSTOP), every request a worker takes waits for it until the
request deadline. Past ``OMNISTOCK_MAX_REQUESTS_IN_FLIGHT`` requests in progress, a new one is
refused at once with 503 ``overloaded`` and ``Retry-After``, the service endpoints still answer,
and once Valkey is back the worker takes requests again.
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import psutil
import pytest

from tests.hostile.support import Served, bearer, start_serve, stop_serve

LIMIT, OFFERED = 4, 12
DEADLINE_S = 1.0


@pytest.fixture
def limited(tmp_path: Path) -> Iterator[Served]:
    served = start_serve(
        tmp_path / "serve",
        OMNISTOCK_MAX_REQUESTS_IN_FLIGHT=str(LIMIT),
        OMNISTOCK_REQUEST_TIMEOUT_MS=str(int(DEADLINE_S * 1000)),
        OMNISTOCK_REDIS_TIMEOUT_MS="500",
    )
    try:
        yield served
    finally:
        stop_serve(served)


def _valkey_pid(served: Served) -> int:
    children = psutil.Process(served.proc.pid).children(recursive=True)
    [pid] = [c.pid for c in children if "valkey" in " ".join(c.cmdline())]
    return pid


async def _timed(client: httpx.AsyncClient, path: str) -> tuple[float, httpx.Response]:
    start = time.monotonic()
    response = await client.get(path, headers=bearer("storefront"))
    return time.monotonic() - start, response


async def test_past_its_request_limit_a_worker_refuses_at_once_and_recovers(
    limited: Served,
) -> None:
    sku = "overload-sku-1"
    path = f"/v1/availability/{sku}"
    valkey = _valkey_pid(limited)
    limits = httpx.Limits(max_connections=OFFERED + 4)
    async with httpx.AsyncClient(base_url=limited.base, timeout=30, limits=limits) as client:
        assert (await client.get(path, headers=bearer("storefront"))).status_code == 200
        os.kill(valkey, signal.SIGSTOP)
        try:
            answers = await asyncio.gather(*(_timed(client, path) for _ in range(OFFERED)))
            health = await client.get("/healthz")
            metrics = await client.get("/metrics", headers=bearer("admin"))
        finally:
            os.kill(valkey, signal.SIGCONT)
        again = await client.get(path, headers=bearer("storefront"))

    assert [r.status_code for _, r in answers] == [503] * OFFERED
    refused = [(t, r) for t, r in answers if r.json()["type"].endswith(":overloaded")]
    waited = [(t, r) for t, r in answers if not r.json()["type"].endswith(":overloaded")]
    assert len(refused) == OFFERED - LIMIT
    assert [r.json()["type"] for _, r in waited] == [
        "urn:omnistock:problem:dependency-unavailable"
    ] * LIMIT
    assert all(r.headers["retry-after"] == "1" for _, r in refused)
    # Refused at once, while the taken ones waited out their deadline.
    assert max(t for t, _ in refused) < DEADLINE_S / 2 <= min(t for t, _ in waited)
    assert health.status_code == 200
    assert (
        f'omnistock_http_requests_total{{route="overloaded",method="GET",status="503"}} '
        f"{OFFERED - LIMIT}" in metrics.text
    )
    assert again.status_code == 200
