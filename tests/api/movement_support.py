"""Helpers for the hold and transfer tests: stores, requests, steps, positions and timestamps."""

from __future__ import annotations

import asyncio
import datetime as dt
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
from litestar.testing import transport as litestar_transport

from omnistock.reservations.keys import partition_of
from tests.api.conftest import Ids, auth, make_node, position, set_stock
from tests.api.support import idem

REPLAYED = "idempotent-replayed"

# Coordinates for choosing a source by great-circle distance to a store in Berlin.
BERLIN = (52.52, 13.405)
POTSDAM = (52.39, 13.065)  # about 27 km from Berlin
HAMBURG = (53.55, 9.993)  # about 255 km from Berlin
MUNICH = (48.137, 11.575)  # about 504 km from Berlin


def ms_of(timestamp: str) -> int:
    """Epoch milliseconds of an RFC 3339 UTC timestamp as the API writes them."""
    moment = dt.datetime.fromisoformat(timestamp.replace("Z", "+00:00"))
    assert moment.utcoffset() == dt.timedelta(0), timestamp
    return round(moment.timestamp() * 1000)


def spread_skus(ids: Ids, labels: list[str]) -> list[str]:
    """Fresh SKUs, one per label, each in a ledger partition of its own. A transfer or hold of
    several SKUs then always spans partitions (on a single server it is still one document), so
    the tests do not pass or fail by the luck of which partitions random names hash to."""
    out: list[str] = []
    for label in labels:
        sku = ids.sku(label)
        while partition_of(sku) in {partition_of(s) for s in out}:
            sku = ids.sku(label)
        out.append(sku)
    return out


def same_partition_skus(ids: Ids, labels: list[str]) -> list[str]:
    """Fresh SKUs, one per label, all in the ledger partition of the first."""
    out: list[str] = []
    for label in labels:
        sku = ids.sku(label)
        while out and partition_of(sku) != partition_of(out[0]):
            sku = ids.sku(label)
        out.append(sku)
    return out


def sku_line(sku: str, qty: int) -> dict[str, Any]:
    return {"sku": sku, "qty": qty}


async def make_store(client: Any, ids: Ids, at: tuple[float, float] = BERLIN, **fields: Any) -> str:
    """A store that offers pickup."""
    store = ids.node("store")
    await make_node(client, store, kind="store", pickup=True, lat=at[0], lon=at[1], **fields)
    return store


async def make_warehouse(
    client: Any, ids: Ids, stock: dict[str, int] | None = None, at: tuple[float, float] = BERLIN
) -> str:
    node = ids.node("wh")
    await make_node(client, node, lat=at[0], lon=at[1])
    for sku, on_hand in (stock or {}).items():
        await set_stock(client, node, sku, on_hand)
    return node


# -- transfers -----------------------------------------------------------------------------------


async def post_transfer(
    client: Any, key: str, from_node: str, to_node: str, lines: list[dict[str, Any]], **fields: Any
) -> Any:
    body = {"from_node": from_node, "to_node": to_node, "lines": lines, **fields}
    return await client.post("/v1/transfers", json=body, headers=idem(key))


async def transfer_ok(
    client: Any, key: str, from_node: str, to_node: str, lines: list[dict[str, Any]], **fields: Any
) -> dict[str, Any]:
    response = await post_transfer(client, key, from_node, to_node, lines, **fields)
    assert response.status_code == 201, response.text
    return response.json()


async def get_transfer(client: Any, transfer_id: str) -> dict[str, Any]:
    response = await client.get(f"/v1/transfers/{transfer_id}", headers=auth("oms"))
    assert response.status_code == 200, response.text
    return response.json()


# -- holds ---------------------------------------------------------------------------------------


async def post_hold(
    client: Any,
    key: str,
    store: str,
    lines: list[dict[str, Any]],
    customer_ref: str = "cust-1",
    **fields: Any,
) -> Any:
    body = {"store_id": store, "lines": lines, "customer_ref": customer_ref, **fields}
    return await client.post("/v1/holds", json=body, headers=idem(key))


async def hold_ok(
    client: Any, key: str, store: str, lines: list[dict[str, Any]], **fields: Any
) -> dict[str, Any]:
    response = await post_hold(client, key, store, lines, **fields)
    assert response.status_code == 201, response.text
    return response.json()


async def get_hold(client: Any, hold_id: str) -> dict[str, Any]:
    response = await client.get(f"/v1/holds/{hold_id}", headers=auth("oms"))
    assert response.status_code == 200, response.text
    return response.json()


# -- steps ---------------------------------------------------------------------------------------


async def step(
    client: Any, kind: str, ident: str, action: str, key: str | None = None, **kwargs: Any
) -> Any:
    """POST /v1/{kind}/{ident}/{action}, with an Idempotency-Key when ``key`` is given."""
    headers = idem(key) if key is not None else auth("oms")
    return await client.post(f"/v1/{kind}/{ident}/{action}", headers=headers, **kwargs)


async def step_ok(
    client: Any, kind: str, ident: str, action: str, key: str | None = None, **kwargs: Any
) -> dict[str, Any]:
    response = await step(client, kind, ident, action, key, **kwargs)
    assert response.status_code == 200, response.text
    return response.json()


def q(on_hand: int, reserved: int, held: int, inbound: int, available: int) -> dict[str, int]:
    """Expected quantities of a position (as ``quantities_of`` gives them)."""
    return {
        "on_hand": on_hand,
        "reserved": reserved,
        "held": held,
        "inbound": inbound,
        "available": available,
    }


async def quantities_of(client: Any, node: str, sku: str) -> dict[str, int]:
    """The quantities of a position, read through GET /v1/stock, without its version."""
    p = await position(client, node, sku)
    return {k: p[k] for k in ("on_hand", "reserved", "held", "inbound", "available")}


async def concurrently_to(
    client: Any, method: str, requests: list[tuple[str, dict[str, Any]]]
) -> list[Any]:
    """Like ``tests.api.support.concurrently``, with a path of its own for each request: one
    request per ``(path, httpx.Request keyword arguments)``, all let go at the same moment from
    threads of their own; the answers in the same order."""
    transport = litestar_transport.TestClientTransport(client=client)
    base = str(client.base_url).rstrip("/")
    start = threading.Barrier(len(requests))

    def one(item: tuple[str, dict[str, Any]]) -> Any:
        path, kwargs = item
        request = httpx.Request(method, base + path, **kwargs)
        start.wait(timeout=10)
        response = transport.handle_request(request)
        response.read()
        return response

    def run_all() -> list[Any]:
        with ThreadPoolExecutor(max_workers=len(requests)) as pool:
            return list(pool.map(one, requests))

    return await asyncio.to_thread(run_all)
