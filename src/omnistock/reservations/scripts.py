"""Loads the Lua scripts: one file per operation, each prefixed by the shared prelude."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from importlib import resources

from omnistock.reservations.keys import NAMESPACE

READ_ONLY = frozenset({"position", "availability", "reservation"})
"""Scripts that change nothing but expiry; strict durability still waits for them when they do."""


@dataclass(frozen=True, slots=True)
class Script:
    name: str
    source: str
    sha: str


@dataclass(frozen=True, slots=True)
class ScriptSettings:
    op_ttl_ms: int = 48 * 3600 * 1000
    record_ttl_ms: int = 7 * 24 * 3600 * 1000
    stream_maxlen: int = 100_000


def _read(name: str) -> str:
    return resources.files("omnistock.reservations").joinpath("lua", name).read_text()


def load_scripts(settings: ScriptSettings | None = None) -> dict[str, Script]:
    settings = settings or ScriptSettings()
    prelude = (
        _read("_lib.lua")
        .replace("__OP_TTL_MS__", str(settings.op_ttl_ms))
        .replace("__RECORD_TTL_MS__", str(settings.record_ttl_ms))
        .replace("__STREAM_MAXLEN__", str(settings.stream_maxlen))
        .replace("__NS__", NAMESPACE)
    )
    scripts = {}
    for entry in resources.files("omnistock.reservations").joinpath("lua").iterdir():
        if not entry.name.endswith(".lua") or entry.name.startswith("_"):
            continue
        name = entry.name.removesuffix(".lua")
        source = prelude + "\n" + entry.read_text()
        scripts[name] = Script(name, source, hashlib.sha1(source.encode()).hexdigest())
    return scripts
