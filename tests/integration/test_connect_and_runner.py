"""Opening a ledger against servers configured in different ways, and the runner's recovery."""

from __future__ import annotations

import time
import uuid
from pathlib import Path

import pytest

from omnistock.domain.stock import Line
from omnistock.reservations.connect import DurabilityError, open_ledger
from omnistock.reservations.runner import LedgerUnavailable
from omnistock.runtime.valkey_server import EmbeddedValkey


@pytest.fixture
def fresh_server(tmp_path: Path):
    servers: list[EmbeddedValkey] = []

    def start(**config: str) -> EmbeddedValkey:
        server = EmbeddedValkey(
            tmp_path / str(len(servers)), durability="strict", extra_config=config
        )
        server.start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop()


async def test_strict_durability_is_refused_by_a_server_without_an_aof(fresh_server):
    server = fresh_server(appendonly="no")

    with pytest.raises(DurabilityError):
        await open_ledger(server.url, durability="strict")


async def test_strict_durability_waits_for_the_aof_on_a_server_that_fsyncs_every_second(
    fresh_server,
):
    server = fresh_server(appendfsync="everysec")
    conn = await open_ledger(server.url, durability="strict")
    try:
        assert conn.runner._wait_aof_ms is not None
        sku = f"s-{uuid.uuid4().hex[:8]}"
        await conn.ledger.set_stock("set", "n1", sku, 3)
        reservation = await conn.ledger.reserve("r", [Line("n1", sku, 2)], ttl_ms=60_000)
        assert (await conn.ledger.position("n1", sku)).reserved == 2
        assert reservation.lines == [Line("n1", sku, 2)]
    finally:
        await conn.aclose()


async def test_fast_durability_does_not_wait_for_the_aof(fresh_server):
    server = fresh_server(appendfsync="everysec")
    conn = await open_ledger(server.url, durability="fast")
    try:
        assert conn.runner._wait_aof_ms is None
        await conn.ledger.set_stock("set", "n1", "sku", 3)
    finally:
        await conn.aclose()


async def test_scripts_flushed_from_the_server_are_loaded_again(fresh_server):
    server = fresh_server()
    conn = await open_ledger(server.url)
    try:
        await conn.ledger.set_stock("before", "n1", "sku", 3)
        await conn.client.script_flush()

        after = await conn.ledger.set_stock("after", "n1", "sku", 5)

        assert after.on_hand == 5
    finally:
        await conn.aclose()


async def test_a_server_that_is_down_is_reported_quickly_and_the_ledger_recovers(fresh_server):
    server = fresh_server()
    conn = await open_ledger(server.url, timeout_s=0.5)
    try:
        await conn.ledger.set_stock("up", "n1", "sku", 3)
        server.kill()

        started = time.monotonic()
        with pytest.raises(LedgerUnavailable):
            await conn.ledger.position("n1", "sku")
        assert time.monotonic() - started < 3

        server.start()
        assert (await conn.ledger.position("n1", "sku")).on_hand == 3
    finally:
        await conn.aclose()
