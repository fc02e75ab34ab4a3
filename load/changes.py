"""The record of every stock-changing action the load made, for the conservation check.

Each locust process appends JSON lines to its own file `changes-<host>-<pid>.jsonl` in the
changes directory, flushed line by line:

* before a request that changes on_hand + inbound is sent, an intent:
  `{"op": key, "kind": "sale", "effects": [[node_id, sku, delta], ...], "request": {...}}`
  with the request (method, path, body, role) so that it can be sent again under its key;
* once its outcome is known, `{"op": key, "applied": true}` (2xx) or `false` (a refusal: the
  API's errors change nothing); an applied outcome may carry the effects the answer reported.

An intent with no outcome (a timeout, a transport error, a process stopped mid-request) is
uncertain: `load.resolve` sends it again under the same Idempotency-Key after the run, which
replays the first outcome or runs it once, so its effect becomes known. What stays uncertain
widens the check to a range instead of failing it.

Effects are changes of on_hand + inbound summed over nodes: adjustments (receipts and returns
add, sales and damage subtract), reservation commits and hold collections (subtract), and
transfer receipts that came up short (the loss subtracts). Reserving, holding, shipping and
releasing move units between fields or nodes without changing that sum.
"""

from __future__ import annotations

import json
import os
import socket
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

Effect = tuple[str, str, int]  # node_id, sku, delta of on_hand + inbound


class ChangeLog:
    """Appends this process's records to `<directory>/changes-<host>-<pid>.jsonl`."""

    def __init__(self, directory: Path, name: str | None = None) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        name = name or f"changes-{socket.gethostname()}-{os.getpid()}.jsonl"
        self.path = directory / name
        self._file = self.path.open("a", encoding="utf-8", buffering=1)  # flushed per line

    def intent(self, op: str, kind: str, effects: Iterable[Effect], request: dict) -> None:
        self._write(
            {"op": op, "kind": kind, "effects": [list(e) for e in effects], "request": request}
        )

    def outcome(self, op: str, applied: bool, effects: Iterable[Effect] | None = None) -> None:
        record: dict = {"op": op, "applied": applied}
        if effects is not None:
            record["effects"] = [list(e) for e in effects]
        self._write(record)

    def _write(self, record: dict) -> None:
        self._file.write(json.dumps(record, separators=(",", ":")) + "\n")

    def close(self) -> None:
        self._file.close()


@dataclass
class Change:
    op: str
    kind: str
    effects: list[Effect]
    request: dict
    applied: bool | None = None  # None: unknown


def parse(lines: Iterable[str]) -> dict[str, Change]:
    """Changes by operation from JSON lines (any order of files; an outcome may come before
    its intent when files are read in another order). A line cut short is ignored."""
    changes: dict[str, Change] = {}
    outcomes: dict[str, tuple[bool, list[Effect] | None]] = {}
    for line in lines:
        line = line.strip()
        if not line:
            continue
        try:
            record = json.loads(line)
        except ValueError:
            continue  # a process killed mid-write leaves at most its last line cut short
        op = record["op"]
        if "kind" in record:
            effects = [(n, s, int(d)) for n, s, d in record["effects"]]
            changes[op] = Change(op, record["kind"], effects, record["request"])
        else:
            reported = record.get("effects")
            known = outcomes.get(op)
            if known is None or record["applied"]:  # an applied outcome wins over a refusal
                outcomes[op] = (
                    bool(record["applied"]),
                    None if reported is None else [(n, s, int(d)) for n, s, d in reported],
                )
    for op, (applied, reported) in outcomes.items():
        change = changes.get(op)
        if change is None:
            continue
        change.applied = applied
        if applied and reported is not None:
            change.effects = reported
    return changes


def read_directory(directory: Path) -> dict[str, Change]:
    lines: list[str] = []
    for path in sorted(directory.glob("changes-*.jsonl")):
        lines.extend(path.read_text(encoding="utf-8").splitlines())
    return parse(lines)


@dataclass
class Net:
    """The summed effect of the changes, per SKU: `exact` from applied changes; what uncertain
    changes could add lies between `low` (<= 0) and `high` (>= 0)."""

    exact: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    low: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    high: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    by_kind: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    applied: int = 0
    refused: int = 0
    uncertain: int = 0

    def range_of(self, sku: str) -> tuple[int, int]:
        base = self.exact.get(sku, 0)
        return base + self.low.get(sku, 0), base + self.high.get(sku, 0)


def net(changes: Iterable[Change]) -> Net:
    out = Net()
    for change in changes:
        if change.applied is False:
            out.refused += 1
            continue
        if change.applied is None:
            out.uncertain += 1
            # An uncertain change applied whole or not at all: per SKU, each delta may or may
            # not count, so the range is the sum of its negative and of its positive deltas.
            for _, sku, delta in change.effects:
                if delta < 0:
                    out.low[sku] += delta
                else:
                    out.high[sku] += delta
            continue
        out.applied += 1
        for _, sku, delta in change.effects:
            out.exact[sku] += delta
            out.by_kind[change.kind] += delta
    return out
