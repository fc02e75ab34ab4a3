"""How the load test judges one HTTP answer: pure, so the rules are testable without locust.

* `OK`: the documented success (2xx).
* `SHORT`: 409 with shortages (`insufficient-stock`, or `below-committed` for an adjustment that
  would take on_hand below what is reserved and held): an expected business outcome when stock
  runs out, counted apart, never a failure.
* `CONFLICT`: 409 `illegal-transition`, expected only where a race makes it legitimate (a
  reservation that expired before its commit); elsewhere the caller treats it as a failure.
* `RETRY`: the effect is unknown: a transport error or timeout (status 0), any 5xx, or 409
  `request-in-progress` (the first request under the same Idempotency-Key is still running).
  Sent again with the same key, the service replays the first outcome or runs it once.
* `FAIL`: anything else (4xx other than the above, an unexpected 409, an unexpected 2xx): a
  failure, and certain to have changed nothing (the API's errors never write).
"""

from __future__ import annotations

import enum
import json

PROBLEM_PREFIX = "urn:omnistock:problem:"
SHORT_TYPES = frozenset({"insufficient-stock", "below-committed"})


class Outcome(enum.Enum):
    OK = "ok"
    SHORT = "short"
    CONFLICT = "conflict"
    RETRY = "retry"
    FAIL = "fail"


# Stats rows of expected non-2xx outcomes: the request name gets this suffix.
SUFFIX = {
    Outcome.SHORT: " (409 short)",
    Outcome.CONFLICT: " (409 conflict)",
}
IN_PROGRESS_SUFFIX = " (409 in progress)"


def problem_type(body: bytes | str | None) -> str:
    """The short problem type of a problem+json body ('insufficient-stock'), or ''."""
    if not body:
        return ""
    try:
        kind = json.loads(body).get("type", "")
    except (ValueError, AttributeError):
        return ""
    return kind.removeprefix(PROBLEM_PREFIX) if isinstance(kind, str) else ""


def classify(status: int, body: bytes | str | None, ok: frozenset[int] = frozenset()) -> Outcome:
    """The outcome of an answer with `status` (0: no answer) and `body`; `ok` the statuses
    that mean success (default: any 2xx)."""
    if status == 0 or status >= 500:
        return Outcome.RETRY
    if (ok and status in ok) or (not ok and 200 <= status < 300):
        return Outcome.OK
    if status == 409:
        kind = problem_type(body)
        if kind in SHORT_TYPES:
            return Outcome.SHORT
        if kind == "illegal-transition":
            return Outcome.CONFLICT
        if kind == "request-in-progress":
            return Outcome.RETRY
    return Outcome.FAIL
