"""Schema migrations (Alembic), applied at start-up before any worker runs."""

from __future__ import annotations

from importlib import resources

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from alembic.script import ScriptDirectory
from sqlalchemy.ext.asyncio import AsyncEngine

HEAD = "head"
FIRST = "0001"
"""The revision that creates the node catalog; databases made before migrations existed had
exactly that table, and are stamped at it before upgrading."""


def _config(connection: sa.Connection) -> Config:
    config = Config()
    config.set_main_option(
        "script_location", str(resources.files("omnistock.store").joinpath("migrations"))
    )
    config.attributes["connection"] = connection
    return config


def _upgrade(connection: sa.Connection, revision: str) -> None:
    config = _config(connection)
    tables = sa.inspect(connection).get_table_names()
    if "nodes" in tables and "alembic_version" not in tables:
        command.stamp(config, FIRST)
    elif revision == HEAD and "alembic_version" in tables:
        # Every worker and tool of a service opens the database: once ``serve`` has migrated
        # it, they find it at head and leave Alembic's migration machinery alone.
        at = connection.execute(sa.text("SELECT version_num FROM alembic_version")).scalar()
        if at == ScriptDirectory.from_config(config).get_current_head():
            return
    command.upgrade(config, revision)


async def upgrade(engine: AsyncEngine, revision: str = HEAD) -> None:
    async with engine.begin() as conn:
        if engine.dialect.name == "sqlite":
            # WAL lets readers in other workers go on while one writes.
            await conn.exec_driver_sql("PRAGMA journal_mode=WAL")
        await conn.run_sync(_upgrade, revision)


async def current(engine: AsyncEngine) -> str | None:
    async with engine.connect() as conn:
        tables = await conn.run_sync(lambda c: sa.inspect(c).get_table_names())
        if "alembic_version" not in tables:
            return None
        return (await conn.execute(sa.text("SELECT version_num FROM alembic_version"))).scalar()
