"""Behaviour of the embedded Valkey runtime against the real bundled server."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import redis
from redis.asyncio.cluster import RedisCluster
from redis.crc import key_slot

from omnistock.runtime.valkey_cluster import SLOTS, EmbeddedCluster
from omnistock.runtime.valkey_server import (
    ALLOCATOR_TUNABLES,
    EmbeddedValkey,
    ValkeyCrashed,
    ValkeyStartError,
    bundled_mimalloc,
    server_env,
)
from tests.integration.process_support import gone


@pytest.fixture
def server(tmp_path: Path):
    """A private strict server, for tests that kill or stop it."""
    with EmbeddedValkey(tmp_path / "valkey") as srv:
        yield srv


def _port_open(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


# -- standalone server ------------------------------------------------------------------


def test_session_server_answers_ping(valkey_server: EmbeddedValkey, redis_url: str) -> None:
    assert valkey_server.is_running()
    assert redis_url == f"redis://127.0.0.1:{valkey_server.port}"
    with redis.Redis.from_url(redis_url) as client:
        assert client.ping()
        assert client.info("server")["process_id"] == valkey_server.pid


@pytest.mark.parametrize(("durability", "fsync"), [("strict", "always"), ("fast", "everysec")])
def test_aof_settings(tmp_path: Path, durability: str, fsync: str) -> None:
    with (
        EmbeddedValkey(tmp_path, durability=durability) as srv,
        srv.client(decode_responses=True) as client,
    ):
        config = client.config_get("*")
    assert config["appendonly"] == "yes"
    assert config["appendfsync"] == fsync
    assert config["aof-use-rdb-preamble"] == "yes"
    assert config["save"] == ""
    assert Path(config["dir"]) == tmp_path.resolve()


def test_server_gets_allocator_tuning_and_operator_tunables_win(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GLIBC_TUNABLES", "glibc.malloc.mxfast=64")
    env = server_env()
    entries = env["GLIBC_TUNABLES"].split(":")
    assert entries[: len(ALLOCATOR_TUNABLES)] == list(ALLOCATOR_TUNABLES)
    # glibc takes the last setting of a tunable: the operator's comes after ours
    assert entries[-1] == "glibc.malloc.mxfast=64"
    assert env["PATH"] == os.environ["PATH"]
    # and the server starts with it
    with EmbeddedValkey(tmp_path) as srv, srv.client() as client:
        assert client.ping()


def _loaded_libraries(pid: int) -> str:
    return Path(f"/proc/{pid}/maps").read_text()


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="preloading is Linux's")
def test_the_server_allocates_with_mimalloc_unless_told_libc(tmp_path: Path) -> None:
    library = bundled_mimalloc()
    assert library is not None, "the lock installs cmeel-mimalloc on Linux"
    with EmbeddedValkey(tmp_path / "mimalloc") as srv, srv.client() as client:
        assert client.ping()
        assert str(library) in _loaded_libraries(srv.pid)
    with EmbeddedValkey(tmp_path / "libc", allocator="libc") as srv, srv.client() as client:
        assert client.ping()
        assert "mimalloc" not in _loaded_libraries(srv.pid)
    with pytest.raises(ValueError, match="allocator"):
        EmbeddedValkey(tmp_path / "other", allocator="jemalloc")


def test_a_library_the_operator_preloads_comes_before_mimalloc(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("LD_PRELOAD", "/opt/their/libprofiler.so")
    preload = server_env("mimalloc")["LD_PRELOAD"].split()
    assert preload[0] == "/opt/their/libprofiler.so"
    assert preload[1:] == [str(bundled_mimalloc())]
    assert server_env("libc")["LD_PRELOAD"] == "/opt/their/libprofiler.so"


def test_on_mimalloc_the_server_rewrites_its_aof_in_a_child_and_replays_it(
    tmp_path: Path,
) -> None:
    """The AOF rewrite runs in a forked child, which inherits the allocator's state."""
    with EmbeddedValkey(tmp_path) as srv:
        with srv.client() as client:
            client.hset("h", mapping={f"f{i}": "x" * (i % 50) for i in range(5000)})
            client.bgrewriteaof()
            deadline = time.monotonic() + 20
            while (
                client.info("persistence")["aof_rewrite_in_progress"]
                or client.info("persistence")["aof_rewrite_scheduled"]
            ):
                assert time.monotonic() < deadline, "the rewrite did not finish"
                time.sleep(0.05)
            assert client.info("persistence")["aof_last_bgrewrite_status"] == "ok"
            client.hset("h", "after", "rewrite")
        srv.kill()
        srv.start()
        with srv.client(decode_responses=True) as client:
            assert client.hlen("h") == 5001
            assert client.hget("h", "f49") == "x" * 49
            assert client.hget("h", "after") == "rewrite"


def test_unknown_durability_is_rejected(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="durability"):
        EmbeddedValkey(tmp_path, durability="eventually")


def test_strict_writes_survive_sigkill_and_restart(server: EmbeddedValkey) -> None:
    port = server.port
    with server.client() as client:
        for _ in range(250):
            client.incr("counter")
        client.hset("stock:sku-1", mapping={"on_hand": 7, "reserved": 2})
    server.kill()
    assert not server.is_running()
    assert not _port_open(port)

    server.start()
    assert server.port == port
    with server.client(decode_responses=True) as client:
        assert client.get("counter") == "250"
        assert client.hgetall("stock:sku-1") == {"on_hand": "7", "reserved": "2"}


def test_stop_leaves_no_process_and_is_idempotent(tmp_path: Path) -> None:
    srv = EmbeddedValkey(tmp_path)
    srv.start()
    pid, port = srv.pid, srv.port
    assert pid is not None
    srv.stop()
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)  # exited and reaped, not a zombie
    assert not _port_open(port)
    assert not srv.is_running() and srv.pid is None
    srv.stop()
    srv.check()  # a stopped server is not a crashed one


def test_crash_is_reported_by_check_and_monitor(server: EmbeddedValkey) -> None:
    exits: list[int] = []
    fired = threading.Event()

    def on_exit(code: int) -> None:
        exits.append(code)
        fired.set()

    server.monitor(on_exit)
    server.check()
    os.kill(server.pid, signal.SIGKILL)

    assert fired.wait(timeout=10), "monitor callback did not fire"
    assert exits == [-signal.SIGKILL]
    with pytest.raises(ValkeyCrashed, match=r"exited unexpectedly with code -9"):
        server.check()


def test_kill_is_deliberate_and_monitor_rearms_on_restart(server: EmbeddedValkey) -> None:
    exits: list[int] = []
    fired = threading.Event()
    server.monitor(lambda code: (exits.append(code), fired.set()))

    server.kill()  # a fault test's deliberate kill is not a crash...
    server.check()
    server.start()
    os.kill(server.pid, signal.SIGKILL)  # ...but a crash after the restart is reported

    assert fired.wait(timeout=10)
    assert exits == [-signal.SIGKILL]


def test_a_data_dir_holds_one_server_at_a_time(server: EmbeddedValkey) -> None:
    """Two servers on one data dir would append to the same AOF: the second is refused for as
    long as the first lives, and starts on its data once it is gone."""
    server.client().set("first", "1")
    second = EmbeddedValkey(server.data_dir)
    with pytest.raises(ValkeyStartError, match=f"in use by valkey-server pid {server.pid}"):
        second.start(timeout=0.5)
    assert server.is_running()
    server.kill()
    second.start()
    try:
        assert second.client().get("first") == b"1"
    finally:
        second.stop()


def test_a_server_stops_when_the_process_that_started_it_is_killed(tmp_path: Path) -> None:
    owner = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time\n"
            "from omnistock.runtime.valkey_server import EmbeddedValkey\n"
            "server = EmbeddedValkey(sys.argv[1])\n"
            "server.start()\n"
            "print(server.pid, flush=True)\n"
            "time.sleep(600)\n",
            str(tmp_path / "valkey"),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert owner.stdout is not None
        pid = int(owner.stdout.readline())
        os.kill(owner.pid, signal.SIGKILL)
        owner.wait()
        deadline = time.monotonic() + 10
        while not gone(pid):
            assert time.monotonic() < deadline, "the server outlived the process that owned it"
            time.sleep(0.05)
    finally:
        owner.kill()
        owner.wait()


def test_bad_config_raises_start_error_with_log(tmp_path: Path) -> None:
    srv = EmbeddedValkey(tmp_path, extra_config={"no-such-directive": "1"})
    with pytest.raises(ValkeyStartError, match="no-such-directive") as err:
        srv.start()
    assert "exited with code" in str(err.value)
    assert not srv.is_running()


def test_port_taken_by_another_server_is_not_mistaken_for_ours(
    valkey_server: EmbeddedValkey, tmp_path: Path
) -> None:
    srv = EmbeddedValkey(tmp_path, port=valkey_server.port)
    with pytest.raises(ValkeyStartError, match="exited with code"):
        srv.start()
    assert valkey_server.is_running()


# -- cluster ----------------------------------------------------------------------------


def _slot_ranges(node: EmbeddedValkey) -> list[tuple[int, int, int]]:
    """(first, last, primary port) for every range in this node's CLUSTER SLOTS."""
    with node.client() as client:
        slots = client.execute_command("CLUSTER", "SLOTS")
    return [(first, last, owners[0][1]) for first, last, *owners in slots]


def _key_on(cluster: EmbeddedCluster, port: int, prefix: str) -> str:
    ranges = _slot_ranges(cluster.nodes[0])
    for i in range(10_000):
        key = f"{prefix}:{i}"
        slot = key_slot(key.encode())
        if any(first <= slot <= last and p == port for first, last, p in ranges):
            return key
    raise AssertionError(f"no key found for port {port}")


@pytest.mark.cluster
def test_cluster_is_healthy_on_every_node(valkey_cluster: EmbeddedCluster) -> None:
    assert len(valkey_cluster.nodes) == len(valkey_cluster.primaries) == 3
    assert valkey_cluster.url == valkey_cluster.primaries[0].url
    for node in valkey_cluster.nodes:
        with node.client(decode_responses=True) as client:
            info = client.execute_command("CLUSTER", "INFO")
        assert "cluster_state:ok" in info
        ranges = sorted(_slot_ranges(node))
        assert sum(last - first + 1 for first, last, _ in ranges) == SLOTS
        assert ranges[0][0] == 0 and ranges[-1][1] == SLOTS - 1
        assert {port for _, _, port in ranges} == {n.port for n in valkey_cluster.primaries}


@pytest.mark.cluster
async def test_cluster_client_reads_and_writes_every_shard(
    valkey_cluster: EmbeddedCluster,
) -> None:
    ports = [node.port for node in valkey_cluster.primaries]
    keys = {port: _key_on(valkey_cluster, port, "it:shard") for port in ports}
    client = RedisCluster.from_url(valkey_cluster.url, decode_responses=True)
    try:
        await client.initialize()  # the asyncio client loads the slot map lazily
        for port, key in keys.items():
            assert client.get_node_from_key(key).port == port
            assert await client.set(key, f"value-{port}")
        for port, key in keys.items():
            assert await client.get(key) == f"value-{port}"
    finally:
        await client.aclose()
    for node in valkey_cluster.primaries:  # each value really lives on its own shard
        with node.client(decode_responses=True) as direct:
            assert direct.get(keys[node.port]) == f"value-{node.port}"


# -- Lua key-access probes (design input for the reservation scripts) --------------------


def _owner(
    cluster: EmbeddedCluster, key: str, ranges: list[tuple[int, int, int]] | None = None
) -> EmbeddedValkey:
    slot = key_slot(key.encode())
    ranges = ranges or _slot_ranges(cluster.nodes[0])
    port = next(p for first, last, p in ranges if first <= slot <= last)
    return next(node for node in cluster.primaries if node.port == port)


def _eval_on_owner(cluster: EmbeddedCluster, script: str, key: str) -> object:
    with _owner(cluster, key).client(decode_responses=True) as client:
        return client.eval(script, 1, key)


@pytest.mark.cluster
def test_lua_may_write_undeclared_key_in_the_declared_slot(
    valkey_cluster: EmbeddedCluster,
) -> None:
    """KEYS[1]='{os.1}' but the script writes '{os.1}:undeclared' (same hash tag/slot)."""
    script = "return redis.call('SET', '{os.1}:undeclared', 'x')"
    assert _eval_on_owner(valkey_cluster, script, "{os.1}") == "OK"
    with _owner(valkey_cluster, "{os.1}").client(decode_responses=True) as client:
        assert client.get("{os.1}:undeclared") == "x"


@pytest.mark.cluster
def test_lua_cannot_reach_a_key_on_another_shard(valkey_cluster: EmbeddedCluster) -> None:
    here = _owner(valkey_cluster, "{os.1}")
    other = next(n for n in valkey_cluster.primaries if n is not here)
    foreign = _key_on(valkey_cluster, other.port, "foreign")
    script = f"return redis.call('SET', '{foreign}', 'x')"
    with pytest.raises(redis.ResponseError, match="non local key"):
        _eval_on_owner(valkey_cluster, script, "{os.1}")


@pytest.mark.cluster
def test_lua_cross_slot_on_same_shard_is_refused_only_with_shebang(
    valkey_cluster: EmbeddedCluster,
) -> None:
    """A flagless EVAL may touch another slot that happens to live on the same node (it
    would break after resharding); a '#!lua' script is held to the declared slot."""
    ranges = _slot_ranges(valkey_cluster.nodes[0])
    here = _owner(valkey_cluster, "{os.1}", ranges)
    neighbour = next(
        key
        for i in range(10_000)
        if key_slot((key := f"nb:{i}").encode()) != key_slot(b"{os.1}")
        and _owner(valkey_cluster, key, ranges) is here
    )
    body = f"return redis.call('SET', '{neighbour}', 'x')"
    assert _eval_on_owner(valkey_cluster, body, "{os.1}") == "OK"
    with pytest.raises(redis.ResponseError, match="do not hash to the same slot"):
        _eval_on_owner(valkey_cluster, "#!lua\n" + body, "{os.1}")
