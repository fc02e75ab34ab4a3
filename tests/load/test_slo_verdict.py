"""The SLO verdict of a load run, fed the CSV text locust writes (`<prefix>_stats.csv`)."""

from __future__ import annotations

from pathlib import Path

import pytest

from load import slo

HEADER = (
    "Type,Name,Request Count,Failure Count,Median Response Time,Average Response Time,"
    "Min Response Time,Max Response Time,Average Content Size,Requests/s,Failures/s,50%,66%,75%,"
    "80%,90%,95%,98%,99%,99.9%,99.99%,100%"
)
# Rows as locust 2.47 wrote them in a flash-sale run of this suite (some numbers changed below).
STATS = "\n".join(
    [
        HEADER,
        "GET,/v1/availability/[sku],496,0,3,6.871002753989101,1.0176979994866997,"
        "203.8470130028145,1196.163306451613,12.337828645599453,0.0,3,5,6,7,12,23,39,45,200,200,200",
        "POST,/v1/availability/query,171,0,5,9.15142492390233,1.7150950006907806,"
        "67.15196000004653,9949.619883040936,4.25356592418852,0.0,5,7,9,10,20,33,59,65,67,67,67",
        "POST,/v1/orders,680,1,19,25.1,4.2,180.3,1500.0,17.0,0.025,19,24,29,33,45,60,88,100,170,"
        "180,180",
        "POST,/v1/orders (409 short),34,0,13,14.21516632388589,4.520617996604415,"
        "29.330631001357688,196.0,0.8457382539322206,0.0,13,17,19,22,24,29,29,29,29,29,29",
        "POST,/v1/stock/adjustments (409 short),1,0,2.2309289997792803,2.2309289997792803,"
        "2.2309289997792803,2.2309289997792803,221.0,0.02487465452741825,0.0,2,2,2,2,2,2,2,2,2,2,2",
        "POST,/v1/reservations/[id]/commit (409 conflict),2,0,3,3.0,2.0,4.0,180.0,0.05,0.0,3,3,4,"
        "4,4,4,4,4,4,4,4",
        "POST,/v1/holds,0,0,0,0.0,0,0,0,0.0,0.0,N/A,N/A,N/A,N/A,N/A,N/A,N/A,N/A,N/A,N/A,N/A",
        ",Aggregated,1384,1,7,14.123335178213097,1.0176979994866997,203.8470130028145,"
        "1201.46912556983,60.022541374660236,0.025,7,11,16,19,31,55,85,91,160,200,200",
    ]
)


def objectives(**p99: float) -> slo.Slo:
    return slo.Slo(error_rate=0.001, p99_ms={"default": 250.0, **p99})


def test_parse_stats_reads_every_row_and_the_aggregate() -> None:
    rows, total = slo.parse_stats(STATS)
    assert [r.label for r in rows][:2] == [
        "GET /v1/availability/[sku]",
        "POST /v1/availability/query",
    ]
    assert len(rows) == 7
    orders = rows[2]
    assert (orders.requests, orders.failures, orders.p50_ms, orders.p99_ms) == (680, 1, 19, 100)
    assert rows[6].p99_ms is None  # N/A: no requests
    assert total is not None and (total.requests, total.failures) == (1384, 1)


def test_expected_outcome_rows_belong_to_their_endpoint() -> None:
    rows, _ = slo.parse_stats(STATS)
    assert rows[3].endpoint == "POST /v1/orders"
    assert rows[5].endpoint == "POST /v1/reservations/[id]/commit"


def test_within_every_objective_passes() -> None:
    rows, total = slo.parse_stats(STATS)
    verdict = slo.judge(rows, total, objectives(**{"GET /v1/availability/[sku]": 50}))
    assert verdict.latency_ok and verdict.error_rate_ok and verdict.ok
    assert verdict.error_rate == pytest.approx(1 / 1384)  # from the Aggregated row
    assert verdict.shortages == {"POST /v1/orders": 34, "POST /v1/stock/adjustments": 1}
    assert verdict.conflicts == {"POST /v1/reservations/[id]/commit": 2}
    text = slo.render(verdict)
    assert "SLO verdict: PASS" in text
    assert "shortages (409 short stock, expected): 35" in text
    line = next(x for x in text.splitlines() if x.startswith("POST /v1/orders "))
    assert [c.strip() for c in line.split("|")] == [
        "POST /v1/orders",
        "680",
        "1",
        "19",
        "100",
        "250",
        "ok",
    ]


def test_one_endpoint_over_its_p99_fails_the_verdict() -> None:
    rows, total = slo.parse_stats(STATS)
    verdict = slo.judge(rows, total, objectives(**{"POST /v1/orders": 90}))
    failed = [j.row.label for j in verdict.rows if not j.ok]
    assert failed == ["POST /v1/orders"]
    assert not verdict.ok and verdict.error_rate_ok
    assert "SLO verdict: FAIL" in slo.render(verdict)


def test_an_expected_outcome_row_is_held_to_its_endpoint_objective() -> None:
    rows, total = slo.parse_stats(STATS)
    verdict = slo.judge(rows, total, objectives(**{"POST /v1/orders": 100, "default": 25}))
    failed = {j.row.label: j.slo_p99_ms for j in verdict.rows if not j.ok}
    # the 409 short row (p99 29) passes under the orders objective; others meet the default 25
    assert "POST /v1/orders (409 short)" not in failed
    assert failed == {
        "GET /v1/availability/[sku]": 25,
        "POST /v1/availability/query": 25,
    }


def test_error_rate_at_and_over_its_objective() -> None:
    rows, total = slo.parse_stats(STATS)
    assert slo.judge(rows, total, slo.Slo(0.001, {"default": 250})).error_rate_ok
    assert not slo.judge(rows, total, slo.Slo(0.0005, {"default": 250})).error_rate_ok


def test_a_run_without_requests_fails() -> None:
    rows, total = slo.parse_stats(HEADER + "\n,Aggregated,0,0,0,0,0,0,0,0,0" + ",N/A" * 11)
    verdict = slo.judge(rows, total, objectives())
    assert rows == [] and not verdict.ok


def test_slo_file_and_overrides(tmp_path: Path) -> None:
    shipped = slo.load_slo()
    assert shipped.error_rate == 0.001
    assert shipped.p99_for("GET /v1/availability/[sku]") == 50
    assert shipped.p99_for("POST /v1/orders") == 200
    assert shipped.p99_for("GET /v1/unknown") == shipped.p99_ms["default"]
    custom = tmp_path / "slo.toml"
    custom.write_text('error_rate = 0.01\n[p99_ms]\ndefault = 400\n"POST /v1/orders" = 300\n')
    tuned = slo.load_slo(custom, ["error_rate=0.02", "POST /v1/orders=350", "default=500"])
    assert tuned.error_rate == 0.02
    assert tuned.p99_for("POST /v1/orders") == 350
    assert tuned.p99_for("GET /v1/availability/[sku]") == 500
    with pytest.raises(ValueError):
        slo.load_slo(custom, ["no-equals-sign"])
