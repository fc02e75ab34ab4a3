"""Responses encoded by the handler itself, for the hottest routes.

Litestar turns a handler's return value into a response through several layers (a ``Response``,
its rendering, then an ``ASGIResponse``), which costs about as much as the ledger read behind a
storefront availability check. Handlers on the hot path (availability, reserve, commit, release)
encode their struct with msgspec and return the ``ASGIResponse`` directly: the same bytes and
headers, without the layers. Their body type is documented with ``documented``, because Litestar
documents nothing for an ``ASGIResponse``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import msgspec
from litestar.openapi.datastructures import ResponseSpec
from litestar.response.base import ASGIResponse

_encode = msgspec.json.Encoder().encode
_JSON = (b"content-type", b"application/json")

_DESCRIPTIONS = {200: "Request fulfilled, document follows", 201: "Document created, URL follows"}


class EncodedJson(ASGIResponse):
    """A JSON answer whose body and headers are ready to send: two ASGI messages and nothing
    else (no cookies, no background task, never a HEAD answer: the hot routes are GET and
    POST). It overrides every method of ``ASGIResponse`` that reads the rest of its state."""

    __slots__ = ("_raw_headers",)

    def __init__(self, body: bytes, status_code: int, headers: Mapping[str, str] | None) -> None:
        raw = [_JSON, (b"content-length", str(len(body)).encode())]
        if headers:
            raw += [(k.lower().encode(), v.encode()) for k, v in headers.items()]
        self._raw_headers = raw
        self.body = body
        self.status_code = status_code

    def encode_headers(self) -> list[tuple[bytes, bytes]]:
        return self._raw_headers

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        await send(
            {
                "type": "http.response.start",
                "status": self.status_code,
                "headers": self._raw_headers,
            }
        )
        await send({"type": "http.response.body", "body": self.body, "more_body": False})


def json_response(
    value: Any, status_code: int = 200, headers: Mapping[str, str] | None = None
) -> ASGIResponse:
    return EncodedJson(_encode(value), status_code, headers)


def documented(body_type: type, status_code: int = 200) -> dict[int, ResponseSpec]:
    """The ``responses`` of a route that returns ``json_response(body_type(...))``."""
    return {
        status_code: ResponseSpec(
            data_container=body_type,
            description=_DESCRIPTIONS[status_code],
            generate_examples=False,
        )
    }
