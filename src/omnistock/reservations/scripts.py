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


def build_ledger_script(settings: ScriptSettings | None = None) -> Script:
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
    # The shebang makes the server refuse the whole call up front when it is out of memory,
    # instead of failing part-way through a batch. On a cluster a batch holds operations of
    # several partitions (slots) that one node owns: each operation still touches only its own
    # partition's keys, and the server refuses any key the node does not own.
    parts = ["#!lua flags=allow-cross-slot-keys", prelude, "local OPS = {}"]
    for name in operation_names():
        body = _lua_dir().joinpath(f"{name}.lua").read_text()
        parts.append(f"-- {name}.lua\nOPS[{name!r}] = function(KEYS, ARGV)\n{body}\nend")
    parts.append(_lua_dir().joinpath("_batch.lua").read_text())
    return Script.from_source("ledger", "\n".join(parts))
