"""``omnistock import``: counted stock positions from a CSV file, each good row applied once.

Every row is checked before anything is written: a row with a bad id, an unknown node, a
quantity that is not a whole number from 0 up, or a position named by more than one row is
reported with its line number and not applied (for a repeated position, none of its rows is:
which one is right is the operator's call). The good rows are then set concurrently.

Exactly once: each row's operation id is derived from the import's id and the row's content
(node, SKU, quantities), never from the time or the order of rows. The import id defaults to the
SHA-256 of the file, so running the same file again, after an interruption or by mistake,
replays each row's first result instead of setting it again: a set is absolute, and setting it
again would count back the units sold since. A corrected file is another import unless it is
given the first one's id (``--import-id``): then its unchanged rows replay and only its new or
corrected rows are applied. The ledger remembers operations for 48 hours; after that the same
file is a new count.
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import hashlib
import io
import sys
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from omnistock.domain.ids import is_valid_id
from omnistock.reservations.validation import MAX_QTY
from omnistock.runtime.progress import map_showing_progress
from omnistock.runtime.settings import Settings
from omnistock.runtime.targets import (
    Outcome,
    Result,
    Target,
    TargetError,
    add_url_arguments,
    fingerprint,
    open_target,
)

REQUIRED = ("node_id", "sku", "on_hand")
OPTIONAL = ("safety_stock",)
MAX_ERRORS_SHOWN = 50

DESCRIPTION = """\
Set counted stock positions from a CSV file, through the same ledger the API uses.

The file is UTF-8 CSV with a header line naming its columns, in any order:

  node_id,sku,on_hand[,safety_stock]

  node_id       a node that exists (create nodes first: PUT /v1/nodes/{node_id})
  sku           an id matching ^[A-Za-z0-9._:-]{1,64}$
  on_hand       the counted quantity, a whole number from 0
  safety_stock  optional; a whole number from 0, or empty to leave it as it is

Each row sets one position (like PUT /v1/stock/{node_id}/{sku}); one position per file.
Every row is validated before anything is written; rows with errors are listed with their
line numbers (and written to --errors) and are not applied; the others are. Exit status 1
when any row failed, 2 when the file or the service cannot be used.

Running the same file again applies nothing twice: each row replays its first result (for
48 hours), so units sold since the first run are not counted back. To apply a corrected
file as a continuation of an earlier import, pass that import's id (printed by every run)
with --import-id: unchanged rows replay, corrected and new rows are applied. With --url the
service remembers operations per API key: re-run with the same key."""

EPILOG = """\
examples:
  omnistock import counts.csv
  omnistock import counts.csv --dry-run --errors rejected.csv
  omnistock import counts-fixed.csv --import-id 3f2a9c1d0b7e4a56
  omnistock import counts.csv --url https://stock.example.com --key "$OMNISTOCK_KEY"
"""


@dataclass(frozen=True)
class Row:
    line: int
    node_id: str
    sku: str
    on_hand: int
    safety_stock: int | None


@dataclass(frozen=True)
class RowError:
    line: int
    node_id: str
    sku: str
    error: str


@dataclass
class Parsed:
    rows: list[Row] = field(default_factory=list)
    errors: list[RowError] = field(default_factory=list)


class FileError(ValueError):
    """The file as a whole cannot be read (no header, wrong columns, not UTF-8)."""


def import_id_of(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()[:16]


def op_id(import_id: str, row: Row) -> str:
    return "import:" + fingerprint(import_id, row.node_id, row.sku, row.on_hand, row.safety_stock)


def parse(data: bytes, known_nodes: set[str]) -> Parsed:
    """Every row of the file, good or with its error."""
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise FileError(f"not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    reader = csv.reader(io.StringIO(text, newline=""))
    header = next(reader, None)
    while header is not None and not any(cell.strip() for cell in header):
        header = next(reader, None)
    if header is None:
        raise FileError("empty file: expected a header line node_id,sku,on_hand[,safety_stock]")
    columns = [cell.strip().lower() for cell in header]
    unknown = [c for c in columns if c not in REQUIRED + OPTIONAL]
    missing = [c for c in REQUIRED if c not in columns]
    if unknown or missing or len(set(columns)) != len(columns):
        raise FileError(
            f"line {reader.line_num}: the header must name node_id, sku, on_hand and optionally "
            f"safety_stock, each once (got {','.join(columns)})"
        )
    at = {name: i for i, name in enumerate(columns)}
    parsed = Parsed()
    for cells in reader:
        line = reader.line_num
        if not any(cell.strip() for cell in cells):
            continue
        row_or_error = _row(line, cells, at, known_nodes)
        if isinstance(row_or_error, RowError):
            parsed.errors.append(row_or_error)
        else:
            parsed.rows.append(row_or_error)
    _reject_repeated_positions(parsed)
    return parsed


def _row(line: int, cells: list[str], at: dict[str, int], known: set[str]) -> Row | RowError:
    def cell(name: str) -> str:
        i = at.get(name)
        return cells[i].strip() if i is not None and i < len(cells) else ""

    node_id, sku = cell("node_id"), cell("sku")

    def error(text: str) -> RowError:
        return RowError(line, node_id, sku, text)

    if len(cells) != len(at):
        return error(f"expected {len(at)} fields, found {len(cells)}")
    if not is_valid_id(node_id):
        return error(f"node_id {node_id!r} must match ^[A-Za-z0-9._:-]{{1,64}}$")
    if not is_valid_id(sku):
        return error(f"sku {sku!r} must match ^[A-Za-z0-9._:-]{{1,64}}$")
    if node_id not in known:
        return error(f"unknown node {node_id}")
    on_hand = _quantity(cell("on_hand"))
    if on_hand is None:
        return error("on_hand is empty")
    if isinstance(on_hand, str):
        return error(f"on_hand {on_hand}")
    safety = _quantity(cell("safety_stock"))
    if isinstance(safety, str):
        return error(f"safety_stock {safety}")
    return Row(line, node_id, sku, on_hand, safety)


def _quantity(text: str) -> int | str | None:
    """The whole number in ``text``, None for an empty cell, or what is wrong with it."""
    if text == "":
        return None
    try:
        value = int(text)
    except ValueError:
        return f"{text!r} is not a whole number"
    if value < 0:
        return f"{text!r} is negative"
    if value > MAX_QTY:
        return f"{text!r} is more than {MAX_QTY}"
    return value


def _reject_repeated_positions(parsed: Parsed) -> None:
    lines: dict[tuple[str, str], list[int]] = {}
    for row in parsed.rows:
        lines.setdefault((row.node_id, row.sku), []).append(row.line)
    repeated = {pos: at for pos, at in lines.items() if len(at) > 1}
    if not repeated:
        return
    kept = []
    for row in parsed.rows:
        at = repeated.get((row.node_id, row.sku))
        if at is None:
            kept.append(row)
            continue
        others = ", ".join(str(n) for n in at if n != row.line)
        parsed.errors.append(
            RowError(
                row.line, row.node_id, row.sku, f"position repeated (also on line(s) {others})"
            )
        )
    parsed.rows = kept
    parsed.errors.sort(key=lambda e: e.line)


@dataclass
class ImportReport:
    import_id: str
    counts: dict[Result, int]
    errors: list[RowError]

    def render(self, name: str, *, dry_run: bool) -> str:
        shown = [f"line {e.line}: {e.error}" for e in self.errors[:MAX_ERRORS_SHOWN]]
        if len(self.errors) > MAX_ERRORS_SHOWN:
            shown.append(f"... and {len(self.errors) - MAX_ERRORS_SHOWN} more")
        if dry_run:
            summary = (
                f"{name} (import id {self.import_id}, dry run, nothing written): "
                f"{self.counts[Result.APPLIED]:,} row(s) valid, {len(self.errors):,} with errors"
            )
        else:
            summary = (
                f"{name} (import id {self.import_id}): {self.counts[Result.APPLIED]:,} row(s) "
                f"applied, {self.counts[Result.REPLAYED]:,} already applied by an earlier run "
                f"(replayed, not applied again), {len(self.errors):,} failed"
            )
        return "\n".join([*shown, summary])


async def run_import(
    target: Target,
    data: bytes,
    *,
    import_id: str | None = None,
    dry_run: bool = False,
    progress: bool | None = None,
) -> ImportReport:
    import_id = import_id or import_id_of(data)
    parsed = parse(data, await target.node_ids())
    counts = dict.fromkeys(Result, 0)
    errors = list(parsed.errors)
    if dry_run:
        counts[Result.APPLIED] = len(parsed.rows)
        return ImportReport(import_id, counts, errors)

    async def apply(row: Row) -> Outcome:
        return await target.set_stock(
            op_id(import_id, row), row.node_id, row.sku, row.on_hand, safety_stock=row.safety_stock
        )

    outcomes = await map_showing_progress(
        "importing", parsed.rows, apply, concurrency=target.concurrency, enabled=progress
    )
    for row, outcome in zip(parsed.rows, outcomes, strict=True):
        counts[outcome.result] += 1
        if outcome.result is Result.REFUSED:
            errors.append(RowError(row.line, row.node_id, row.sku, outcome.detail))
    errors.sort(key=lambda e: e.line)
    return ImportReport(import_id, counts, errors)


def write_errors(path: Path, errors: Iterable[RowError]) -> None:
    with path.open("w", newline="", encoding="utf-8") as f:
        out = csv.writer(f)
        out.writerow(["line", "node_id", "sku", "error"])
        for e in errors:
            out.writerow([e.line, e.node_id, e.sku, e.error])


def add_parser(commands: argparse._SubParsersAction) -> None:
    p = commands.add_parser(
        "import",
        help="set counted stock positions from a CSV file (node_id,sku,on_hand[,safety_stock])",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("file", type=Path, help="the CSV file ('-' reads standard input)")
    p.add_argument("--dry-run", action="store_true", help="validate every row, write nothing")
    p.add_argument("--errors", type=Path, metavar="FILE", help="also write the failed rows here")
    p.add_argument(
        "--import-id",
        metavar="ID",
        help="continue an earlier import (default: derived from the file's content)",
    )
    p.add_argument(
        "--no-progress", action="store_true", help="no progress bar (shown on a terminal)"
    )
    add_url_arguments(p)


def run(args: argparse.Namespace, settings: Settings) -> int:
    name = str(args.file)
    try:
        data = sys.stdin.buffer.read() if name == "-" else args.file.read_bytes()
    except OSError as exc:
        print(f"omnistock import: cannot read {name}: {exc.strerror}", file=sys.stderr)
        return 2
    try:
        report = asyncio.run(_run(args, settings, data))
    except FileError as exc:
        print(f"omnistock import: {name}: {exc}", file=sys.stderr)
        return 2
    except TargetError as exc:
        print(f"omnistock import: {exc}", file=sys.stderr)
        return 2
    print(report.render(name, dry_run=args.dry_run))
    if args.errors is not None:
        write_errors(args.errors, report.errors)
    return 1 if report.errors else 0


async def _run(args: argparse.Namespace, settings: Settings, data: bytes) -> ImportReport:
    async with open_target(settings, args.url, args.key) as target:
        return await run_import(
            target,
            data,
            import_id=args.import_id,
            dry_run=args.dry_run,
            progress=False if args.no_progress else None,
        )
