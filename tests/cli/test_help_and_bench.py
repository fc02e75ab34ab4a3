"""Every command explains itself (``--help`` with a description and examples), and ``omnistock
bench`` runs the checkout's benchmark suite with the options given, or says where it is."""

from __future__ import annotations

from pathlib import Path

import pytest

from omnistock.runtime import bench_cli, cli

COMMANDS = [
    ["serve"],
    ["seed"],
    ["import"],
    ["keys"],
    ["keys", "create"],
    ["keys", "list"],
    ["keys", "revoke"],
    ["projector"],
    ["reconcile"],
    ["rebuild"],
    ["prune-functions"],
    ["bench"],
]


@pytest.mark.parametrize("command", COMMANDS, ids=" ".join)
def test_every_command_has_help_with_a_description(
    command: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        cli.main([*command, "--help"])
    assert exited.value.code == 0
    text = capsys.readouterr().out
    assert text.startswith(f"usage: omnistock {' '.join(command)}")
    description = text.split("\n\n")[1]
    assert len(description) > 40, text
    if command != ["keys", "list"]:
        assert "example" in text, text


def test_the_top_level_help_lists_every_command(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        cli.main(["--help"])
    text = capsys.readouterr().out
    for command in {c[0] for c in COMMANDS}:
        assert f"\n    {command}" in text


def test_unknown_options_are_refused_outside_bench(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        cli.main(["reconcile", "--quick"])
    assert exited.value.code == 2
    assert "unrecognized arguments: --quick" in capsys.readouterr().err


def test_bench_passes_its_options_to_the_suite(capfd: pytest.CaptureFixture[str]) -> None:
    assert bench_cli.checkout() == Path(__file__).resolve().parents[2]
    assert cli.main(["bench", "--", "--help"]) == 0
    out = capfd.readouterr().out
    assert "usage: python -m benchmarks.suite" in out and "--quick" in out
    assert cli.main(["bench", "--only", "no-such-benchmark"]) == 2
    assert "--only: unknown" in capfd.readouterr().err


def test_bench_without_a_checkout_says_where_the_suite_is(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(bench_cli, "checkout", lambda: None)
    assert cli.main(["bench", "--quick"]) == 2
    assert "source repository" in capsys.readouterr().err
