"""Helpers shared by the API test modules: problem+json checks, reservations, snapshots."""

from __future__ import annotations

import asyncio
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
from litestar.testing import transport as litestar_transport

from tests.api.conftest import auth

PROBLEM_JSON = "application/problem+json"
_ANY = object()


def media_type(response: Any) -> str:
    return response.headers.get("content-type", "").split(";", 1)[0].strip()


def assert_problem(response: Any, status: int, field: Any = _ANY) -> dict[str, Any]:
    """The response is an RFC 9457 problem with ``status``; with ``field`` given, the problem
    names exactly that field. Returns the decoded problem."""
    assert response.status_code == status, response.text
    assert media_type(response) == PROBLEM_JSON, response.headers
    problem = response.json()
    for name in ("type", "title", "detail"):
        assert isinstance(problem.get(name), str) and problem[name], (name, problem)
    assert problem["status"] == status, problem
    if field is not _ANY:
        assert problem.get("field") == field, problem
    return problem


def line(node_id: str, sku: str, qty: int) -> dict[str, Any]:
    return {"node_id": node_id, "sku": sku, "qty": qty}


def idem(key: str, role: str = "oms", **extra: str) -> dict[str, str]:
    return auth(role, **{"Idempotency-Key": key}, **extra)


async def reserve(
    client: Any, key: str, lines: list[dict[str, Any]], role: str = "oms", **fields: Any
) -> Any:
    return await client.post(
        "/v1/reservations", json={"lines": lines, **fields}, headers=idem(key, role)
    )


async def reserve_ok(
    client: Any, key: str, lines: list[dict[str, Any]], **fields: Any
) -> dict[str, Any]:
    response = await reserve(client, key, lines, **fields)
    assert response.status_code == 201, response.text
    return response.json()


async def snapshot(client: Any, pairs: list[tuple[str, str]]) -> list[dict[str, Any]]:
    """The positions of ``(node_id, sku)`` pairs, version included."""
    out = []
    for node_id, sku in pairs:
        response = await client.get(f"/v1/stock/{node_id}/{sku}", headers=auth("admin"))
        assert response.status_code == 200, response.text
        out.append(response.json())
    return out


async def reservation_status(client: Any, reservation_id: str) -> str:
    response = await client.get(f"/v1/reservations/{reservation_id}", headers=auth("oms"))
    assert response.status_code == 200, response.text
    return response.json()["status"]


async def concurrently(
    client: Any, method: str, path: str, requests: list[dict[str, Any]]
) -> list[Any]:
    """One request per item of ``requests`` (httpx.Request keyword arguments), all let go at
    the same moment from threads of their own; the answers in the same order.

    The test client runs the app on an event loop of its own and makes each call wait for its
    answer, so requests gathered on the client run one after the other. Requests sent from
    several threads through the client's transport run on the app's loop at the same time.
    """
    transport = litestar_transport.TestClientTransport(client=client)
    url = str(client.base_url).rstrip("/") + path
    start = threading.Barrier(len(requests))

    def one(kwargs: dict[str, Any]) -> Any:
        request = httpx.Request(method, url, **kwargs)
        start.wait(timeout=10)
        response = transport.handle_request(request)
        response.read()
        return response

    def run_all() -> list[Any]:
        with ThreadPoolExecutor(max_workers=len(requests)) as pool:
            return list(pool.map(one, requests))

    return await asyncio.to_thread(run_all)
