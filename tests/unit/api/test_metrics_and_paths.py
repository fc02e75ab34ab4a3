"""Metrics rendering and sharing between workers; query parameter parsing; timestamps."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from omnistock.api.metrics import Metrics
from omnistock.api.paths import point
from omnistock.api.schemas import timestamp
from omnistock.domain.errors import InvalidInput


def _value(text: str, prefix: str) -> float:
    [line] = [line for line in text.splitlines() if line.startswith(prefix)]
    return float(line.rsplit(" ", 1)[1])


def test_histogram_buckets_are_cumulative_and_count_every_request() -> None:
    m = Metrics()
    for seconds in (0.0002, 0.003, 0.003, 0.2):
        m.observe("/v1/x", "GET", 200, seconds)
    m.observe("/v1/x", "GET", 503, 3.0)
    text = m.render()
    labels = 'route="/v1/x",method="GET"'
    assert _value(text, f'omnistock_http_requests_total{{{labels},status="200"}}') == 4
    assert _value(text, f'omnistock_http_requests_total{{{labels},status="503"}}') == 1
    assert (
        _value(text, f'omnistock_http_request_duration_seconds_bucket{{{labels},le="0.0005"}}') == 1
    )
    assert (
        _value(text, f'omnistock_http_request_duration_seconds_bucket{{{labels},le="0.005"}}') == 3
    )
    assert (
        _value(text, f'omnistock_http_request_duration_seconds_bucket{{{labels},le="+Inf"}}') == 5
    )
    assert _value(text, f"omnistock_http_request_duration_seconds_count{{{labels}}}") == 5
    assert _value(
        text, f"omnistock_http_request_duration_seconds_sum{{{labels}}}"
    ) == pytest.approx(3.2062)


def test_a_scrape_adds_up_the_snapshots_of_other_workers(tmp_path: Path) -> None:
    other = Metrics(tmp_path)
    other.observe("/v1/x", "POST", 201, 0.001)
    other.outcome("reserved", 2)
    snapshot = json.loads(json.dumps(other._snapshot()))
    (tmp_path / "999999.json").write_text(json.dumps(snapshot))
    mine = Metrics(tmp_path)
    mine.observe("/v1/x", "POST", 201, 0.001)
    mine.outcome("reserved")
    text = mine.render()
    assert (
        _value(text, 'omnistock_http_requests_total{route="/v1/x",method="POST",status="201"}') == 2
    )
    assert _value(text, 'omnistock_ledger_outcomes_total{outcome="reserved"}') == 3


@pytest.mark.parametrize("raw", ["abc", "52.5", "91,0", "0,181", "1,2,3", ","])
def test_bad_points_name_the_parameter(raw: str) -> None:
    with pytest.raises(InvalidInput) as err:
        point("near", raw)
    assert err.value.field == "near"


def test_points_parse() -> None:
    assert point("near", "52.52,13.405") == (52.52, 13.405)


def test_timestamps_are_rfc3339_utc_with_milliseconds() -> None:
    assert timestamp(0) == "1970-01-01T00:00:00.000Z"
    assert timestamp(1_795_000_000_123) == "2026-11-18T11:06:40.123Z"
