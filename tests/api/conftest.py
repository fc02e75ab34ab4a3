"""The API under test: the app as served (edge layer included), through its ASGI interface,
on the session's real Valkey and a SQLite file of its own.

Keys of every role are configured; ``ids`` gives each test node and SKU names of its own, so
tests share the server without seeing each other's data.
"""

from __future__ import annotations

import itertools
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from litestar.testing import AsyncTestClient

from omnistock.api.app import create_asgi
from omnistock.runtime.settings import Settings
from omnistock.runtime.valkey_server import EmbeddedValkey

KEYS = {
    "admin": "test-admin-key-0000000001",
    "oms": "test-oms-key-000000000002",
    "storefront": "test-storefront-key-00003",
}
ROLES = tuple(KEYS)


def auth(role: str, **extra: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {KEYS[role]}", **extra}


def settings_for(data_dir: Path, redis_url: str, **overrides: Any) -> Settings:
    fields: dict[str, Any] = {
        "data_dir": data_dir,
        "redis_url": redis_url,
        "api_keys": ",".join(f"{key}:{role}" for role, key in KEYS.items()),
        # The sweeper stays out of the way: expiry must be exact without it.
        "sweep_interval_ms": 600_000,
        # The session's Valkey is shared by every test's app, each with a database of its own:
        # only tests of the journal, on a Valkey of their own, run the projector.
        "projector": False,
    }
    fields.update(overrides)
    return Settings(**fields)


class Ids:
    """Unique names for one test."""

    def __init__(self) -> None:
        self.uid = uuid.uuid4().hex[:10]
        self._serial = itertools.count()

    def node(self, label: str = "n") -> str:
        return f"{label}-{self.uid}-{next(self._serial)}"

    def sku(self, label: str = "s") -> str:
        return f"{label}-{self.uid}-{next(self._serial)}"

    def key(self) -> str:
        return f"idem-{self.uid}-{next(self._serial)}"


@pytest.fixture
def ids() -> Ids:
    return Ids()


@pytest.fixture
async def client(tmp_path: Path, valkey_server: EmbeddedValkey) -> AsyncIterator[AsyncTestClient]:
    app = create_asgi(settings_for(tmp_path, valkey_server.url))
    async with AsyncTestClient(app=app, timeout=10) as c:
        yield c


NODE_BODY = {
    "name": "Test node",
    "kind": "warehouse",
    "lat": 52.52,
    "lon": 13.405,
    "ships": True,
    "pickup": False,
}


async def make_node(client: AsyncTestClient, node_id: str, **fields: Any) -> dict[str, Any]:
    response = await client.put(
        f"/v1/nodes/{node_id}", json={**NODE_BODY, **fields}, headers=auth("admin")
    )
    assert response.status_code in (200, 201), response.text
    return response.json()


async def set_stock(client: AsyncTestClient, node_id: str, sku: str, on_hand: int) -> None:
    response = await client.put(
        f"/v1/stock/{node_id}/{sku}", json={"on_hand": on_hand}, headers=auth("admin")
    )
    assert response.status_code == 200, response.text


async def position(client: AsyncTestClient, node_id: str, sku: str) -> dict[str, Any]:
    response = await client.get(f"/v1/stock/{node_id}/{sku}", headers=auth("admin"))
    assert response.status_code == 200, response.text
    return response.json()
