"""``omnistock keys``: a key printed once and stored only as its digest, listed by id, role and
name, and taken up (or dropped, once revoked) by a running service within a second, without a
restart."""

from __future__ import annotations

import asyncio
import re
import time
from pathlib import Path

import pytest
from litestar.testing import AsyncTestClient

from omnistock.api.app import create_asgi
from omnistock.api.auth import KEY_FILE, KeyFile, Role, digest
from omnistock.runtime.settings import Settings
from omnistock.runtime.valkey_server import EmbeddedValkey
from tests.cli.support import omnistock, use_data_dir

KEY = re.compile(r"^  (osk_\S+)$", re.MULTILINE)
RELOAD_DEADLINE_S = 5.0


def created_key(out: str) -> str:
    found = KEY.findall(out)
    assert len(found) == 1, out
    return found[0]


def test_create_prints_the_key_once_and_stores_only_its_digest(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    use_data_dir(monkeypatch, tmp_path)
    assert omnistock("keys", "create", "--role", "admin", "--name", "ops team") == 0
    admin = created_key(capsys.readouterr().out)
    assert omnistock("keys", "create", "--role", "storefront", "--name", "web-shop") == 0
    shop = created_key(capsys.readouterr().out)
    assert omnistock("keys", "create", "--role", "oms", "--quiet") == 0
    oms = capsys.readouterr().out.strip()

    stored = (tmp_path / KEY_FILE).read_text()
    assert (tmp_path / KEY_FILE).stat().st_mode & 0o077 == 0
    for key in (admin, shop, oms):
        assert key.startswith("osk_") and key not in stored and digest(key) in stored
    keys = KeyFile(tmp_path / KEY_FILE)
    assert keys.authenticate(admin).role is Role.ADMIN
    assert keys.authenticate(shop).role is Role.STOREFRONT
    assert keys.authenticate(oms).role is Role.OMS

    assert omnistock("keys", "list") == 0
    listing = capsys.readouterr().out
    assert re.search(rf"{digest(admin)[:12]}\s+admin\s+ops team", listing)
    assert re.search(rf"{digest(shop)[:12]}\s+storefront\s+web-shop", listing)
    assert re.search(rf"{digest(oms)[:12]}\s+oms", listing)
    for key in (admin, shop, oms):
        assert key not in listing and digest(key) not in listing

    assert omnistock("keys", "revoke", digest(shop)[:8]) == 0
    assert "revoked storefront key" in capsys.readouterr().out
    assert digest(shop) not in (tmp_path / KEY_FILE).read_text()
    assert omnistock("keys", "revoke", digest(shop)[:8]) == 2
    assert "no key" in capsys.readouterr().err


def test_a_first_key_that_is_not_admin_comes_with_a_warning(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    use_data_dir(monkeypatch, tmp_path)
    assert omnistock("keys", "create", "--role", "oms") == 0
    assert "no admin key" in capsys.readouterr().err


async def answer(client: AsyncTestClient, key: str, path: str = "/v1/availability/any-sku") -> int:
    response = await client.get(path, headers={"Authorization": f"Bearer {key}"})
    return response.status_code


async def until(client: AsyncTestClient, key: str, status: int) -> None:
    deadline = time.monotonic() + RELOAD_DEADLINE_S
    while (got := await answer(client, key)) != status:
        assert time.monotonic() < deadline, f"still {got}, not {status}"
        await asyncio.sleep(0.05)


async def test_a_running_service_takes_a_new_key_and_drops_a_revoked_one(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    valkey_server: EmbeddedValkey,
) -> None:
    use_data_dir(monkeypatch, tmp_path)
    assert omnistock("keys", "create", "--role", "admin") == 0
    admin = created_key(capsys.readouterr().out)
    settings = Settings(
        data_dir=tmp_path, redis_url=valkey_server.url, sweep_interval_ms=600_000, projector=False
    )
    async with AsyncTestClient(app=create_asgi(settings), timeout=10) as client:
        assert await answer(client, admin) == 200

        assert omnistock("keys", "create", "--role", "storefront") == 0
        shop = created_key(capsys.readouterr().out)
        await until(client, shop, 200)
        assert await answer(client, shop, "/v1/nodes") == 403  # the role it was given

        assert omnistock("keys", "revoke", digest(shop)[:12]) == 0
        await until(client, shop, 401)
        assert await answer(client, admin) == 200


def test_a_damaged_key_file_keeps_the_keys_already_loaded(tmp_path: Path) -> None:
    path = tmp_path / KEY_FILE
    path.write_text(f"{digest('first-key-000000001')}:admin\n")
    keys = KeyFile(path)
    path.write_text("not a key line\n")
    assert keys.reload_if_changed() is False
    assert keys.authenticate("first-key-000000001").role is Role.ADMIN
    path.write_text(f"{digest('second-key-00000002')}:oms:billing\n")
    assert keys.reload_if_changed() is True
    assert keys.authenticate("first-key-000000001") is None
    assert keys.authenticate("second-key-00000002").role is Role.OMS
