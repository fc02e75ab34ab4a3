"""How ``omnistock serve`` learns that its workers cannot start.

A worker whose services fail for good (a failure no waiting mends) stops itself, and granian
starts another in its place. Granian stops the service only when the new worker dies within
5.5 s of being started; on a busy host a fresh worker can take longer than that just to import
the app and fail again, and the service then replaced failing workers for ever. So each such
worker also tells the serve process (a signal; ``serve`` names its pid in the workers'
environment, so a worker under another parent signals nothing), and serve stops with status 1
once it has heard more failures than it has workers: every worker failed, and then a
replacement too, however long each took.
"""

from __future__ import annotations

import logging
import os
import signal
from collections.abc import Callable

log = logging.getLogger("omnistock")

SIGNAL = signal.SIGUSR1
SERVE_PID = "OMNISTOCK_SERVE_PID"


def report_to_service() -> None:
    """From a worker whose services failed for good: tells the serve process that started it."""
    if os.environ.get(SERVE_PID) == str(os.getppid()):
        os.kill(os.getppid(), SIGNAL)


def stop_after_repeated_failures(workers: int, stop: Callable[[], None]) -> None:
    """In the serve process, before its workers start: calls ``stop`` (from the main thread)
    once more than ``workers`` failures were reported."""
    failures = 0

    def heard(_signum: int, _frame: object) -> None:
        nonlocal failures
        failures += 1
        if failures == workers + 1:
            log.error("workers failed to start %d times; the service stops", failures)
            stop()

    signal.signal(SIGNAL, heard)
    os.environ[SERVE_PID] = str(os.getpid())
