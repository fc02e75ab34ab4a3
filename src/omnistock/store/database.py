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
    async with engine.begin() as conn:
        if engine.dialect.name == "sqlite":
            # WAL lets readers in other workers go on while one writes.
            await conn.exec_driver_sql("PRAGMA journal_mode=WAL")
        await conn.run_sync(metadata.create_all)


async def ping(engine: AsyncEngine) -> None:
    async with engine.connect() as conn:
        await conn.execute(sa.text("SELECT 1"))
