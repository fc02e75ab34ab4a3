"""Listing reservations, holds and transfers by status, newest first, paged (the GET of each
resource's collection, in its own controller).

Which documents exist comes from the SQL projection the projector keeps (see
``omnistock.store.listing``), so the lists are as of the journal: something made a moment ago
appears once the projector has journaled it (its lag, normally well under a second), and a
finished one stays listable until the ledger forgets it. Each listed item is read from the live
ledger, so it has exactly the body of the single GET and its status is the current one; an item
whose live status is no longer the one asked for is left out. A page can therefore hold fewer
than ``limit`` items before the end: the end is when ``next_after`` is null. A query parameter
the lists do not take is refused with 422 naming it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Annotated, Any, Literal, TypeVar

from litestar import Request
from litestar.params import Parameter

from omnistock.api.paths import takes_query
from omnistock.domain.errors import InvalidInput, NotFound
from omnistock.store import listing

MAX_PAGE = 100
SCAN_PAGES = 5
"""A page reads at most this many times ``limit`` candidates before it answers with what it
found (and a cursor to go on from)."""
READ_CONCURRENCY = 16

LIST_QUERY = takes_query(("status", "limit", "after"))
CURSOR_PATTERN = r"^[0-9]{1,15}:[A-Za-z0-9._:-]{1,64}$"

ReservationStatus = Annotated[
    Literal["active", "committed", "released", "expired"] | None,
    Parameter(description="only reservations with this status (default active)"),
]
HoldStatus = Annotated[
    Literal["placed", "ready", "collected", "cancelled", "expired"] | None,
    Parameter(description="only holds with this status (default placed and ready)"),
]
TransferStatus = Annotated[
    Literal["requested", "in_transit", "received", "cancelled"] | None,
    Parameter(description="only transfers with this status (default requested and in transit)"),
]

OPEN = {
    "r": frozenset({"active"}),
    "h": frozenset({"placed", "ready"}),
    "t": frozenset({"requested", "in_transit"}),
}

Limit = Annotated[int, Parameter(ge=1, le=MAX_PAGE, description="items per page")]
After = Annotated[
    str | None,
    Parameter(
        pattern=CURSOR_PATTERN,
        max_length=81,
        description="the next_after of the previous page",
    ),
]

T = TypeVar("T")


async def list_page(
    request: Request,
    kind: str,
    status: str | None,
    limit: int,
    after: str | None,
    read: Callable[[str], Awaitable[Any]],
    view: Callable[[Any], T],
) -> tuple[list[T], str | None]:
    """Up to ``limit`` items of ``kind`` ("r", "h" or "t") whose live status is ``status`` (by
    default any open one), newest first, after the cursor ``after``; and the cursor of the next
    page, None at the end. ``read`` gets one from the ledger by id, ``view`` makes its body."""
    wanted = OPEN[kind] if status is None else frozenset({status})
    letters = frozenset().union(*(listing.STATUS_LETTERS[kind][s] for s in wanted))
    cursor = None
    if after is not None:
        cursor = listing.Cursor.parse(after)
        if cursor is None:
            raise InvalidInput("after", "must be the next_after of a previous page")
    engine = request.app.state.services.engine
    gate = asyncio.Semaphore(READ_CONCURRENCY)

    async def live(doc_id: str) -> Any | None:
        async with gate:
            try:
                return await read(doc_id)
            except NotFound:  # gone from the ledger since the projector saw it
                return None

    items: list[T] = []
    for _ in range(SCAN_PAGES):
        batch = await listing.candidates(engine, kind, letters, limit=limit, after=cursor)
        found = await asyncio.gather(*(live(listed.doc_id) for listed in batch))
        for listed, doc in zip(batch, found, strict=True):
            cursor = listed.cursor
            if doc is not None and doc.status.value in wanted:
                items.append(view(doc))
                if len(items) == limit:
                    return items, cursor.text()
        if len(batch) < limit:
            return items, None
    return items, None if cursor is None else cursor.text()
