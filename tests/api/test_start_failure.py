"""Services that fail for good while a worker starts are handed to the app's start-failure hook
(how a serve worker tells its service), and the start fails."""

from __future__ import annotations

from pathlib import Path

import pytest
from litestar.testing import AsyncTestClient

from omnistock.api.app import create_asgi
from omnistock.runtime.valkey_server import EmbeddedValkey
from tests.api.conftest import settings_for


async def test_a_valkey_that_refuses_the_ledger_fails_the_start_and_is_reported(
    tmp_path: Path,
) -> None:
    failures: list[BaseException] = []
    with EmbeddedValkey(
        tmp_path / "valkey", durability="strict", extra_config={"rename-command": 'FUNCTION ""'}
    ) as refusing:
        app = create_asgi(settings_for(tmp_path, refusing.url), on_start_failure=failures.append)
        with pytest.raises(ExceptionGroup):  # the test client reports the lifespan's error so
            async with AsyncTestClient(app=app, timeout=10):
                pass
    assert len(failures) == 1
    assert "unknown command 'FUNCTION'" in str(failures[0])
