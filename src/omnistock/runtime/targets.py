"""Where the operator's bulk commands (``seed``, ``import``) write: the service's own ledger and
catalog, opened in-process as ``reconcile`` and ``rebuild`` do, or a running service's HTTP API.

Both take the same operation ids and report the same outcomes, so a command behaves the same
either way: an operation id seen before replays its first result (``REPLAYED``) rather than
applying again. In-process the ledger learns this through a request claim, the mechanism behind
the API's ``Idempotency-Key``; over HTTP the id is sent as the ``Idempotency-Key`` (scoped, like
every key, to the API key that sends it).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import enum
import http.client
import json
import os
import threading
import time
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Protocol
from urllib.parse import quote, urlsplit

from omnistock.domain.errors import BelowCommitted, InvalidInput, VersionConflict
from omnistock.domain.ids import digest_of
from omnistock.domain.node import Node
from omnistock.reservations.claims import RequestClaim
from omnistock.runtime.settings import Settings

LOCAL_CONCURRENCY = 256  # the ledger's runner batches concurrent operations into one script call
HTTP_CONCURRENCY = 16
HTTP_RETRIES = 6
RETRY_STATUSES = frozenset({502, 503, 504})


class Result(enum.Enum):
    APPLIED = "applied"
    REPLAYED = "replayed"  # the operation id was seen before: its first result, nothing changed
    CONFLICT = "conflict"  # if_version did not match: the position was written before
    REFUSED = "refused"  # the ledger or the API said no; `detail` says why


@dataclass(frozen=True)
class Outcome:
    result: Result
    detail: str = ""


class TargetError(RuntimeError):
    """The target cannot be used at all (unreachable, key refused); the message says why."""


class Target(Protocol):
    description: str
    concurrency: int

    async def node_ids(self) -> set[str]: ...

    async def put_node(self, node: Node) -> None: ...

    async def set_stock(
        self,
        op_id: str,
        node_id: str,
        sku: str,
        on_hand: int,
        *,
        safety_stock: int | None = None,
        if_version: int | None = None,
    ) -> Outcome: ...


def fingerprint(*parts: object) -> str:
    """The digest of parts given as any values, by their text."""
    return digest_of(*(str(part).encode() for part in parts))


class LocalTarget:
    """The ledger and node catalog of ``OMNISTOCK_DATA_DIR`` (or the configured servers)."""

    concurrency = LOCAL_CONCURRENCY

    def __init__(self, ledger: Any, catalog: Any, description: str) -> None:
        self.ledger = ledger
        self.catalog = catalog
        self.description = description

    async def node_ids(self) -> set[str]:
        return {node.node_id for node in await self.catalog.all()}

    async def put_node(self, node: Node) -> None:
        await self.catalog.put(node)

    async def set_stock(
        self,
        op_id: str,
        node_id: str,
        sku: str,
        on_hand: int,
        *,
        safety_stock: int | None = None,
        if_version: int | None = None,
    ) -> Outcome:
        claim = RequestClaim(fingerprint("set_stock", node_id, sku, on_hand, safety_stock))
        try:
            await self.ledger.set_stock(
                op_id,
                node_id,
                sku,
                on_hand,
                safety_stock=safety_stock,
                if_version=if_version,
                claim=claim,
            )
        except VersionConflict:
            return Outcome(Result.CONFLICT)
        except BelowCommitted as exc:
            (short,) = exc.shortages
            return Outcome(
                Result.REFUSED,
                f"on_hand {on_hand} is below the {short.requested} reserved and held there",
            )
        except InvalidInput as exc:
            return Outcome(Result.REFUSED, str(exc))
        return Outcome(Result.REPLAYED if claim.replayed else Result.APPLIED)


@contextlib.asynccontextmanager
async def local_target(settings: Settings) -> AsyncIterator[LocalTarget]:
    """The service's ledger and catalog, opened as the other tools open them: with the embedded
    default, a running service's Valkey (``valkey.url``), else one started for the command."""
    from omnistock.runtime.tools import opened
    from omnistock.store.catalog import NodeCatalog

    settings.data_dir.mkdir(parents=True, exist_ok=True)
    async with opened(settings) as (runtime, engine):
        where = f"{runtime.redis_url} and {engine.url.render_as_string(hide_password=True)}"
        yield LocalTarget(runtime.ledger, NodeCatalog(engine), where)


class HttpTarget:
    """A running service through its API, with an admin key. Blocking ``http.client``
    connections, one kept alive per thread of a small pool; calls that are safe to repeat (all
    of these are) are sent again after a transport error or a 502/503/504."""

    concurrency = HTTP_CONCURRENCY

    def __init__(self, url: str, key: str, *, timeout_s: float = 15.0) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise TargetError(f"not an http(s) URL: {url}")
        self.description = url
        self._https = parts.scheme == "https"
        self._host = parts.hostname
        self._port = parts.port or (443 if self._https else 80)
        self._prefix = parts.path.rstrip("/")
        self._headers = {"Authorization": f"Bearer {key}", "Accept": "application/json"}
        self._timeout_s = timeout_s
        self._local = threading.local()
        self._pool = ThreadPoolExecutor(HTTP_CONCURRENCY, thread_name_prefix="omnistock-http")

    def close(self) -> None:
        self._pool.shutdown(wait=True)

    async def node_ids(self) -> set[str]:
        status, body, _ = await self._call("GET", "/v1/nodes")
        if status != 200:
            raise TargetError(_failure("GET /v1/nodes", status, body))
        return {node["node_id"] for node in json.loads(body)["nodes"]}

    async def put_node(self, node: Node) -> None:
        path = f"/v1/nodes/{quote(node.node_id, safe='')}"
        status, body, _ = await self._call("PUT", path, node_body(node))
        if status not in (200, 201):
            raise TargetError(_failure(f"PUT {path}", status, body))

    async def set_stock(
        self,
        op_id: str,
        node_id: str,
        sku: str,
        on_hand: int,
        *,
        safety_stock: int | None = None,
        if_version: int | None = None,
    ) -> Outcome:
        path = f"/v1/stock/{quote(node_id, safe='')}/{quote(sku, safe='')}"
        body: dict[str, int] = {"on_hand": on_hand}
        if safety_stock is not None:
            body["safety_stock"] = safety_stock
        if if_version is not None:
            body["if_version"] = if_version
        status, text, headers = await self._call("PUT", path, body, {"Idempotency-Key": op_id})
        if status == 200:
            replayed = headers.get("idempotent-replayed") == "true"
            return Outcome(Result.REPLAYED if replayed else Result.APPLIED)
        if status in (401, 403):
            raise TargetError(_failure(f"PUT {path}", status, text))
        if status == 409 and if_version is not None and "version" in text:
            return Outcome(Result.CONFLICT)
        return Outcome(Result.REFUSED, _problem(status, text))

    async def _call(
        self, method: str, path: str, body: Any = None, headers: dict[str, str] | None = None
    ) -> tuple[int, str, dict[str, str]]:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._pool, self._send, method, path, body, headers)

    def _send(
        self, method: str, path: str, body: Any, headers: dict[str, str] | None
    ) -> tuple[int, str, dict[str, str]]:
        all_headers = {**self._headers, **(headers or {})}
        data = None
        if body is not None:
            data = json.dumps(body, separators=(",", ":")).encode()
            all_headers["Content-Type"] = "application/json"
        delay = 0.1
        for attempt in range(HTTP_RETRIES):
            last = attempt == HTTP_RETRIES - 1
            conn = self._connection()
            try:
                conn.request(method, self._prefix + path, body=data, headers=all_headers)
                raw = conn.getresponse()
                text = raw.read().decode("utf-8", "replace")
                if raw.will_close:
                    self._drop()
            except (OSError, http.client.HTTPException) as exc:
                self._drop()
                if last:
                    raise TargetError(f"{method} {self.description}{path}: {exc}") from exc
            else:
                if raw.status not in RETRY_STATUSES or last:
                    return raw.status, text, {k.lower(): v for k, v in raw.getheaders()}
            time.sleep(delay)
            delay = min(delay * 2, 2.0)
        raise AssertionError("unreachable")

    def _connection(self) -> http.client.HTTPConnection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            cls = http.client.HTTPSConnection if self._https else http.client.HTTPConnection
            conn = self._local.conn = cls(self._host, self._port, timeout=self._timeout_s)
        return conn

    def _drop(self) -> None:
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
            self._local.conn = None


@contextlib.asynccontextmanager
async def http_target(url: str, key: str) -> AsyncIterator[HttpTarget]:
    target = HttpTarget(url, key)
    try:
        yield target
    finally:
        target.close()


@contextlib.asynccontextmanager
async def open_target(
    settings: Settings, url: str | None = None, key: str | None = None
) -> AsyncIterator[Target]:
    """``url`` and ``key``: a running service over HTTP; otherwise in-process."""
    if url:
        if not key:
            raise TargetError("--url needs an admin API key (--key or OMNISTOCK_KEY)")
        async with http_target(url, key) as target:
            yield target
    else:
        async with local_target(settings) as target:
            yield target


def node_body(node: Node) -> dict[str, Any]:
    """The ``PUT /v1/nodes/{node_id}`` body of a node."""
    body: dict[str, Any] = {
        "name": node.name or node.node_id,
        "kind": node.kind,
        "lat": node.lat,
        "lon": node.lon,
        "ships": node.ships,
        "pickup": node.pickup,
        "priority": node.priority,
        "pickup_ready_minutes": node.pickup_ready_minutes,
        "cost": {
            "per_shipment": node.cost.per_shipment,
            "per_km": node.cost.per_km,
            "per_unit": node.cost.per_unit,
        },
    }
    if node.capacity_per_day is not None:
        body["capacity_per_day"] = node.capacity_per_day
    return body


def _problem(status: int, text: str) -> str:
    try:
        problem = json.loads(text)
        return f"{status} {problem.get('detail') or problem.get('title')}"
    except (ValueError, AttributeError):
        return f"{status} {text[:200]}"


def _failure(what: str, status: int, text: str) -> str:
    return f"{what}: {_problem(status, text)}"


def add_url_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--url",
        help="write through a running service's HTTP API instead of opening the ledger "
        "in-process (e.g. http://127.0.0.1:8000)",
    )
    p.add_argument(
        "--key",
        default=os.environ.get("OMNISTOCK_KEY"),
        help="an admin API key, with --url (default: $OMNISTOCK_KEY)",
    )
