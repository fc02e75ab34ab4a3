"""How a loop that keeps trying (the sweeper, the projector, a worker waiting at start-up, the
cluster slot map refresh) reports a dependency that keeps failing: once when it starts failing,
then at most once per interval with the count, and once when it succeeds again. A line per
attempt would be one a second or more per process for the whole outage."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable


class OutageLog:
    """``what`` names the attempt: "sweep" logs "sweep failed (...)" and "sweep succeeded
    after ..."."""

    def __init__(
        self,
        log: logging.Logger,
        what: str,
        *,
        interval_s: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._log = log
        self._clock = clock
        self._what = what
        self._interval_s = interval_s
        self._logged_at = 0.0
        self.failing = 0  # attempts failed in a row

    def failed(self, exc: BaseException) -> None:
        self.failing += 1
        now = self._clock()
        if self.failing == 1 or now - self._logged_at >= self._interval_s:
            self._logged_at = now
            self._log.warning("%s failed (%d in a row so far): %s", self._what, self.failing, exc)

    def succeeded(self) -> None:
        if self.failing:
            self._log.warning("%s succeeded after %d failures in a row", self._what, self.failing)
            self.failing = 0
