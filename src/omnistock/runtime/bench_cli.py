"""``omnistock bench``: the benchmark suite of a source checkout (``benchmarks/``).

The suite lives in the repository, not in the installed package: it needs the benchmark data,
the PostgreSQL peer and the development dependencies. This finds the checkout the package was
installed from (or the current directory) and runs ``python -m benchmarks.suite`` there.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

import omnistock

REPOSITORY = "the omnistock source repository"

DESCRIPTION = """\
Run the benchmark suite (python -m benchmarks.suite) of the source checkout: the ledger against
its ceiling and a naive peer, the HTTP API, routing, batch planning, and the PostgreSQL row-lock
peer. It writes benchmarks/results/SUITE.md, suite.json and the plots. Every option after the
subcommand goes to the suite unchanged; `omnistock bench -- --help` lists them."""

EPILOG = """\
examples:
  omnistock bench --quick                  # the whole suite in a few minutes
  omnistock bench --only ledger,peer
  omnistock bench --from-results           # rebuild the table from the last reports
"""


def checkout() -> Path | None:
    """The directory holding ``benchmarks/suite.py``: the checkout of an editable install, else
    the current directory or one of its parents."""
    package = Path(omnistock.__file__).resolve().parent
    candidates = [package.parent.parent, *Path.cwd().resolve().parents]
    candidates.insert(1, Path.cwd().resolve())
    for root in candidates:
        if (root / "benchmarks" / "suite.py").is_file():
            return root
    return None


def add_parser(commands: argparse._SubParsersAction) -> None:
    commands.add_parser(
        "bench",
        usage="%(prog)s [-h] [SUITE-OPTION ...]",
        help="run the benchmark suite of a source checkout (options go to benchmarks.suite)",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )


def run(passthrough: list[str]) -> int:
    root = checkout()
    if root is None:
        print(
            "omnistock bench: no benchmarks/ directory here. The benchmark suite ships with "
            f"{REPOSITORY}, not with the installed package: clone it, install it with "
            "`make` (or `pip install -e '.[dev]'`), and run `omnistock bench` (or "
            "`make bench-all`) inside the checkout.",
            file=sys.stderr,
        )
        return 2
    if passthrough[:1] == ["--"]:
        passthrough = passthrough[1:]
    command = [sys.executable, "-m", "benchmarks.suite", *passthrough]
    print(f"omnistock bench: python {' '.join(command[1:])} (in {root})", flush=True)
    try:
        return subprocess.call(command, cwd=root)
    except KeyboardInterrupt:
        return 130
