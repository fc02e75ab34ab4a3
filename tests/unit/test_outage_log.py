"""A dependency that keeps failing is logged once, then once per interval, then once when it
succeeds again: not once per attempt."""

from __future__ import annotations

import logging

import pytest

from omnistock.outage_log import OutageLog


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_an_outage_is_logged_when_it_starts_every_interval_and_when_it_ends(
    caplog: pytest.LogCaptureFixture,
) -> None:
    clock = Clock()
    outage = OutageLog(logging.getLogger("test.outage"), "sweep", interval_s=60, clock=clock)
    caplog.set_level(logging.WARNING, logger="test.outage")

    outage.succeeded()  # nothing was failing: nothing to say
    for second in range(201):  # one attempt a second, failing from t=0 to t=200
        clock.now = 1000.0 + second
        outage.failed(ConnectionError("refused"))
    clock.now += 1
    outage.succeeded()
    outage.succeeded()
    outage.failed(ConnectionError("refused again"))

    assert [r.getMessage() for r in caplog.records] == [
        "sweep failed (1 in a row so far): refused",
        "sweep failed (61 in a row so far): refused",
        "sweep failed (121 in a row so far): refused",
        "sweep failed (181 in a row so far): refused",
        "sweep succeeded after 201 failures in a row",
        "sweep failed (1 in a row so far): refused again",
    ]
    assert outage.failing == 1
