"""The outermost ASGI layer: request deadline, load shedding, content type, and per-route
metrics.

It wraps the whole Litestar app, so it sees every response (routing misses and auth failures
included) and can answer 503 itself when a request runs past its deadline: with a dependency
hung, the client gets a problem+json 503 within the request timeout, never a hang. A request cut
off this way may still have been applied by the ledger; retrying it with the same
Idempotency-Key is safe.

Past ``max_in_flight`` requests in this worker, a new one is refused at once with 503
(``overloaded``, ``Retry-After: 1``) instead of joining the queue: under a load it cannot keep
up with, the worker keeps answering what it took within the deadline rather than letting every
request slow down until all miss it. Streams, which stay open by design, and the service
endpoints (``/healthz``, ``/readyz``, ``/metrics``) are not counted nor refused.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import msgspec

from omnistock.api.metrics import Metrics
from omnistock.api.schemas import Problem

_WITH_BODY = frozenset({"POST", "PUT", "PATCH"})


_SLUGS = {
    408: "request-timeout",
    415: "unsupported-media-type",
    503: "dependency-unavailable",
}
_NOT_SHED = frozenset({"/healthz", "/readyz", "/metrics"})


def _problem_bytes(
    status: int, title: str, detail: str, field: str | None = None, *, slug: str | None = None
) -> bytes:
    slug = slug or _SLUGS[status]
    return msgspec.json.encode(
        Problem(f"urn:omnistock:problem:{slug}", title, status, detail, field)
    )


class Edge:
    def __init__(
        self,
        app: Any,
        metrics: Metrics,
        *,
        deadline_s: float,
        long_paths: dict[str, float] | None = None,
        streaming_paths: frozenset[str] = frozenset(),
        max_in_flight: int | None = None,
    ) -> None:
        """``long_paths``: routes that compute for long by design (batch planning) and their
        own deadlines. ``streaming_paths``: routes whose answer is an open-ended stream (live
        availability): the deadline holds until the response starts, then no longer, and the
        request is counted and timed when it starts (its status and time to first byte), not
        when the client hangs up."""
        self.app = app
        self.metrics = metrics
        self.deadline_s = deadline_s
        self.long_paths = long_paths or {}
        self.streaming_paths = streaming_paths
        self.max_in_flight = max_in_flight
        self.in_flight = 0

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        # Litestar routes a path with a trailing slash to the same handler.
        path = scope["path"].rstrip("/")
        streaming = path in self.streaming_paths
        counted = self.max_in_flight is not None and not streaming and path not in _NOT_SHED
        if counted:
            if self.in_flight >= self.max_in_flight:
                await _answer(send, 503, _OVERLOADED, retry_after=True)
                self.metrics.observe(
                    "overloaded", scope["method"], 503, time.perf_counter() - start
                )
                return
            self.in_flight += 1
        status = 0  # once the response has started
        body_read = True  # False while a body is on its way
        deadline: asyncio.Timeout | None = None
        observed = False

        async def send_tracked(message: dict) -> None:
            nonlocal status, observed
            if message["type"] == "http.response.start":
                status = message["status"]
                if streaming:
                    # A stream has no deadline once it starts; the 503 of a stream that did not
                    # start in time is sent after its deadline expired.
                    if deadline is not None and not deadline.expired():
                        deadline.reschedule(None)
                    observed = True
                    self._observe(scope, status, start)
            await send(message)

        async def receive_tracked() -> dict:
            nonlocal body_read
            message = await receive()
            if not message.get("more_body"):
                body_read = True
            return message

        try:
            acceptable = True
            if scope["method"] in _WITH_BODY:
                acceptable, has_body = _body_of(scope["headers"])
                body_read = not has_body
            if not acceptable:
                await _answer(
                    send_tracked,
                    415,
                    _problem_bytes(
                        415,
                        "Unsupported media type",
                        "send the body as application/json",
                        "Content-Type",
                    ),
                )
                return
            deadline_s = self.long_paths.get(scope["path"], self.deadline_s)
            async with asyncio.timeout(deadline_s) as deadline:
                # Only a request with a body still to come needs its arrival watched.
                await self.app(scope, receive if body_read else receive_tracked, send_tracked)
        except TimeoutError:
            if status:
                raise
            if not body_read:
                # The client, not a dependency, is slow: its body never finished arriving.
                await _answer(
                    send_tracked,
                    408,
                    _problem_bytes(
                        408, "Request timeout", "the request body did not arrive in time", "body"
                    ),
                )
                return
            await _answer(
                send_tracked,
                503,
                _problem_bytes(
                    503,
                    "Dependency unavailable",
                    "no answer within the request timeout",
                ),
                retry_after=True,
            )
        finally:
            if counted:
                self.in_flight -= 1
            if not observed:
                self._observe(scope, status or 500, start)

    def _observe(self, scope: dict, status: int, start: float) -> None:
        route = scope.get("path_template") or "unmatched"
        self.metrics.observe(route, scope["method"], status, time.perf_counter() - start)


_OVERLOADED = _problem_bytes(
    503,
    "Overloaded",
    "this worker has as many requests in progress as it takes (OMNISTOCK_MAX_REQUESTS_IN_FLIGHT)",
    slug="overloaded",
)


def _body_of(headers: list[tuple[bytes, bytes]]) -> tuple[bool, bool]:
    """Whether the request is acceptable (a body must be JSON; a request without one, such as
    commit or release, needs no content type), and whether it has a body."""
    content_type = None
    has_body = False
    for name, value in headers:
        if name == b"content-type":
            content_type = value
        elif name == b"content-length":
            has_body = value.strip() not in (b"0", b"")
        elif name == b"transfer-encoding":
            has_body = True
    if content_type is None:
        return not has_body, has_body
    media = content_type.split(b";", 1)[0].strip().lower()
    return media == b"application/json" or media.endswith(b"+json"), has_body


async def _answer(send: Any, status: int, body: bytes, *, retry_after: bool = False) -> None:
    headers = [
        (b"content-type", b"application/problem+json"),
        (b"content-length", str(len(body)).encode()),
    ]
    if retry_after:
        headers.append((b"retry-after", b"1"))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
