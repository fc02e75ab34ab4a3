"""Typed settings, read from the environment once, at start-up."""

from __future__ import annotations

import os
from pathlib import Path

import msgspec

from omnistock.reservations.connect import DURABILITY
from omnistock.runtime.valkey_server import ALLOCATORS, DEFAULT_ALLOCATOR


class SettingsError(ValueError):
    """A setting has a value omnistock cannot use; the message names the variable."""


class Settings(msgspec.Struct, frozen=True):
    data_dir: Path = Path(".omnistock")
    redis_url: str | None = None
    redis_cluster: bool = False
    database_url: str | None = None
    durability: str = "strict"
    api_keys: str | None = None
    sweep_interval_ms: int = 1000
    redis_timeout_s: float = 2.0
    request_timeout_s: float = 2.5
    db_timeout_s: float = 2.0
    projector: bool = True
    valkey_allocator: str = DEFAULT_ALLOCATOR
    # Open connections one worker holds (granian's backpressure), idle keep-alive ones included.
    max_connections: int = 10_000
    # Requests one worker works on at once; past it a request is refused at once with 503.
    max_requests_in_flight: int = 1024

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None) -> Settings:
        env = dict(os.environ if env is None else env)
        durability = env.get("OMNISTOCK_DURABILITY", "strict")
        if durability not in DURABILITY:
            raise SettingsError(f"OMNISTOCK_DURABILITY must be one of {', '.join(DURABILITY)}")
        allocator = env.get("OMNISTOCK_VALKEY_ALLOCATOR") or DEFAULT_ALLOCATOR
        if allocator not in ALLOCATORS:
            raise SettingsError(
                f"OMNISTOCK_VALKEY_ALLOCATOR must be one of {', '.join(ALLOCATORS)}"
            )
        return cls(
            data_dir=Path(env.get("OMNISTOCK_DATA_DIR", ".omnistock")),
            redis_url=env.get("OMNISTOCK_REDIS_URL") or None,
            redis_cluster=_flag(env, "OMNISTOCK_REDIS_CLUSTER"),
            database_url=env.get("OMNISTOCK_DATABASE_URL") or None,
            durability=durability,
            api_keys=env.get("OMNISTOCK_API_KEYS") or None,
            sweep_interval_ms=_int(env, "OMNISTOCK_SWEEP_INTERVAL_MS", 1000, low=10),
            redis_timeout_s=_int(env, "OMNISTOCK_REDIS_TIMEOUT_MS", 2000, low=50) / 1000,
            request_timeout_s=_int(env, "OMNISTOCK_REQUEST_TIMEOUT_MS", 2500, low=50) / 1000,
            db_timeout_s=_int(env, "OMNISTOCK_DB_TIMEOUT_MS", 2000, low=50) / 1000,
            projector=_flag(env, "OMNISTOCK_PROJECTOR", default=True),
            valkey_allocator=allocator,
            max_connections=_int(env, "OMNISTOCK_MAX_CONNECTIONS", 10_000, low=16),
            max_requests_in_flight=_int(env, "OMNISTOCK_MAX_REQUESTS_IN_FLIGHT", 1024, low=1),
        )


def _flag(env: dict[str, str], name: str, *, default: bool = False) -> bool:
    value = env.get(name, "").strip().lower()
    if value == "":
        return default
    if value in ("0", "false", "no"):
        return False
    if value in ("1", "true", "yes"):
        return True
    raise SettingsError(f"{name} must be 1 or 0")


def _int(env: dict[str, str], name: str, default: int, *, low: int) -> int:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise SettingsError(f"{name} must be an integer") from None
    if value < low:
        raise SettingsError(f"{name} must be at least {low}")
    return value
