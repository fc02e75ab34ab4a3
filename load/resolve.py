"""After the run: settles the changes whose outcome the load never saw.

Each one is sent again exactly as recorded (method, path, body) under its own Idempotency-Key,
with the key of the role that sent it. The service answers with the stored first outcome when
the original ran (`Idempotent-Replayed: true`), or runs it now when it never arrived; either way
the answer says whether the change applied. What still gets no answer stays uncertain.
"""

from __future__ import annotations

import time
from collections.abc import Iterable

from load import outcomes
from load.changes import Change, ChangeLog
from load.http import TRANSPORT_ERRORS, Api
from load.outcomes import Outcome

ATTEMPTS = 5


def settle(changes: Iterable[Change], apis: dict[str, Api], log: ChangeLog) -> tuple[int, int]:
    """Settles every change with an unknown outcome; returns (settled, still unknown)."""
    pending = [c for c in changes if c.applied is None]

    def one(change: Change) -> bool:
        request = change.request
        api = apis[request["role"]]
        for attempt in range(ATTEMPTS):
            if attempt:
                time.sleep(0.2 * attempt)
            try:
                answer = api.send(
                    request["method"],
                    request["path"],
                    json=request.get("body"),
                    headers={"Idempotency-Key": change.op},
                )
            except TRANSPORT_ERRORS:
                continue
            outcome = outcomes.classify(answer.status, answer.body)
            if outcome is Outcome.RETRY:
                continue
            if outcomes.problem_type(answer.body) == "idempotency-key-reused":
                return False  # not the recorded request: its outcome stays unknown
            change.applied = outcome is Outcome.OK
            log.outcome(change.op, change.applied)
            return True
        return False

    if not pending:
        return 0, 0
    settled = sum(next(iter(apis.values())).map(one, pending))
    return settled, len(pending) - settled
