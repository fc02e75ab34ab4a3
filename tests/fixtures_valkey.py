"""Session-wide embedded Valkey fixtures: one standalone server and one 3-shard cluster.

Both are started once per test session (a cluster takes ~2 s to settle) and checked
for an unexpected crash at teardown, so a server that died mid-session fails loudly
instead of showing up only as unrelated connection errors.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from omnistock.runtime.valkey_cluster import EmbeddedCluster
from omnistock.runtime.valkey_server import EmbeddedValkey


@pytest.fixture(scope="session")
def valkey_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedValkey]:
    """A standalone Valkey with strict durability (AOF, appendfsync always)."""
    server = EmbeddedValkey(tmp_path_factory.mktemp("valkey"), durability="strict")
    server.start()
    try:
        yield server
        server.check()
    finally:
        server.stop()


@pytest.fixture(scope="session")
def valkey_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedCluster]:
    """A 3-shard Valkey cluster without replicas, all slots assigned and agreed on."""
    cluster = EmbeddedCluster(tmp_path_factory.mktemp("valkey-cluster"), shards=3)
    cluster.start()
    try:
        yield cluster
        cluster.check()
    finally:
        cluster.stop()


@pytest.fixture(scope="session")
def redis_url(valkey_server: EmbeddedValkey) -> str:
    return valkey_server.url


def library_names(server: EmbeddedValkey) -> set[str]:
    """The function libraries loaded on ``server``."""
    with server.client() as direct:
        return {
            dict(zip(lib[::2], lib[1::2], strict=True))[b"library_name"].decode()
            for lib in direct.function_list()
        }
