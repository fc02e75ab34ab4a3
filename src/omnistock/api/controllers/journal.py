"""History (oms): what happened to a position, and the whole journal for downstream systems.

The journal is written by the projector from the ledger's event streams, so it trails the live
ledger by the projector's lag (see /metrics). A query parameter these routes do not take is
refused with 422 naming it (as availability does), so a misspelt ``limit`` or ``before`` is not
silently read as the default."""

from __future__ import annotations

from typing import Annotated, Any

from litestar import Controller, Request, get
from litestar.params import FromPath, Parameter

from omnistock.api.auth import Role
from omnistock.api.paths import checked_id, takes_query
from omnistock.api.schemas import Deltas, EventsPage, HistoryPage, JournalEntry, timestamp
from omnistock.store import journal

MAX_PAGE = 1000
MAX_SEQ = 2**63 - 1
"""Journal sequence numbers are SQL BIGINTs: a larger bound is refused as input, not sent to the
database (SQLite cannot bind it)."""

Limit = Annotated[int, Parameter(ge=1, le=MAX_PAGE, description="entries per page")]
HISTORY_QUERY = takes_query(("limit", "before"))
EVENTS_QUERY = takes_query(("after", "limit"))


def entry(row: dict[str, Any]) -> JournalEntry:
    return JournalEntry(
        seq=row["seq"],
        event_id=row["event_id"],
        at=timestamp(row["at_ms"]),
        kind=row["kind"],
        node_id=row["node_id"],
        sku=row["sku"],
        ref=row["ref"],
        op_id=row["op_id"],
        delta=Deltas(row["d_on_hand"], row["d_reserved"], row["d_held"], row["d_inbound"]),
        on_hand=row["on_hand"],
        reserved=row["reserved"],
        held=row["held"],
        safety_stock=row["safety_stock"],
        inbound=row["inbound"],
        version=row["version"],
    )


class JournalController(Controller):
    tags = ["journal"]
    opt = {"role": Role.OMS}

    @get(
        "/v1/stock/{node_id:str}/{sku:str}/history",
        operation_id="stockHistory",
        opt=HISTORY_QUERY,
        summary="A position's events, newest first (page with next_before)",
    )
    async def history(
        self,
        request: Request,
        node_id: FromPath[str],
        sku: FromPath[str],
        limit: Limit = 50,
        before: Annotated[int | None, Parameter(ge=1, le=MAX_SEQ)] = None,
    ) -> HistoryPage:
        checked_id("node_id", node_id)
        checked_id("sku", sku)
        engine = request.app.state.services.engine
        rows = await journal.history(engine, node_id, sku, limit=limit, before=before)
        next_before = rows[-1]["seq"] if len(rows) == limit else None
        return HistoryPage([entry(r) for r in rows], next_before)

    @get(
        "/v1/events",
        operation_id="journalEvents",
        opt=EVENTS_QUERY,
        summary="The journal in order, after a sequence number (page with next_after)",
    )
    async def events(
        self,
        request: Request,
        after: Annotated[int, Parameter(ge=0, le=MAX_SEQ)] = 0,
        limit: Limit = 100,
    ) -> EventsPage:
        rows = await journal.after(request.app.state.services.engine, after, limit=limit)
        return EventsPage([entry(r) for r in rows], rows[-1]["seq"] if rows else after)
