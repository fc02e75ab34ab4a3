"""``omnistock prune-functions``: the ledger libraries of other versions leave the server."""

from __future__ import annotations

from pathlib import Path

import pytest

from omnistock.reservations.connect import open_ledger
from omnistock.reservations.scripts import ScriptSettings
from omnistock.runtime.valkey_server import EmbeddedValkey
from tests.cli.support import omnistock, use_data_dir
from tests.fixtures_valkey import library_names


async def test_prune_functions_deletes_other_versions_libraries_after_a_dry_run(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    with EmbeddedValkey(tmp_path / "valkey", durability="strict") as server:
        use_data_dir(monkeypatch, tmp_path / "data", server.url)
        older = await open_ledger(server.url, script_settings=ScriptSettings(op_ttl_ms=1_000))
        theirs = older.runner.libraries()
        await older.aclose()

        assert omnistock("prune-functions", "--dry-run") == 0
        dry = capsys.readouterr().out
        assert theirs <= library_names(server)

        assert omnistock("prune-functions") == 0
        done = capsys.readouterr().out
        left = library_names(server)

    for name in theirs:
        assert f"would delete {name}" in dry
        assert f"deleted {name}" in done
        assert name not in left
    assert "2 libraries of other versions deleted" in done
    assert {n for n in left if n.startswith("omnistock_ledger")} and not theirs & left
