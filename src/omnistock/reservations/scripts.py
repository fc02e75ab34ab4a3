"""Builds the ledger script: the shared prelude, one function per operation file, and the batch
runner that executes many operations in one call."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from importlib import resources

from omnistock.reservations.keys import NAMESPACE


@dataclass(frozen=True, slots=True)
class Script:
    name: str
    source: str
    sha: str

    @classmethod
    def from_source(cls, name: str, source: str) -> Script:
        return cls(name, source, hashlib.sha1(source.encode()).hexdigest())


@dataclass(frozen=True, slots=True)
class ScriptSettings:
    op_ttl_ms: int = 48 * 3600 * 1000
    record_ttl_ms: int = 7 * 24 * 3600 * 1000
    stream_maxlen: int = 100_000


def _lua_dir():
    return resources.files("omnistock.reservations").joinpath("lua")


def operation_names() -> list[str]:
    return sorted(
        entry.name.removesuffix(".lua")
        for entry in _lua_dir().iterdir()
        if entry.name.endswith(".lua") and not entry.name.startswith("_")
    )


# The operations that only read. Each releases what is due first, so each may write; their dry
# twin (build_dry_read_script) writes nothing.
DRY_READS = ("availability", "document", "position", "reservation")


def build_ledger_script(settings: ScriptSettings | None = None) -> Script:
    # The shebang makes the server refuse the whole call up front when it is out of memory,
    # instead of failing part-way through a batch. On a cluster a batch holds operations of
    # several partitions (slots) that one node owns: each operation still touches only its own
    # partition's keys, and the server refuses any key the node does not own.
    return _assemble(
        "ledger", "#!lua flags=allow-cross-slot-keys", operation_names(), settings, dry=False
    )


def build_dry_read_script(settings: ScriptSettings | None = None) -> Script:
    """The read-only twin of the ledger script: its read operations, run by the same batch
    runner, answer what they would after releasing what is due, and write nothing (see
    _dry.lua). Declared no-writes, so Valkey runs it even at maxmemory, where it refuses the
    ledger script; the ledger falls back on it there (RedisLedger)."""
    flags = "#!lua flags=no-writes,allow-cross-slot-keys"
    return _assemble("ledger-dry-reads", flags, list(DRY_READS), settings, dry=True)


def _assemble(
    name: str, shebang: str, ops: list[str], settings: ScriptSettings | None, *, dry: bool
) -> Script:
    settings = settings or ScriptSettings()
    prelude = (
        _lua_dir()
        .joinpath("_lib.lua")
        .read_text()
        .replace("__OP_TTL_MS__", str(settings.op_ttl_ms))
        .replace("__RECORD_TTL_MS__", str(settings.record_ttl_ms))
        .replace("__STREAM_MAXLEN__", str(settings.stream_maxlen))
        .replace("__NS__", NAMESPACE)
    )
    body = [prelude, "local OPS = {}"]
    for op in ops:
        text = _lua_dir().joinpath(f"{op}.lua").read_text()
        body.append(f"-- {op}.lua\nOPS[{op!r}] = function(KEYS, ARGV)\n{text}\nend")
    body.append(_lua_dir().joinpath("_batch.lua").read_text())
    code = "\n".join(body)
    if dry:  # the shared code calls the server through _dry.lua's overlay
        overlay = _lua_dir().joinpath("_dry.lua").read_text()
        code = overlay + code.replace("redis.call(", "dry_call(")
    source = f"{shebang}\n{code}"
    return Script.from_source(name, source)
