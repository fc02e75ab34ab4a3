"""The after-the-load checks, as pure arithmetic on positions read through the API.

* Nothing oversold: at every position, `reserved + held <= on_hand` and no field is negative.
* Every unit accounted for: per SKU, on_hand + inbound summed over all nodes equals what it was
  before the load (the seeded stock) plus the net of the acknowledged changes the load made
  (`load.changes`). Changes whose effect stayed unknown widen the expectation to a range.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field

from load.changes import Net


@dataclass(frozen=True)
class Position:
    node_id: str
    sku: str
    on_hand: int
    reserved: int
    held: int
    inbound: int

    @classmethod
    def from_json(cls, data: dict) -> Position:
        return cls(
            data["node_id"],
            data["sku"],
            int(data["on_hand"]),
            int(data["reserved"]),
            int(data["held"]),
            int(data["inbound"]),
        )

    @property
    def oversold(self) -> bool:
        fields = (self.on_hand, self.reserved, self.held, self.inbound)
        return self.reserved + self.held > self.on_hand or min(fields) < 0


def totals(positions: Iterable[Position]) -> dict[str, int]:
    """sku -> on_hand + inbound summed over nodes."""
    out: dict[str, int] = defaultdict(int)
    for p in positions:
        out[p.sku] += p.on_hand + p.inbound
    return dict(out)


@dataclass(frozen=True)
class Mismatch:
    sku: str
    before: int
    expected_low: int
    expected_high: int
    actual: int

    def __str__(self) -> str:
        expected = (
            str(self.expected_low)
            if self.expected_low == self.expected_high
            else f"{self.expected_low}..{self.expected_high}"
        )
        return (
            f"{self.sku}: before {self.before}, expected {expected}, found {self.actual} "
            f"({self.actual - self.expected_low:+d})"
        )


@dataclass
class Report:
    positions: int
    skus: int
    oversold: list[Position] = field(default_factory=list)
    mismatches: list[Mismatch] = field(default_factory=list)
    uncertain_skus: int = 0

    @property
    def ok(self) -> bool:
        return not self.oversold and not self.mismatches


def check(before: dict[str, int], after: Iterable[Position], changes: Net) -> Report:
    """`before`: sku -> on_hand + inbound before the load; `after`: every position after it."""
    after = list(after)
    now = totals(after)
    skus = set(before) | set(now) | set(changes.exact) | set(changes.low) | set(changes.high)
    report = Report(positions=len(after), skus=len(skus))
    report.oversold = [p for p in after if p.oversold]
    for sku in sorted(skus):
        low, high = changes.range_of(sku)
        start = before.get(sku, 0)
        actual = now.get(sku, 0)
        if low != high:
            report.uncertain_skus += 1
        if not start + low <= actual <= start + high:
            report.mismatches.append(Mismatch(sku, start, start + low, start + high, actual))
    return report
