"""Builds the ledger library: the shared prelude, one function per operation file, and the batch
runner that executes many operations in one call.

The ledger is a Valkey function library (FUNCTION LOAD, then FCALL), not a script: a script's
body runs on every call, and the ledger's prelude defines a hundred functions and tables, which
measured about 25 µs of server CPU per call, more than a whole operation costs in a large
batch. A library's body runs once, when it is loaded; a call runs only its batch. Libraries are
also kept in the AOF and replicated, so a restarted server or a promoted replica has them."""

from __future__ import annotations

import hashlib
import re
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
class Library:
    """A function library with one function of the same name. The name carries a digest of the
    code, so two versions of the service sharing a server each call their own."""

    name: str
    source: str


_DIGEST_CHARS = 16
_LEDGER_LIBRARY = re.compile(rf"omnistock_(ledger|ledger_dry_reads)_[0-9a-f]{{{_DIGEST_CHARS}}}")


def is_ledger_library(name: str) -> bool:
    """A library built by ``build_ledger_library`` or ``build_dry_read_library``, of any
    version of the code."""
    return _LEDGER_LIBRARY.fullmatch(name) is not None


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
# twin (build_dry_read_library) writes nothing.
DRY_READS = ("availability", "document", "position", "reservation")


def build_ledger_library(settings: ScriptSettings | None = None) -> Library:
    # Declared flags make the server refuse the whole call up front when it is out of memory,
    # instead of failing part-way through a batch. On a cluster a batch holds operations of
    # several partitions (slots) that one node owns: each operation still touches only its own
    # partition's keys, and the server refuses any key the node does not own.
    return _assemble("ledger", ["allow-cross-slot-keys"], operation_names(), settings, dry=False)


def build_dry_read_library(settings: ScriptSettings | None = None) -> Library:
    """The read-only twin of the ledger library: its read operations, run by the same batch
    runner, answer what they would after releasing what is due, and write nothing (see
    _dry.lua). Declared no-writes, so Valkey runs it even at maxmemory, where it refuses the
    ledger's function; the ledger falls back on it there (RedisLedger)."""
    flags = ["no-writes", "allow-cross-slot-keys"]
    return _assemble("ledger_dry_reads", flags, list(DRY_READS), settings, dry=True)


def _assemble(
    name: str, flags: list[str], ops: list[str], settings: ScriptSettings | None, *, dry: bool
) -> Library:
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
    begin = "begin_call()\ndry_begin()" if dry else "begin_call()"
    batch = _lua_dir().joinpath("_batch.lua").read_text()
    body.append(f"local function run_batch(KEYS, ARGV)\n{begin}\n{batch}\nend")
    code = "\n".join(body)
    if dry:  # the shared code calls the server through _dry.lua's overlay
        overlay = _lua_dir().joinpath("_dry.lua").read_text()
        code = overlay + code.replace("redis.call(", "dry_call(")
    digest = hashlib.sha1(f"{flags}\n{code}".encode()).hexdigest()[:_DIGEST_CHARS]
    function = f"omnistock_{name}_{digest}"
    flag_list = ", ".join(f"'{flag}'" for flag in flags)
    register = (
        f"redis.register_function{{function_name = '{function}', callback = run_batch, "
        f"flags = {{ {flag_list} }}}}"
    )
    return Library(function, f"#!lua name={function}\n{code}\n{register}\n")
