"""How the HTTP benchmark orders its rounds and judges its ratios: pure functions, no server."""

from __future__ import annotations

from typing import Any

from benchmarks.http_bench import FIGURES, PAIRS, SCENARIOS, round_order, summarize


def test_every_round_runs_each_scenario_once_next_to_its_peer() -> None:
    for r in range(6):
        order = round_order(r)
        assert sorted(order) == sorted(SCENARIOS)
        for real, peer in PAIRS:
            assert abs(order.index(real) - order.index(peer)) == 1


def test_which_side_of_a_pair_goes_first_alternates_and_the_pairs_rotate() -> None:
    real, peer = PAIRS[0]
    firsts = [round_order(r).index(real) < round_order(r).index(peer) for r in range(4)]
    assert firsts == [False, True, False, True]
    assert round_order(0)[:2] != round_order(1)[:2]
    assert {tuple(sorted(round_order(r)[:2])) for r in range(2)} == {
        tuple(sorted(pair)) for pair in PAIRS
    }


def _result(rps: float) -> dict[str, Any]:
    figures = dict.fromkeys(FIGURES, 1.0) | {"throughput_rps": rps}
    part = {"p50_ms": 1.0, "p90_ms": 1.0, "p99_ms": 1.0, "max_ms": 1.0, "requests": 1}
    return figures | {"reserve": part, "release": part}


def test_ratios_are_judged_per_round_then_the_median() -> None:
    # The machine slows down in round 2: each pair's own ratio stays steady, the ratio of
    # medians taken across rounds does not.
    rounds = {
        "noop-get": [_result(20_000), _result(10_000), _result(21_000)],
        "availability": [_result(14_000), _result(7_000), _result(14_700)],
        "noop-post": [_result(12_000), _result(6_000), _result(12_500)],
        "reserve-release": [_result(6_000), _result(3_000), _result(6_250)],
    }
    ratios = summarize(rounds)["ratios"]
    assert ratios["availability_vs_noop-get"] == 0.7
    assert ratios["reserve-release_vs_noop-post"] == 0.5
    assert ratios["per_round"]["availability_vs_noop-get"] == [0.7, 0.7, 0.7]
    assert ratios["of_medians"]["availability_vs_noop-get"] == 14_000 / 20_000
