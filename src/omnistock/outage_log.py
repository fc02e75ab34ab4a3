"""How a background loop (the sweeper, the projector) reports a dependency that keeps failing:
once when it starts failing, then at most once per interval with the count, and once when it
works again. A line per attempt would be one a second per process for the whole outage."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable


class OutageLog:
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
            self._log.warning("%s works again after %d failures in a row", self._what, self.failing)
            self.failing = 0
