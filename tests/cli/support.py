"""Helpers of the CLI tests: running ``omnistock`` in-process against a data directory of the
test's own, and reading positions back."""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from omnistock.domain.node import Node
from omnistock.runtime import cli
from omnistock.runtime.settings import Settings
from omnistock.runtime.targets import local_target

ENV = (
    "OMNISTOCK_REDIS_URL",
    "OMNISTOCK_REDIS_CLUSTER",
    "OMNISTOCK_DATABASE_URL",
    "OMNISTOCK_API_KEYS",
    "OMNISTOCK_KEY",
    "OMNISTOCK_PROJECTOR",
)


def use_data_dir(
    monkeypatch: pytest.MonkeyPatch, data_dir: Path, redis_url: str | None = None
) -> Settings:
    """Points ``omnistock`` at ``data_dir`` (and ``redis_url``, else the embedded default)."""
    for name in ENV:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("OMNISTOCK_DATA_DIR", str(data_dir))
    if redis_url is not None:
        monkeypatch.setenv("OMNISTOCK_REDIS_URL", redis_url)
    return Settings.from_env()


def omnistock(*argv: str) -> int:
    """``omnistock ARGV`` in-process; in a thread of its own, because the command runs its own
    event loop and an async test is already inside one."""
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(cli.main, list(argv)).result()


async def make_nodes(settings: Settings, *node_ids: str) -> None:
    async with local_target(settings) as target:
        for node_id in node_ids:
            await target.put_node(Node(node_id=node_id, lat=40.7, lon=-74.0, kind="store"))


async def positions(
    settings: Settings, pairs: Sequence[tuple[str, str]]
) -> dict[tuple[str, str], tuple[int, int, int]]:
    """(on_hand, safety_stock, version) of each (node, sku)."""
    async with local_target(settings) as target:
        ledger = target.ledger
        out = {}
        for node_id, sku in pairs:
            p = await ledger.position(node_id, sku)
            out[(node_id, sku)] = (p.on_hand, p.safety_stock, p.version)
        return out
