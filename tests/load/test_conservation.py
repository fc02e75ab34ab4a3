"""The stock checks after a load run: the change record (`load.changes`), its net per SKU, and
the oversell and conservation arithmetic (`load.conservation`)."""

from __future__ import annotations

import json
from pathlib import Path

from load.changes import ChangeLog
from load.conservation import Position

from load import changes, conservation


def intent(op: str, kind: str, *effects: tuple[str, str, int]) -> str:
    request = {"method": "POST", "path": "/v1/stock/adjustments", "body": {}, "role": "oms"}
    return json.dumps(
        {"op": op, "kind": kind, "effects": [list(e) for e in effects], "request": request}
    )


def outcome(op: str, applied: bool, effects=None) -> str:
    record = {"op": op, "applied": applied}
    if effects is not None:
        record["effects"] = effects
    return json.dumps(record)


def pos(node: str, sku: str, on_hand: int, reserved=0, held=0, inbound=0) -> Position:
    return Position(node, sku, on_hand, reserved, held, inbound)


def test_parse_pairs_intents_with_outcomes_in_any_order() -> None:
    lines = [
        outcome("b", False),  # another process's file read first
        intent("a", "sale", ("st-1", "sku-1", -1)),
        intent("b", "damage", ("st-1", "sku-2", -1)),
        intent("c", "commit", ("wh-1", "sku-1", -2)),
        outcome("a", True),
        '{"op": "d", "kind": "sa',  # a process killed mid-write
    ]
    parsed = changes.parse(lines)
    assert set(parsed) == {"a", "b", "c"}
    assert parsed["a"].applied is True
    assert parsed["b"].applied is False
    assert parsed["c"].applied is None  # no outcome: uncertain


def test_an_applied_outcome_wins_and_may_report_the_effects() -> None:
    lines = [
        intent("a", "commit", ("wh-1", "sku-1", -2)),
        outcome("a", False),
        outcome("a", True, [["wh-2", "sku-1", -2]]),
    ]
    change = changes.parse(lines)["a"]
    assert change.applied is True
    assert change.effects == [("wh-2", "sku-1", -2)]


def test_net_sums_applied_changes_and_ranges_the_uncertain() -> None:
    parsed = changes.parse(
        [
            intent("sale", "sale", ("st-1", "sku-1", -1), ("st-1", "sku-2", -1)),
            outcome("sale", True),
            intent("receipt", "receipt", ("st-1", "sku-1", 12)),
            outcome("receipt", True),
            intent("refused", "sale", ("st-1", "sku-1", -5)),
            outcome("refused", False),
            intent("lost-reply", "commit", ("wh-1", "sku-1", -3)),
            intent("lost-reply-2", "return", ("st-2", "sku-1", 1)),
        ]
    )
    total = changes.net(parsed.values())
    assert (total.applied, total.refused, total.uncertain) == (2, 1, 2)
    assert total.exact == {"sku-1": 11, "sku-2": -1}
    assert total.range_of("sku-1") == (8, 12)
    assert total.range_of("sku-2") == (-1, -1)
    assert total.range_of("sku-9") == (0, 0)
    assert dict(total.by_kind) == {"sale": -2, "receipt": 12}


def test_units_that_add_up_pass() -> None:
    before = conservation.totals([pos("wh-1", "sku-1", 10), pos("st-1", "sku-1", 3)])
    parsed = changes.parse(
        [
            intent("commit", "commit", ("wh-1", "sku-1", -2)),
            outcome("commit", True),
            intent("loss", "loss", ("st-1", "sku-1", -1)),
            outcome("loss", True),
        ]
    )
    # 4 units in transit from wh-1 to st-1 (inbound), 2 committed, 1 lost on an earlier transfer
    after = [pos("wh-1", "sku-1", 4, reserved=1), pos("st-1", "sku-1", 2, held=2, inbound=4)]
    report = conservation.check(before, after, changes.net(parsed.values()))
    assert report.ok, report
    assert (report.positions, report.skus, report.uncertain_skus) == (2, 1, 0)


def test_a_unit_unaccounted_for_is_a_mismatch() -> None:
    before = {"sku-1": 13, "sku-2": 5}
    after = [pos("wh-1", "sku-1", 12), pos("wh-1", "sku-2", 5)]
    report = conservation.check(before, after, changes.net([]))
    assert not report.ok
    assert [(m.sku, m.before, m.expected_low, m.actual) for m in report.mismatches] == [
        ("sku-1", 13, 13, 12)
    ]
    assert str(report.mismatches[0]) == "sku-1: before 13, expected 13, found 12 (-1)"


def test_an_uncertain_change_is_a_range_not_a_failure() -> None:
    parsed = changes.parse([intent("x", "commit", ("wh-1", "sku-1", -3))])
    total = changes.net(parsed.values())
    for found in (10, 7):  # not applied, applied
        report = conservation.check({"sku-1": 10}, [pos("wh-1", "sku-1", found)], total)
        assert report.ok and report.uncertain_skus == 1
    report = conservation.check({"sku-1": 10}, [pos("wh-1", "sku-1", 6)], total)
    assert str(report.mismatches[0]) == "sku-1: before 10, expected 7..10, found 6 (-1)"


def test_oversold_positions_are_found() -> None:
    after = [
        pos("st-1", "sku-1", 3, reserved=2, held=1),  # exactly sold out: fine
        pos("st-2", "sku-1", 3, reserved=2, held=2),  # one unit promised twice
        pos("st-3", "sku-1", -1),
    ]
    report = conservation.check({"sku-1": 5}, after, changes.net([]))
    assert [p.node_id for p in report.oversold] == ["st-2", "st-3"]
    assert not report.ok


def test_the_change_log_round_trip(tmp_path: Path) -> None:
    log = ChangeLog(tmp_path)
    assert log.path.name.startswith("changes-") and log.path.suffix == ".jsonl"
    log.intent(
        "a", "sale", [("st-1", "sku-1", -1)], {"method": "POST", "path": "/x", "role": "oms"}
    )
    log.outcome("a", True)
    log.intent(
        "b", "receipt", [("st-1", "sku-1", 5)], {"method": "POST", "path": "/x", "role": "oms"}
    )
    other = ChangeLog(tmp_path, "changes-resolved.jsonl")
    other.outcome("b", True)
    log.close()
    other.close()
    parsed = changes.read_directory(tmp_path)
    assert {op: c.applied for op, c in parsed.items()} == {"a": True, "b": True}
    assert changes.net(parsed.values()).exact == {"sku-1": 4}
