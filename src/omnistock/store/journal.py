"""Reading the journal: a position's history, newest first, and every event in journal order."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from omnistock.store.database import events


async def history(
    engine: AsyncEngine, node_id: str, sku: str, *, limit: int, before: int | None
) -> list[dict[str, Any]]:
    """Up to ``limit`` events of one position, newest first, older than journal seq ``before``."""
    query = sa.select(events).where(events.c.node_id == node_id, events.c.sku == sku)
    if before is not None:
        query = query.where(events.c.seq < before)
    query = query.order_by(events.c.seq.desc()).limit(limit)
    async with engine.connect() as conn:
        return [dict(row._mapping) for row in await conn.execute(query)]


async def after(engine: AsyncEngine, seq: int, *, limit: int) -> list[dict[str, Any]]:
    """Up to ``limit`` events after journal seq ``seq``, oldest first."""
    query = sa.select(events).where(events.c.seq > seq).order_by(events.c.seq).limit(limit)
    async with engine.connect() as conn:
        return [dict(row._mapping) for row in await conn.execute(query)]
