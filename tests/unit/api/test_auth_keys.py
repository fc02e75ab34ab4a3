"""API keys: parsing, the key file, first-start creation, roles."""

from __future__ import annotations

from pathlib import Path

import pytest

from omnistock.api.auth import (
    KEY_FILE,
    ApiKeys,
    KeyConfigError,
    Role,
    digest,
    first_start_admin_key,
    resolve_keys,
)


def test_keys_from_the_environment_authenticate_with_their_roles() -> None:
    keys = ApiKeys.parse(
        "admin-key-000000001:admin, oms-key-00000000002:OMS,shop-key-0000000003:storefront"
    )
    assert keys.authenticate("admin-key-000000001").role is Role.ADMIN
    assert keys.authenticate("oms-key-00000000002").role is Role.OMS
    assert keys.authenticate("shop-key-0000000003").role is Role.STOREFRONT
    assert keys.authenticate("admin-key-00000000") is None
    assert keys.authenticate("") is None


@pytest.mark.parametrize(
    "spec",
    ["", "no-role-here-at-all", "short:admin", "long-enough-key-01:superuser", ":admin"],
)
def test_bad_key_specs_are_refused_with_a_message(spec: str) -> None:
    with pytest.raises(KeyConfigError, match="OMNISTOCK_API_KEYS"):
        ApiKeys.parse(spec)


def test_principal_names_the_key_by_digest_prefix_only() -> None:
    key = "a-secret-key-0000001"
    principal = ApiKeys.parse(f"{key}:oms").authenticate(key)
    assert principal is not None
    assert principal.key_id == digest(key)[:12] and key not in principal.key_id


def test_first_start_creates_one_admin_key_and_stores_only_its_digest(tmp_path: Path) -> None:
    keys, created = first_start_admin_key(tmp_path)
    assert created is not None
    stored = (tmp_path / KEY_FILE).read_text()
    assert created not in stored and digest(created) in stored
    assert keys.authenticate(created).role is Role.ADMIN
    again, created_again = first_start_admin_key(tmp_path)
    assert created_again is None and again.authenticate(created).role is Role.ADMIN
    assert resolve_keys(None, tmp_path).authenticate(created).role is Role.ADMIN


def test_environment_keys_win_over_the_key_file(tmp_path: Path) -> None:
    _keys, created = first_start_admin_key(tmp_path)
    keys = resolve_keys("env-key-00000000001:storefront", tmp_path)
    assert keys.authenticate(created or "") is None
    assert keys.authenticate("env-key-00000000001").role is Role.STOREFRONT


def test_a_damaged_key_file_is_reported(tmp_path: Path) -> None:
    (tmp_path / KEY_FILE).write_text("not-a-digest:admin\n")
    with pytest.raises(KeyConfigError, match=KEY_FILE):
        resolve_keys(None, tmp_path)
