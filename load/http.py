"""A small blocking HTTP client for the runner's own calls: seeding, reading positions, and
resolving changes the load left unacknowledged.

Standard-library `http.client` connections, one kept alive per thread of a thread pool: for
thousands of small requests this costs the client about a tenth of the CPU of an async client
with a shared pool. Calls that are safe to repeat (by method, or by Idempotency-Key) are sent
again, on a fresh connection, after a transport error or a 502/503/504.
"""

from __future__ import annotations

import http.client
import json as jsonlib
import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar
from urllib.parse import urlsplit

T = TypeVar("T")
R = TypeVar("R")
RETRIES = 6
RETRY_STATUSES = frozenset({502, 503, 504})
TRANSPORT_ERRORS = (OSError, http.client.HTTPException)


class ApiError(RuntimeError):
    def __init__(self, method: str, path: str, status: int, body: str) -> None:
        super().__init__(f"{method} {path}: {status} {body[:300]}")
        self.status = status
        self.body = body


class Response:
    def __init__(self, status: int, headers: dict[str, str], body: bytes) -> None:
        self.status = status
        self.headers = headers
        self.body = body

    def json(self) -> Any:
        return jsonlib.loads(self.body)


class Api:
    """Calls one service with one API key from many threads; `map` runs calls concurrently."""

    def __init__(self, url: str, key: str, *, concurrency: int = 16, timeout_s: float = 15.0):
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"not an http(s) URL: {url}")
        self._https = parts.scheme == "https"
        self._host = parts.hostname
        self._port = parts.port or (443 if self._https else 80)
        self._prefix = parts.path.rstrip("/")
        self._headers = {"Authorization": f"Bearer {key}", "Accept": "application/json"}
        self._timeout_s = timeout_s
        self._local = threading.local()
        self.concurrency = concurrency

    def _connection(self) -> http.client.HTTPConnection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            cls = http.client.HTTPSConnection if self._https else http.client.HTTPConnection
            conn = self._local.conn = cls(self._host, self._port, timeout=self._timeout_s)
        return conn

    def _drop_connection(self) -> None:
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
            self._local.conn = None

    def send(
        self, method: str, path: str, *, json: Any = None, headers: dict[str, str] | None = None
    ) -> Response:
        """One attempt; transport errors are raised (the connection is dropped first)."""
        all_headers = {**self._headers, **(headers or {})}
        body = None
        if json is not None:
            body = jsonlib.dumps(json, separators=(",", ":")).encode()
            all_headers["Content-Type"] = "application/json"
        conn = self._connection()
        try:
            conn.request(method, self._prefix + path, body=body, headers=all_headers)
            raw = conn.getresponse()
            data = raw.read()
        except TRANSPORT_ERRORS:
            self._drop_connection()
            raise
        if raw.will_close:
            self._drop_connection()
        return Response(raw.status, {k.lower(): v for k, v in raw.getheaders()}, data)

    def call(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        headers: dict[str, str] | None = None,
        ok: Iterable[int] = (200, 201),
    ) -> Response:
        """The response once its status is in `ok`, retrying transport errors and 502/503/504
        (the caller makes sure that repeating the request is safe); ApiError otherwise."""
        accepted = frozenset(ok)
        delay = 0.1
        for attempt in range(RETRIES):
            last = attempt == RETRIES - 1
            try:
                response = self.send(method, path, json=json, headers=headers)
            except TRANSPORT_ERRORS:
                if last:
                    raise
            else:
                if response.status in accepted:
                    return response
                if response.status not in RETRY_STATUSES or last:
                    raise ApiError(method, path, response.status, response.body.decode("replace"))
            time.sleep(delay)
            delay = min(delay * 2, 2.0)
        raise AssertionError("unreachable")

    def map(self, fn: Callable[[T], R], items: Iterable[T]) -> list[R]:
        """`fn` over `items` with `concurrency` threads; results in order, first error raised."""
        with ThreadPoolExecutor(self.concurrency, thread_name_prefix="load-http") as pool:
            return list(pool.map(fn, items))
