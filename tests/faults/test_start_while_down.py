"""A service started while its Valkey is down answers at once: 503 for everything that needs the
ledger, and a readiness that says what it waits for. It serves by itself once Valkey is back.
(A worker that held its requests until Valkey returned would leave every caller hanging.)"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import httpx

from omnistock.runtime.valkey_server import EmbeddedValkey
from tests.faults.outage_support import (
    FAST_BOUND_S,
    RECOVERY_BOUND_S,
    Call,
    probe_until_ok,
    send,
    start_service,
)


async def test_a_service_started_while_valkey_is_down_answers_503_then_serves(
    tmp_path: Path,
) -> None:
    valkey = EmbeddedValkey(tmp_path / "valkey", durability="strict")
    valkey.start()
    valkey.kill()  # down, on the address it will come back on
    database_url = f"sqlite+aiosqlite:///{(tmp_path / 'omnistock.db').resolve()}"
    service = start_service(tmp_path / "data", valkey.url, database_url, until_ready=False)
    try:
        async with httpx.AsyncClient(base_url=service.base, timeout=30) as http:
            calls = [await send(http, "readyz", "GET", "/readyz") for _ in range(4)]
            calls += [
                await send(http, "nodes", "GET", "/v1/nodes", role="admin"),
                await send(http, "availability", "GET", "/v1/availability/sku-1"),
                await send(
                    http,
                    "reserve",
                    "POST",
                    "/v1/reservations",
                    json={"lines": [{"node_id": "n1", "sku": "sku-1", "qty": 1}]},
                    h={"Idempotency-Key": "while-down-1"},
                ),
            ]
            health = await send(http, "health", "GET", "/healthz")
            assert health.status == 200
            for call in calls:
                assert call.status == 503, (call.kind, call.status, call.body, service.log())
                assert call.elapsed < FAST_BOUND_S, (call.kind, call.elapsed)
            ready = calls[0].body
            assert ready["status"] == "starting"
            assert ready["checks"]["redis"].startswith("unreachable"), ready
            assert ready["checks"]["database"] == "ok", ready
            for call in calls[4:]:
                assert call.body["title"] == "redis unavailable", call.body
                assert "waits for redis" in call.body["detail"], call.body

            await asyncio.to_thread(valkey.start, 30)
            back = time.monotonic()
            # Each worker tries again on its own schedule (at most a second apart), and a call
            # may reach either: every call is sent until it is served, within the bound.
            first = await probe_until_ok(service.base, back, RECOVERY_BOUND_S)
            node = await _served(
                http,
                back,
                "node_put",
                "PUT",
                "/v1/nodes/n1",
                role="admin",
                json={
                    "name": "Store 1",
                    "kind": "store",
                    "lat": 52.5,
                    "lon": 13.4,
                    "ships": True,
                    "pickup": True,
                },
            )
            assert node.status in (200, 201), node.body
            stock = await _served(
                http,
                back,
                "stock_put",
                "PUT",
                "/v1/stock/n1/sku-1",
                role="admin",
                json={"on_hand": 5},
            )
            assert stock.status == 200, stock.body
            reserved = await _served(
                http,
                back,
                "reserve",
                "POST",
                "/v1/reservations",
                json={"lines": [{"node_id": "n1", "sku": "sku-1", "qty": 1}]},
                h={"Idempotency-Key": "after-return-1"},
            )
            assert reserved.status == 201, reserved.body
            print(f"first served {first:.2f} s after Valkey returned")
    finally:
        service.stop()
        valkey.stop()


async def _served(http: httpx.AsyncClient, since: float, *args: Any, **kw: Any) -> Call:
    """The call, sent again (it is idempotent) while it gets 503, for up to RECOVERY_BOUND_S
    from ``since``."""
    while True:
        call = await send(http, *args, **kw)
        if call.status != 503 or time.monotonic() - since > RECOVERY_BOUND_S:
            return call
        await asyncio.sleep(0.05)


async def test_a_worker_whose_start_fails_for_good_after_the_wait_ends_and_serve_stops(
    tmp_path: Path,
) -> None:
    """Valkey comes back but refuses the ledger (here: its FUNCTION command is disabled), a
    failure no waiting mends. Each worker then stops itself; granian replaces it, the
    replacement fails too, and serve ends with status 1 rather than answering 503 for ever:
    through granian's crash-loop check when the replacement fails within seconds, through the
    service's own count of failed workers when a busy machine makes it slower."""
    valkey = EmbeddedValkey(tmp_path / "valkey", durability="strict")
    valkey.start()
    port = valkey.port
    valkey.kill()
    database_url = f"sqlite+aiosqlite:///{(tmp_path / 'omnistock.db').resolve()}"
    service = start_service(tmp_path / "data", valkey.url, database_url, until_ready=False)
    broken = EmbeddedValkey(
        tmp_path / "broken", port=port, extra_config={"rename-command": 'FUNCTION ""'}
    )
    try:
        await asyncio.to_thread(broken.start, 30)
        code = await asyncio.to_thread(service.proc.wait, 60)
        log = "".join(service.output)
        assert code == 1, log[-3000:]
        assert "the worker's services failed to start" in log, log[-3000:]
        assert (
            "Worker crash loop detected" in log
            or "workers failed to start 3 times; the service stops" in log
        ), log[-3000:]
    finally:
        service.stop()
        broken.stop()
        valkey.stop()
