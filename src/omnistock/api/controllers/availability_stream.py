"""Live availability (storefront): ``GET /v1/availability/stream?skus=a,b,c`` as server-sent events.

A storefront or a dashboard keeps one connection open instead of polling: first one event per
SKU with its current availability, then one each time a SKU's availability changes (several
changes close together may be merged into one carrying the latest figures), and a
``: keep-alive`` comment every 15 s. Each event's data is exactly the body of
``GET /v1/availability/{sku}``::

    event: availability
    data: {"sku": "...", "available": 7, "nodes": [{"node_id": "...", "available": 3}]}

Everything that can be refused is refused before the stream starts (422 naming ``skus``, 401,
503 when Redis does not answer), so a 200 always carries the first figures. The stream has no
request deadline; it ends when the client hangs up or the service stops. While Redis is
unreachable it stays open and keeps sending keep-alives; once Redis is back every SKU whose
figures changed meanwhile is sent. The fan-out behind it is ``omnistock.api.live``.
"""

from __future__ import annotations

import weakref
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

from litestar import Controller, Request, get
from litestar.openapi.spec import (
    OpenAPIMediaType,
    OpenAPIResponse,
    OpenAPIType,
    Operation,
    Reference,
)
from litestar.openapi.spec import Parameter as OpenAPIParameter
from litestar.openapi.spec import Schema as OpenAPISchema
from litestar.response import Stream

from omnistock.api.auth import Role
from omnistock.api.paths import takes_query
from omnistock.domain.errors import InvalidInput
from omnistock.domain.ids import is_valid_id

if TYPE_CHECKING:
    from omnistock.api.live import LiveAvailability, Subscription

STREAM_PATH = "/v1/availability/stream"
MAX_STREAM_SKUS = 100
MEDIA_TYPE = "text/event-stream"
_ID = r"[A-Za-z0-9._:-]{1,64}"
SKUS_PATTERN = rf"^{_ID}(,{_ID}){{0,{MAX_STREAM_SKUS - 1}}}$"
HEADERS = {
    "Cache-Control": "no-cache",
    # Proxies that buffer responses (nginx) would hold events back.
    "X-Accel-Buffering": "no",
}


EVENT_SCHEMA = OpenAPISchema(
    type=OpenAPIType.OBJECT,
    description="one event (OpenAPI 3.1: the schema of a text/event-stream describes each event)",
    required=["event", "data"],
    properties={
        "event": OpenAPISchema(type=OpenAPIType.STRING, const="availability"),
        "data": OpenAPISchema(
            type=OpenAPIType.STRING,
            content_media_type="application/json",
            content_schema=Reference(ref="#/components/schemas/SkuAvailability"),
        ),
    },
    example={
        "event": "availability",
        "data": '{"sku":"sku-1","available":7,"nodes":[{"node_id":"store-1","available":3}]}',
    },
)


STREAM_QUERY = takes_query(("skus",), repeatable=("skus",))
"""``skus`` may repeat: its values are joined, as if comma-separated."""


def skus_of_query(request: Request) -> list[str]:
    """The SKUs of ``skus=a,b,c`` in the order given, each once (the route takes no other
    parameter: see STREAM_QUERY)."""
    given = request.query_params.getall("skus", [])
    if not given:
        raise InvalidInput("skus", f"required: 1 to {MAX_STREAM_SKUS} comma-separated SKUs")
    skus = ",".join(given).split(",")
    if len(skus) > MAX_STREAM_SKUS:
        raise InvalidInput("skus", f"at most {MAX_STREAM_SKUS} SKUs, got {len(skus)}")
    for sku in skus:
        if not is_valid_id(sku):
            raise InvalidInput("skus", "each SKU must match ^[A-Za-z0-9._:-]{1,64}$")
    return list(dict.fromkeys(skus))


@dataclass
class StreamOperation(Operation):
    """Documents the ``skus`` parameter (read by hand) and the event stream that answers."""

    def __post_init__(self) -> None:
        self.parameters = [
            *(self.parameters or []),
            OpenAPIParameter(
                name="skus",
                param_in="query",
                required=True,
                description=f"1 to {MAX_STREAM_SKUS} SKUs, comma-separated",
                schema=OpenAPISchema(type=OpenAPIType.STRING, pattern=SKUS_PATTERN),
            ),
        ]
        responses = dict(self.responses or {})
        responses["200"] = OpenAPIResponse(
            description=(
                "Server-sent events: first one `availability` event per SKU, then one per "
                "change; `data` is the body of GET /v1/availability/{sku}; a `: keep-alive` "
                "comment every 15 s. Ends when the service stops."
            ),
            content={MEDIA_TYPE: OpenAPIMediaType(schema=EVENT_SCHEMA)},
        )
        self.responses = responses


class AvailabilityStreamController(Controller):
    path = "/v1/availability"
    tags = ["availability"]
    opt = {"role": Role.STOREFRONT}

    @get(
        "/stream",
        operation_id="streamAvailability",
        opt=STREAM_QUERY,
        summary="Availability of up to 100 SKUs as server-sent events, sent again on each change",
        operation_class=StreamOperation,
        media_type=MEDIA_TYPE,
    )
    async def stream(self, request: Request) -> Stream:
        skus = skus_of_query(request)
        live = request.app.state.services.live
        subscription, first = await live.subscribe(skus)
        body = _events(live, subscription, first)
        # A body never started (the client left before the headers went out) gives its
        # subscription back when it is collected.
        weakref.finalize(body, live.unsubscribe, subscription)
        return Stream(body, media_type=MEDIA_TYPE, headers=HEADERS)


async def _events(
    live: LiveAvailability, subscription: Subscription, first: bytes
) -> AsyncIterator[bytes]:
    """The stream's body; the subscription is given back however it ends (closed by the
    service, or cancelled when the client disconnects)."""
    try:
        async for chunk in subscription.chunks(first):
            yield chunk
    finally:
        live.unsubscribe(subscription)
