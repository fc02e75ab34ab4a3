"""The SQL database: engine, schema, health. SQLite under the data directory by default."""

from __future__ import annotations

from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

metadata = sa.MetaData()

nodes = sa.Table(
    "nodes",
    metadata,
    sa.Column("node_id", sa.String(64), primary_key=True),
    sa.Column("name", sa.String(200), nullable=False, default=""),
    sa.Column("kind", sa.String(16), nullable=False),
    sa.Column("lat", sa.Float, nullable=False),
    sa.Column("lon", sa.Float, nullable=False),
    sa.Column("ships", sa.Boolean, nullable=False),
    sa.Column("pickup", sa.Boolean, nullable=False),
    sa.Column("capacity_per_day", sa.Integer, nullable=True),
    sa.Column("priority", sa.Integer, nullable=False),
    sa.Column("cost_per_shipment", sa.Float, nullable=False),
    sa.Column("cost_per_km", sa.Float, nullable=False),
    sa.Column("cost_per_unit", sa.Float, nullable=False),
    sa.Column("pickup_ready_minutes", sa.Integer, nullable=False),
    # Nanoseconds since the epoch of the last change: workers compare max() to notice changes.
    sa.Column("changed_ns", sa.BigInteger, nullable=False),
)


events = sa.Table(
    "events",
    metadata,
    # Order of arrival in the journal: what /v1/events pages by.
    sa.Column(
        "seq",
        sa.BigInteger().with_variant(sa.Integer, "sqlite"),
        primary_key=True,
        autoincrement=True,
    ),
    # "<stream partition>:<entry id>/<index>": unique, so a redelivered event lands once.
    sa.Column("event_id", sa.String(64), nullable=False, unique=True),
    sa.Column("at_ms", sa.BigInteger, nullable=False),
    sa.Column("op_id", sa.String(600), nullable=False),
    sa.Column("kind", sa.String(32), nullable=False),
    sa.Column("node_id", sa.String(64), nullable=False),
    sa.Column("sku", sa.String(64), nullable=False),
    sa.Column("d_on_hand", sa.BigInteger, nullable=False),
    sa.Column("d_reserved", sa.BigInteger, nullable=False),
    sa.Column("d_held", sa.BigInteger, nullable=False),
    sa.Column("d_inbound", sa.BigInteger, nullable=False),
    sa.Column("on_hand", sa.BigInteger, nullable=False),
    sa.Column("reserved", sa.BigInteger, nullable=False),
    sa.Column("held", sa.BigInteger, nullable=False),
    sa.Column("safety_stock", sa.BigInteger, nullable=False),
    sa.Column("inbound", sa.BigInteger, nullable=False),
    sa.Column("version", sa.BigInteger, nullable=False),
    sa.Column("ref", sa.String(200), nullable=False),
    sa.Index("ix_events_position", "node_id", "sku", "seq"),
)


# The projection of the live ledger's reservations, transfers and holds: one row per part (a
# record or document as the scripts store it in one partition), the state last seen by the
# projector, kept so that ``omnistock rebuild`` can put every one back exactly.
documents = sa.Table(
    "ledger_documents",
    metadata,
    # The reservation, transfer or hold id, and the partition of this part.
    sa.Column("doc_id", sa.String(64), primary_key=True),
    sa.Column("part", sa.Integer, primary_key=True, autoincrement=False),
    # "r" reservation (a record, <tag>:r:<id>), "t" transfer, "h" hold (documents, <tag>:d:<id>).
    sa.Column("kind", sa.String(1), nullable=False),
    # The script's status letter, and whether it is still open (not terminal).
    sa.Column("status", sa.String(1), nullable=False),
    sa.Column("is_open", sa.Boolean, nullable=False),
    # The JSON exactly as the scripts stored it.
    sa.Column("raw", sa.Text, nullable=False),
    # The ledger deadline of an active reservation or an open hold (its member of the deadline
    # set), in ledger milliseconds; null for anything else.
    sa.Column("deadline_ms", sa.BigInteger, nullable=True),
    # When the key's time to live runs out, in server milliseconds (finished parts); null when
    # it has none.
    sa.Column("expires_at_ms", sa.BigInteger, nullable=True),
    # The last entry id of the part's event stream when it was read, zero-padded so that text
    # order is stream order: a read older than the row's does not overwrite it.
    sa.Column("seen", sa.String(48), nullable=False),
    sa.Column("updated_at_ms", sa.BigInteger, nullable=False),
    sa.Index("ix_ledger_documents_open", "is_open", "kind"),
)


def default_url(data_dir: Path) -> str:
    return f"sqlite+aiosqlite:///{(data_dir / 'omnistock.db').resolve()}"


def open_engine(url: str, *, timeout_s: float) -> AsyncEngine:
    """An engine whose every wait is bounded, so a database that is down fails requests fast."""
    if url.startswith("sqlite"):
        return create_async_engine(url, connect_args={"timeout": timeout_s})
    connect_args: dict = {}
    if "+asyncpg" in url:
        connect_args = {"timeout": timeout_s, "command_timeout": timeout_s}
    return create_async_engine(
        url,
        connect_args=connect_args,
        pool_pre_ping=True,
        pool_timeout=timeout_s,
        pool_size=5,
        max_overflow=5,
    )


async def create_schema(engine: AsyncEngine) -> None:
    """Brings the database to the current schema (Alembic migrations)."""
    from omnistock.store.migrate import upgrade

    await upgrade(engine)


async def ping(engine: AsyncEngine) -> None:
    async with engine.connect() as conn:
        await conn.execute(sa.text("SELECT 1"))
