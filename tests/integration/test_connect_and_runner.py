"""Opening a ledger against servers configured in different ways, and the runner's recovery."""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from pathlib import Path

import pytest
from redis import exceptions as redis_errors

from omnistock.domain.stock import Line
from omnistock.reservations import keys
from omnistock.reservations.connect import DurabilityError, EvictionError, open_ledger
from omnistock.reservations.runner import LedgerUnavailable
from omnistock.reservations.scripts import ScriptSettings
from omnistock.runtime.valkey_cluster import EmbeddedCluster
from omnistock.runtime.valkey_server import EmbeddedValkey
from tests.fixtures_valkey import library_names


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


@pytest.mark.parametrize("policy", ["allkeys-lru", "volatile-ttl"])
@pytest.mark.parametrize("durability", ["strict", "fast"])
async def test_a_server_that_evicts_when_full_is_refused(fresh_server, policy, durability):
    server = fresh_server(**{"maxmemory-policy": policy})

    with pytest.raises(EvictionError, match=f"maxmemory-policy is {policy}.*noeviction"):
        await open_ledger(server.url, durability=durability)


async def test_a_server_that_hides_its_configuration_is_trusted_with_a_warning(
    fresh_server, caplog
):
    server = fresh_server()
    server.client().execute_command("ACL", "SETUSER", "ledger", "on", ">pw", "~*", "&*", "+@all")
    server.client().execute_command("ACL", "SETUSER", "ledger", "-config")
    url = f"redis://ledger:pw@{server.host}:{server.port}/0"

    with caplog.at_level(logging.WARNING, logger="omnistock.ledger"):
        conn = await open_ledger(url, durability="fast")
    try:
        assert (await conn.ledger.set_stock("s", "n1", "sku", 3)).on_hand == 3
    finally:
        await conn.aclose()
    assert "cannot read the server's maxmemory-policy" in caplog.text


async def test_a_user_not_allowed_to_load_functions_is_refused_with_the_command_named(
    fresh_server,
):
    """The ledger runs as a function library: a user whose ACL denies FUNCTION cannot run it,
    and opening the ledger says so at once (serve then stops with the reason)."""
    server = fresh_server()
    server.client().execute_command("ACL", "SETUSER", "nofn", "on", ">pw", "~*", "&*", "+@all")
    server.client().execute_command("ACL", "SETUSER", "nofn", "-function")
    url = f"redis://nofn:pw@{server.host}:{server.port}/0"

    with pytest.raises(redis_errors.NoPermissionError, match="function"):
        await open_ledger(url, durability="fast")


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


async def test_functions_flushed_from_the_server_are_loaded_again(fresh_server):
    server = fresh_server()
    conn = await open_ledger(server.url)
    try:
        await conn.ledger.set_stock("before", "n1", "sku", 3)
        await conn.client.function_flush()

        after = await conn.ledger.set_stock("after", "n1", "sku", 5)
        await conn.client.function_flush()
        read = await conn.ledger.with_dry_reads().position("n1", "sku")  # the read-only twin

        assert after.on_hand == 5
        assert read.on_hand == 5
    finally:
        await conn.aclose()


async def test_a_restarted_server_keeps_the_ledger_functions(fresh_server):
    """Functions live in the AOF: a server back from a restart runs the ledger without a load."""
    server = fresh_server()
    conn = await open_ledger(server.url)
    try:
        await conn.ledger.set_stock("before", "n1", "sku", 3)
        server.stop()
        server.start()
        assert conn.runner.libraries() <= library_names(server)
        assert (await conn.ledger.position("n1", "sku")).on_hand == 3
    finally:
        await conn.aclose()


# Another version of the code: other settings give the ledger's libraries another digest.
OTHER_VERSION = ScriptSettings(op_ttl_ms=3_600_000)
UNRELATED = {
    name: f"#!lua name={name}\nredis.register_function('{name}', function() return 1 end)"
    for name in ("shop_tools", "omnistock_custom")
}


async def test_the_libraries_of_other_versions_are_pruned_and_the_rest_stay(fresh_server):
    server = fresh_server()
    with server.client() as direct:
        for source in UNRELATED.values():
            direct.function_load(source)
    conn = await open_ledger(server.url)
    other = await open_ledger(server.url, script_settings=OTHER_VERSION)
    try:
        theirs = sorted(other.runner.libraries())
        assert not set(theirs) & conn.runner.libraries()

        listed = await conn.runner.prune_other_versions(dry_run=True)
        assert listed == theirs
        assert set(theirs) <= library_names(server)

        pruned = await conn.runner.prune_other_versions()
        assert pruned == theirs
        assert library_names(server) == conn.runner.libraries() | set(UNRELATED)
        assert await conn.runner.prune_other_versions() == []

        # A process of the other version still running loads its library again at its next call.
        assert (await other.ledger.set_stock("after-prune", "n1", "sku", 4)).on_hand == 4
        assert (await conn.ledger.position("n1", "sku")).on_hand == 4
    finally:
        await other.aclose()
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


def _script_calls(server: EmbeddedValkey) -> int:
    with server.client() as direct:
        return int(direct.info("commandstats").get("cmdstat_fcall", {}).get("calls", 0))


@pytest.mark.cluster
async def test_a_cluster_with_one_evicting_primary_is_refused(valkey_cluster: EmbeddedCluster):
    last = valkey_cluster.primaries[-1]
    with last.client() as client:
        client.config_set("maxmemory-policy", "allkeys-lfu")
        try:
            with pytest.raises(EvictionError, match="allkeys-lfu"):
                await open_ledger(valkey_cluster.url, cluster=True)
        finally:
            client.config_set("maxmemory-policy", "noeviction")


async def test_a_burst_on_a_cluster_goes_out_as_one_script_call_per_node(
    valkey_cluster: EmbeddedCluster,
) -> None:
    """Operations queue per cluster node: a burst of concurrent calls is one batch per node,
    not batches cut from the whole burst and split again over the nodes."""
    conn = await open_ledger(valkey_cluster.url, cluster=True)
    run = uuid.uuid4().hex[:8]
    skus = [f"burst-{run}-{i}" for i in range(48)]
    by_node: dict[str, int] = {}
    for sku in skus:
        name = conn.client.get_node_from_key(keys.tag(keys.partition_of(sku))).name
        by_node[name] = by_node.get(name, 0) + 1
    assert len(by_node) == 3 and max(by_node.values()) <= 32  # one batch's worth per node
    try:
        before = {s.port: _script_calls(s) for s in valkey_cluster.primaries}
        await asyncio.gather(*(conn.ledger.set_stock(f"{s}:set", "n1", s, 5) for s in skus))
        after = {s.port: _script_calls(s) for s in valkey_cluster.primaries}
        positions = await asyncio.gather(*(conn.ledger.position("n1", s) for s in skus))
    finally:
        await conn.aclose()
    assert {port: after[port] - before[port] for port in after} == dict.fromkeys(after, 1)
    assert [p.on_hand for p in positions] == [5] * len(skus)


async def test_a_hole_in_the_clients_slot_map_is_learned_again_and_the_call_goes_through(
    valkey_cluster: EmbeddedCluster,
) -> None:
    """A slot the client's map has no node for (a map learned while a shard was lost, say) is
    reported as the ledger unavailable, which makes the runner learn the map again; the ledger
    retries (every operation is idempotent), so the call goes through on the healthy cluster."""
    conn = await open_ledger(valkey_cluster.url, cluster=True)
    sku = f"hole-{uuid.uuid4().hex[:8]}"
    slot = conn.client.keyslot(keys.tag(keys.partition_of(sku)))
    try:
        await conn.ledger.set_stock(f"{sku}:set", "n1", sku, 3)
        conn.client.nodes_manager.slots_cache.pop(slot)
        position = await asyncio.wait_for(conn.ledger.position("n1", sku), timeout=5)
        assert conn.client.nodes_manager.slots_cache.get(slot)
    finally:
        await conn.aclose()
    assert position.on_hand == 3


async def test_the_libraries_of_other_versions_are_pruned_on_every_primary(
    valkey_cluster: EmbeddedCluster,
) -> None:
    conn = await open_ledger(valkey_cluster.url, cluster=True)
    other = await open_ledger(valkey_cluster.url, cluster=True, script_settings=OTHER_VERSION)
    try:
        theirs = other.runner.libraries()
        assert all(theirs <= library_names(primary) for primary in valkey_cluster.primaries)

        pruned = await conn.runner.prune_other_versions()

        assert theirs <= set(pruned)
        for primary in valkey_cluster.primaries:
            ledger_libraries = {
                n for n in library_names(primary) if n.startswith("omnistock_ledger")
            }
            assert ledger_libraries == conn.runner.libraries()
        sku = f"prune-{uuid.uuid4().hex[:8]}"
        assert (await other.ledger.set_stock(f"{sku}:set", "n1", sku, 2)).on_hand == 2
    finally:
        await other.aclose()
        await conn.aclose()
