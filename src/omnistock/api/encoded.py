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

_DESCRIPTIONS = {200: "Request fulfilled, document follows", 201: "Document created, URL follows"}


def json_response(
    value: Any, status_code: int = 200, headers: Mapping[str, str] | None = None
) -> ASGIResponse:
    return ASGIResponse(
        body=_encode(value),
        status_code=status_code,
        media_type="application/json",
        headers=headers,
    )


def documented(body_type: type, status_code: int = 200) -> dict[int, ResponseSpec]:
    """The ``responses`` of a route that returns ``json_response(body_type(...))``."""
    return {
        status_code: ResponseSpec(
            data_container=body_type,
            description=_DESCRIPTIONS[status_code],
            generate_examples=False,
        )
    }
