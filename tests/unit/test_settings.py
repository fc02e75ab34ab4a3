"""Settings read from the environment: defaults, and a bad value refused with its name."""

from __future__ import annotations

import resource
from pathlib import Path

import pytest

from omnistock.runtime.cli import FILES_KEPT_FREE, connection_limit
from omnistock.runtime.settings import Settings, SettingsError


def test_an_empty_environment_gives_the_embedded_defaults() -> None:
    settings = Settings.from_env({})
    assert settings.redis_url is None
    assert settings.database_url is None
    assert settings.data_dir == Path(".omnistock")
    assert settings.durability == "strict"
    assert settings.valkey_allocator == "mimalloc"
    assert settings.max_connections == 10_000
    assert settings.max_requests_in_flight == 1024


def test_the_embedded_valkey_can_keep_glibc_malloc() -> None:
    assert Settings.from_env({"OMNISTOCK_VALKEY_ALLOCATOR": "libc"}).valkey_allocator == "libc"


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("OMNISTOCK_VALKEY_ALLOCATOR", "jemalloc"),
        ("OMNISTOCK_DURABILITY", "sometimes"),
        ("OMNISTOCK_REDIS_CLUSTER", "maybe"),
        ("OMNISTOCK_SWEEP_INTERVAL_MS", "soon"),
        ("OMNISTOCK_REDIS_TIMEOUT_MS", "10"),
        ("OMNISTOCK_MAX_CONNECTIONS", "8"),
        ("OMNISTOCK_MAX_REQUESTS_IN_FLIGHT", "0"),
    ],
)
def test_a_value_it_cannot_use_is_refused_naming_the_variable(name: str, value: str) -> None:
    with pytest.raises(SettingsError, match=name):
        Settings.from_env({name: value})


def test_a_worker_takes_the_connections_asked_for_if_the_open_file_limit_allows(
    caplog: pytest.LogCaptureFixture,
) -> None:
    assert Settings.from_env({"OMNISTOCK_MAX_CONNECTIONS": "2500"}).max_connections == 2500
    assert connection_limit(10_000, resource.RLIM_INFINITY) == 10_000
    assert connection_limit(10_000, 10_000 + FILES_KEPT_FREE) == 10_000
    assert caplog.records == []
    assert connection_limit(10_000, 4096) == 4096 - FILES_KEPT_FREE
    [warning] = caplog.records
    assert "OMNISTOCK_MAX_CONNECTIONS=10000" in warning.getMessage()
