"""Schema migrations on SQLite and PostgreSQL: from nothing, from the previous revision, and from a
database made before migrations existed (the node catalog alone, no ``alembic_version``).

The head revision is read from the migration scripts, so a new revision needs no change here.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from importlib import resources

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy.ext.asyncio import AsyncEngine

from omnistock.store import migrate
from omnistock.store.database import metadata, nodes, open_engine

SCRIPTS = ScriptDirectory(str(resources.files("omnistock.store").joinpath("migrations")))
HEAD = SCRIPTS.get_current_head()

NODE_ROW = {
    "node_id": "dc-1",
    "name": "Old DC",
    "kind": "warehouse",
    "lat": 52.5,
    "lon": 13.4,
    "ships": True,
    "pickup": False,
    "capacity_per_day": None,
    "priority": 1,
    "cost_per_shipment": 4.0,
    "cost_per_km": 0.01,
    "cost_per_unit": 0.2,
    "pickup_ready_minutes": 30,
    "changed_ns": 1,
}


@pytest.fixture
async def engine(database_url: str) -> AsyncIterator[AsyncEngine]:
    engine = open_engine(database_url, timeout_s=10)
    try:
        yield engine
    finally:
        await engine.dispose()


async def _tables(engine: AsyncEngine) -> set[str]:
    async with engine.connect() as conn:
        return set(await conn.run_sync(lambda c: sa.inspect(c).get_table_names()))


async def _schema_drift(engine: AsyncEngine) -> list:
    """What Alembic's autogenerate would change to bring the database to ``database.metadata``:
    nothing, when the migrations build the schema the code declares."""

    def compare(conn: sa.Connection) -> list:
        context = MigrationContext.configure(conn, opts={"compare_type": False})
        return compare_metadata(context, metadata)

    async with engine.connect() as conn:
        return await conn.run_sync(compare)


async def _node_ids(engine: AsyncEngine) -> list[str]:
    async with engine.connect() as conn:
        return list((await conn.execute(sa.select(nodes.c.node_id))).scalars())


def test_head_is_read_from_the_scripts_and_first_is_the_node_catalog() -> None:
    assert HEAD is not None
    chain = [s.revision for s in SCRIPTS.walk_revisions()]  # head first
    assert chain[-1] == migrate.FIRST == "0001"
    assert chain[0] == HEAD
    assert "0002" in chain


async def test_empty_database_is_upgraded_to_head(engine: AsyncEngine) -> None:
    assert await migrate.current(engine) is None

    await migrate.upgrade(engine)

    assert await migrate.current(engine) == HEAD
    assert {"alembic_version", "nodes", "events"} <= await _tables(engine)
    assert await _schema_drift(engine) == []


async def test_upgrade_at_head_changes_nothing(engine: AsyncEngine) -> None:
    await migrate.upgrade(engine)
    async with engine.begin() as conn:
        await conn.execute(nodes.insert().values(NODE_ROW))

    await migrate.upgrade(engine)

    assert await migrate.current(engine) == HEAD
    assert await _node_ids(engine) == ["dc-1"]


async def test_database_at_the_previous_revision_is_upgraded_keeping_its_rows(
    engine: AsyncEngine,
) -> None:
    await migrate.upgrade(engine, "0001")
    assert await migrate.current(engine) == "0001"
    assert "events" not in await _tables(engine)
    async with engine.begin() as conn:
        await conn.execute(nodes.insert().values(NODE_ROW))

    await migrate.upgrade(engine)

    assert await migrate.current(engine) == HEAD
    assert "events" in await _tables(engine)
    assert await _node_ids(engine) == ["dc-1"]
    assert await _schema_drift(engine) == []


async def test_every_revision_upgrades_to_the_next(engine: AsyncEngine) -> None:
    chain = [s.revision for s in SCRIPTS.walk_revisions()][::-1]  # oldest first
    for revision in chain:
        await migrate.upgrade(engine, revision)
        assert await migrate.current(engine) == revision
    assert chain[-1] == HEAD


async def test_database_made_before_migrations_is_stamped_and_upgraded(
    engine: AsyncEngine,
) -> None:
    # What omnistock created before it had migrations: the node catalog and nothing else.
    async with engine.begin() as conn:
        await conn.run_sync(lambda c: nodes.create(c))
        await conn.execute(nodes.insert().values(NODE_ROW))
    assert await _tables(engine) == {"nodes"}
    assert await migrate.current(engine) is None

    await migrate.upgrade(engine)

    assert await migrate.current(engine) == HEAD
    assert {"alembic_version", "nodes", "events"} <= await _tables(engine)
    assert await _node_ids(engine) == ["dc-1"]
    assert await _schema_drift(engine) == []
