"""Putting the demo retailer into a service, so that seeding it again changes nothing.

Nodes the catalog lacks are created; a node already there is left as it is (an operator may
have edited it). Each stock position is a counted quantity set with ``if_version=0``, so it is
written only where the position has never been written, under an operation id derived from
the demo's content: seeding again replays those operations while the ledger remembers them
(48 hours) and is refused by the version check after that. Either way no position, and no
version, changes, and stock sold since the first seeding is never counted back.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from omnistock.demo.catalogue import SEED, Demo, Position, build
from omnistock.runtime.progress import map_showing_progress
from omnistock.runtime.targets import Outcome, Result, Target, fingerprint


@dataclass
class SeedReport:
    nodes_created: int = 0
    nodes_present: int = 0
    counts: dict[Result, int] = field(default_factory=lambda: dict.fromkeys(Result, 0))
    refusals: list[str] = field(default_factory=list)

    @property
    def positions_set(self) -> int:
        return self.counts[Result.APPLIED]

    @property
    def positions_present(self) -> int:
        return self.counts[Result.REPLAYED] + self.counts[Result.CONFLICT]

    def render(self, demo: Demo) -> str:
        lines = [
            f"demo network: {self.nodes_created} node(s) created, {self.nodes_present} already "
            f"there ({sum(n.kind == 'warehouse' for n in demo.nodes)} distribution centres, "
            f"{sum(n.kind == 'store' for n in demo.nodes)} stores)",
            f"demo stock: {self.positions_set:,} position(s) set, {self.positions_present:,} "
            f"already there ({len(demo.skus)} SKUs, {len(demo.positions):,} positions, "
            f"{demo.units():,} units)",
        ]
        lines += [f"  refused: {r}" for r in self.refusals[:20]]
        if len(self.refusals) > 20:
            lines.append(f"  ... and {len(self.refusals) - 20} more")
        return "\n".join(lines)


def op_id(position: Position) -> str:
    return "demo:" + fingerprint(
        SEED, position.node_id, position.sku, position.on_hand, position.safety_stock
    )


async def seed(
    target: Target, demo: Demo | None = None, *, progress: bool | None = None
) -> SeedReport:
    demo = demo or build()
    report = SeedReport()
    present = await target.node_ids()
    for node in demo.nodes:
        if node.node_id in present:
            report.nodes_present += 1
        else:
            await target.put_node(node)
            report.nodes_created += 1

    async def put(position: Position) -> Outcome:
        return await target.set_stock(
            op_id(position),
            position.node_id,
            position.sku,
            position.on_hand,
            safety_stock=position.safety_stock,
            if_version=0,
        )

    outcomes = await map_showing_progress(
        "seeding demo stock", demo.positions, put, concurrency=target.concurrency, enabled=progress
    )
    for position, outcome in zip(demo.positions, outcomes, strict=True):
        report.counts[outcome.result] += 1
        if outcome.result is Result.REFUSED:
            report.refusals.append(f"{position.node_id}/{position.sku}: {outcome.detail}")
    return report
