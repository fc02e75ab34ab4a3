"""Settings read from the environment: defaults, and a bad value refused with its name."""

from __future__ import annotations

from pathlib import Path

import pytest

from omnistock.runtime.settings import Settings, SettingsError


def test_an_empty_environment_gives_the_embedded_defaults() -> None:
    settings = Settings.from_env({})
    assert settings.redis_url is None
    assert settings.database_url is None
    assert settings.data_dir == Path(".omnistock")
    assert settings.durability == "strict"
    assert settings.valkey_allocator == "mimalloc"


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
    ],
)
def test_a_value_it_cannot_use_is_refused_naming_the_variable(name: str, value: str) -> None:
    with pytest.raises(SettingsError, match=name):
        Settings.from_env({name: value})
