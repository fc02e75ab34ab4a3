"""Which reservations, holds and transfers exist, newest first, from the projection.

The live ledger finds a reservation, hold or transfer by its id only; the SQL projection of
them (``ledger_documents``, kept by the projector) is the one place that can list them. It is as
of the journal: a document appears once the projector has read the event that made it (its lag
behind the ledger, see /metrics), and it keeps a finished one until the ledger's time to live
for it runs out.

A document's status in the projection can trail the ledger further than its existence does: a
step that emits no event (a hold made ready) reaches it only at the projector's next refresh.
So a listing asks for every document that is open in the projection or has the wanted status
there, and the caller reads each from the ledger and keeps those whose live status is wanted.

Order is by creation time (the ``ct`` the scripts store in each document, in milliseconds), then
id; pages continue after a cursor ``<created ms>:<id>``. Finding the newest reads the creation
time out of the stored JSON of every candidate row: a scan of the open (or wanted) documents,
cheap at the thousands a dashboard lists, not meant for millions.
"""

from __future__ import annotations

from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql
from sqlalchemy.ext.asyncio import AsyncEngine

from omnistock.store.database import documents

# The scripts' status letters of each kind's statuses (see _lib.lua and the codecs).
STATUS_LETTERS: dict[str, dict[str, frozenset[str]]] = {
    "r": {
        "active": frozenset("ap"),
        "committed": frozenset("c"),
        "released": frozenset("r"),
        "expired": frozenset("x"),
    },
    "h": {
        "placed": frozenset("p"),
        "ready": frozenset("y"),
        "collected": frozenset("k"),
        "cancelled": frozenset("c"),
        "expired": frozenset("x"),
    },
    "t": {
        "requested": frozenset("q"),
        "in_transit": frozenset("s"),
        "received": frozenset("d"),
        "cancelled": frozenset("c"),
    },
}


@dataclass(frozen=True, slots=True)
class Cursor:
    """A position in a listing: after the document created at ``created_ms`` with ``doc_id``."""

    created_ms: int
    doc_id: str

    def text(self) -> str:
        return f"{self.created_ms}:{self.doc_id}"

    @classmethod
    def parse(cls, text: str) -> Cursor | None:
        created, sep, doc_id = text.partition(":")
        if not sep or not created.isdigit() or not doc_id:
            return None
        return cls(int(created), doc_id)


@dataclass(frozen=True, slots=True)
class Listed:
    doc_id: str
    created_ms: int

    @property
    def cursor(self) -> Cursor:
        return Cursor(self.created_ms, self.doc_id)


def _created(engine: AsyncEngine) -> sa.ColumnElement[int]:
    if engine.dialect.name == "postgresql":
        text = sa.cast(documents.c.raw, postgresql.JSONB).op("->>")("ct")
    else:
        text = sa.func.json_extract(documents.c.raw, "$.ct")
    return sa.cast(text, sa.BigInteger)


async def candidates(
    engine: AsyncEngine, kind: str, statuses: frozenset[str], *, limit: int, after: Cursor | None
) -> list[Listed]:
    """Up to ``limit`` documents of ``kind`` ("r", "h" or "t") that are open in the projection
    or have one of ``statuses`` (status letters) there, newest first, after ``after``."""
    created = sa.func.max(_created(engine))
    query = (
        sa.select(documents.c.doc_id, created.label("created_ms"))
        .where(
            documents.c.kind == kind,
            sa.or_(documents.c.is_open, documents.c.status.in_(sorted(statuses))),
        )
        .group_by(documents.c.doc_id)
        .having(created.is_not(None))
    )
    if after is not None:
        query = query.having(
            sa.or_(
                created < after.created_ms,
                sa.and_(created == after.created_ms, documents.c.doc_id < after.doc_id),
            )
        )
    query = query.order_by(created.desc(), documents.c.doc_id.desc()).limit(limit)
    async with engine.connect() as conn:
        rows = await conn.execute(query)
        return [Listed(doc_id, int(created_ms)) for doc_id, created_ms in rows]
