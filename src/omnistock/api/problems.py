"""Every error as application/problem+json (RFC 9457), with the offending field named.

Handlers map domain errors, validation errors, auth failures and unavailable dependencies to
their documented statuses. Nothing here writes: an error response means nothing changed, except
where the ledger says otherwise (a replayed first response).
"""

from __future__ import annotations

import asyncio
import logging
import re
from typing import Any

import msgspec
from litestar import Request, Response
from litestar.exceptions import HTTPException, SerializationException, ValidationException
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout

from omnistock.api.schemas import Problem, ShortageOut
from omnistock.domain.errors import (
    BelowCommitted,
    IdempotencyKeyReused,
    IllegalTransition,
    InsufficientStock,
    InvalidInput,
    NotFound,
    VersionConflict,
)
from omnistock.reservations.runner import LedgerOutOfMemory, LedgerUnavailable

log = logging.getLogger("omnistock.api")

MEDIA_TYPE = "application/problem+json"
_encode = msgspec.json.encode


class ApiProblem(Exception):
    """Raised by API code for a problem it describes itself."""

    def __init__(
        self, status: int, slug: str, title: str, detail: str, field: str | None = None
    ) -> None:
        super().__init__(detail)
        self.problem = Problem(f"urn:omnistock:problem:{slug}", title, status, detail, field)
        self.headers: dict[str, str] = {}


def invalid(field: str, detail: str, status: int = 422) -> ApiProblem:
    return ApiProblem(status, "invalid-input", "Invalid input", f"{field}: {detail}", field)


def unavailable(dependency: str, detail: str) -> ApiProblem:
    problem = ApiProblem(503, "dependency-unavailable", f"{dependency} unavailable", detail, None)
    problem.headers["Retry-After"] = "1"
    return problem


def starting(waiting: dict[str, str]) -> ApiProblem:
    """The worker's services are not up yet: it waits for ``waiting`` (dependency: why)."""
    if waiting:
        dependency, why = next(iter(waiting.items()))
        detail = f"the service is starting and waits for {dependency} ({why})"
        return unavailable(dependency, detail)
    problem = ApiProblem(503, "starting", "Service starting", "the service is starting")
    problem.headers["Retry-After"] = "1"
    return problem


def _p(slug: str, title: str, status: int, detail: str, field: str | None = None) -> Problem:
    return Problem(f"urn:omnistock:problem:{slug}", title, status, detail, field)


def render(problem: Problem, headers: dict[str, str] | None = None) -> Response:
    return Response(
        content=_encode(problem),
        status_code=problem.status,
        media_type=MEDIA_TYPE,
        headers=headers,
    )


def _shortages(items: list[Any]) -> list[ShortageOut]:
    return [ShortageOut(s.node_id, s.sku, s.requested, s.available) for s in items]


# "Expected `int`, got `str` - at `$.lines[0].qty`" -> lines[0].qty
_AT = re.compile(r"at `\$\.?([^`]*)`")
_MISSING = re.compile(r"missing required field `([^`]+)`")
_UNKNOWN = re.compile(r"unknown field `([^`]+)`")


def _field_of(message: str, key: str | None) -> str | None:
    at = _AT.search(message)
    # Litestar moves the path of an error inside the body ("at `$.lines[0]`") into ``key``;
    # for the body as a whole ``key`` is the parameter's name.
    base = at.group(1) if at else ("" if key in (None, "data") else key)
    for pattern in (_MISSING, _UNKNOWN):
        found = pattern.search(message)
        if found:
            return f"{base}.{found.group(1)}" if base else found.group(1)
    if base:
        return base
    return key or None


def _validation(exc: ValidationException) -> Problem:
    extra = exc.extra if isinstance(exc.extra, list) else []
    first = extra[0] if extra and isinstance(extra[0], dict) else {}
    message = str(first.get("message") or exc.detail)
    key = first.get("key")
    source = first.get("source")
    if "malformed" in message.lower() or "invalid json" in message.lower():
        return Problem(
            "urn:omnistock:problem:malformed-json",
            "Malformed JSON",
            400,
            message,
            "body",
        )
    field = _field_of(message, key if isinstance(key, str) else None)
    if source in ("query", "path", "header") and isinstance(key, str):
        field = key
    detail = f"{field}: {message}" if field else message
    return Problem("urn:omnistock:problem:invalid-input", "Invalid input", 422, detail, field)


def handle(request: Request, exc: Exception) -> Response:
    """The single exception handler of the app. An error replayed under an idempotency key
    (the stored first outcome) says so, as a replayed success does."""
    response = _response_for(request, exc)
    claim = request.scope.get("claim")  # type: ignore[call-overload]
    if claim is not None and claim.replayed:
        response.headers["Idempotent-Replayed"] = "true"
    return response


def _response_for(request: Request, exc: Exception) -> Response:
    if isinstance(exc, ApiProblem):
        return render(exc.problem, exc.headers or None)
    if isinstance(exc, InvalidInput):
        return render(
            Problem(
                "urn:omnistock:problem:invalid-input", "Invalid input", 422, str(exc), exc.field
            )
        )
    if isinstance(exc, IdempotencyKeyReused):
        return render(
            Problem(
                "urn:omnistock:problem:idempotency-key-reused",
                "Idempotency-Key reused",
                422,
                str(exc),
                "Idempotency-Key",
            )
        )
    if isinstance(exc, InsufficientStock | BelowCommitted):
        title = "Insufficient stock" if isinstance(exc, InsufficientStock) else "Below committed"
        slug = "insufficient-stock" if isinstance(exc, InsufficientStock) else "below-committed"
        problem = Problem(f"urn:omnistock:problem:{slug}", title, 409, str(exc))
        problem.shortages = _shortages(exc.shortages)
        return render(problem)
    if isinstance(exc, VersionConflict):
        return render(
            Problem("urn:omnistock:problem:version-conflict", "Version conflict", 409, str(exc))
        )
    if isinstance(exc, IllegalTransition):
        return render(
            Problem(
                "urn:omnistock:problem:illegal-transition", "Illegal state change", 409, str(exc)
            )
        )
    if isinstance(exc, NotFound):
        return render(Problem("urn:omnistock:problem:not-found", "Not found", 404, str(exc)))
    if isinstance(exc, ValidationException):
        return render(_validation(exc))
    if undecodable_body(exc):
        return render(_malformed(exc))
    if isinstance(exc, HTTPException):
        return _http(exc)
    if isinstance(exc, LedgerUnavailable):
        return _unavailable("redis", f"the stock ledger did not answer: {exc}")
    if isinstance(exc, LedgerOutOfMemory):
        problem = ApiProblem(
            503,
            "ledger-out-of-memory",
            "Stock ledger out of memory",
            "Redis is at its memory limit and refuses changes; nothing was applied",
        )
        return render(problem.problem, {"Retry-After": "1"})
    if isinstance(exc, OperationalError | DBAPIError | PoolTimeout):
        return _unavailable("database", f"the database did not answer: {type(exc).__name__}")
    if isinstance(exc, TimeoutError | asyncio.TimeoutError):
        return _unavailable("dependency", "a dependency did not answer within the request timeout")
    if isinstance(exc, OSError):
        # asyncpg fails a connect to a server that is down with a plain OSError (refused, or no
        # socket file), which SQLAlchemy passes on unwrapped; the ledger wraps its own errors.
        return _unavailable("database", f"the database did not answer: {type(exc).__name__}")
    log.exception("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
    return render(
        Problem("about:blank", "Internal Server Error", 500, "an unexpected error occurred")
    )


def undecodable_body(exc: BaseException) -> bool:
    """JSON nested deeper than the interpreter's recursion limit, or with strings that are not
    UTF-8: msgspec raises RecursionError or UnicodeDecodeError for these rather than a
    DecodeError, and Litestar's body decoding (``decode_json``) passes them on. They are the
    client's malformed JSON, not the service's failure."""
    if not isinstance(exc, RecursionError | UnicodeDecodeError):
        return False
    tb = exc.__traceback__
    while tb is not None:
        if tb.tb_frame.f_code.co_name == "decode_json":
            return True
        tb = tb.tb_next
    return False


def _malformed(exc: BaseException) -> Problem:
    what = "nested too deeply" if isinstance(exc, RecursionError) else "not valid UTF-8"
    return Problem(
        "urn:omnistock:problem:malformed-json",
        "Malformed JSON",
        400,
        f"the JSON body is {what}",
        "body",
    )


def _unavailable(dependency: str, detail: str) -> Response:
    problem = unavailable(dependency, detail)
    return render(problem.problem, problem.headers)


_TITLES = {
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not found",
    405: "Method not allowed",
    413: "Request body too large",
    415: "Unsupported media type",
}


def _http(exc: HTTPException) -> Response:
    status = exc.status_code
    title = _TITLES.get(status, "HTTP error")
    headers = dict(exc.headers or {})
    problem = Problem("about:blank", title, status, str(exc.detail or title))
    if status == 401:
        headers.setdefault("WWW-Authenticate", 'Bearer realm="omnistock"')
    if status == 413:
        problem.field = "body"
    if status == 400 and isinstance(exc.__cause__, SerializationException):
        problem.type, problem.title, problem.field = (
            "urn:omnistock:problem:malformed-json",
            "Malformed JSON",
            "body",
        )
    return render(problem, headers or None)


def strict_field(exc: msgspec.ValidationError) -> str | None:
    """The field a strict msgspec decode names, e.g. ``lines[0].qty``."""
    return _field_of(str(exc), None)
