"""Requests as the simulated users make them, on a locust `FastHttpUser` client.

One `Caller` per user wraps its client (duck-typed: nothing here imports locust, so the rules
stay testable without gevent). Every request is named by its route template
(`/v1/availability/[sku]`), so stats group per endpoint; an expected non-2xx answer is marked a
success and renamed with a suffix, so its count shows as its own row (`POST /v1/orders
(409 short)`). Bodies are encoded once, by the standard library, and sent as bytes.

A POST that creates or moves stock carries a fresh Idempotency-Key. When its answer is unknown
(a transport error, a timeout, a 5xx, or 409 request-in-progress) it is sent again with the
same key and the same bytes, a few times with a growing pause: the service replays the first
outcome or runs it once. Each attempt counts in the stats (a failed one as a failure). A change
of on_hand + inbound is written to the change log before it is sent and its outcome once known
(`load.changes`); one still unknown after the retries is settled by the runner after the load.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from load.changes import ChangeLog, Effect
from load.outcomes import IN_PROGRESS_SUFFIX, SUFFIX, Outcome, classify, problem_type

ATTEMPTS = 4
BACKOFF_S = (0.25, 0.5, 1.0)
JSON = "application/json"


@dataclass
class Answer:
    outcome: Outcome
    status: int
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


class Caller:
    def __init__(self, client: Any, key: str, role: str, log: ChangeLog | None) -> None:
        self.client = client
        self.role = role
        self.log = log
        self._auth = f"Bearer {key}"
        self._get_headers = {"Authorization": self._auth, "Accept": JSON}

    def get(self, path: str, name: str) -> Answer:
        return self._send("GET", path, name, None, self._get_headers, frozenset({200}), ())[0]

    def query(self, path: str, name: str, body: dict) -> Answer:
        """A POST that reads (availability query, routing quote): no key, not retried."""
        headers = {"Authorization": self._auth, "Accept": JSON, "Content-Type": JSON}
        return self._send("POST", path, name, _encode(body), headers, frozenset({200}), ())[0]

    def change(
        self,
        path: str,
        name: str,
        body: dict | None = None,
        *,
        ok: Iterable[int] = (200, 201),
        expected: Iterable[Outcome] = (),
        kind: str | None = None,
        effects: list[Effect] | None = None,
    ) -> Answer:
        """A POST that creates or moves stock, under a fresh Idempotency-Key. `expected`: the
        non-2xx outcomes that are business as usual here (SHORT, CONFLICT). With `kind` and
        `effects` it changes on_hand + inbound and is recorded in the change log."""
        op = f"load-{uuid.uuid4().hex}"
        data = b"" if body is None else _encode(body)
        headers = {
            "Authorization": self._auth,
            "Accept": JSON,
            "Content-Type": JSON,
            "Idempotency-Key": op,
        }
        logged = self.log is not None and kind is not None and effects
        if logged:
            request = {"method": "POST", "path": path, "body": body, "role": self.role}
            self.log.intent(op, kind, effects, request)
        answer = None
        for attempt in range(ATTEMPTS):
            answer, done = self._send(
                "POST", path, name, data, headers, frozenset(ok), frozenset(expected)
            )
            if done:
                break
            if attempt < ATTEMPTS - 1:
                time.sleep(BACKOFF_S[min(attempt, len(BACKOFF_S) - 1)])
        assert answer is not None
        if logged and answer.outcome is not Outcome.RETRY:
            self.log.outcome(op, answer.outcome is Outcome.OK)
        return answer

    def _send(
        self,
        method: str,
        path: str,
        name: str,
        data: bytes | None,
        headers: dict[str, str],
        ok: frozenset[int],
        expected: Iterable[Outcome],
    ) -> tuple[Answer, bool]:
        """One request; returns its answer and whether its outcome is known."""
        with self.client.request(
            method, path, data=data, headers=headers, name=name, catch_response=True
        ) as r:
            status = r.status_code or 0
            body = (r.content or b"") if status else b""
            outcome = classify(status, body, ok)
            if outcome is Outcome.OK:
                r.success()
            elif outcome in expected:
                r.request_meta["name"] = name + SUFFIX[outcome]
                r.success()
            elif outcome is Outcome.RETRY and status == 409:
                r.request_meta["name"] = name + IN_PROGRESS_SUFFIX
                r.success()
            elif status == 0:
                r.failure(f"no answer: {_transport_error(getattr(r, 'error', None))}")
            else:
                r.failure(f"{status} {_problem(body)}")
            if outcome not in expected and outcome not in (Outcome.OK, Outcome.RETRY):
                outcome = Outcome.FAIL
        return Answer(outcome, status, body), outcome is not Outcome.RETRY


def _transport_error(error: object) -> str:
    """The cause of a transport error without its URL (so failures group per cause)."""
    cause = getattr(error, "original", None) or error
    return f"{type(cause).__name__}: {cause}" if cause is not None else "unknown"


def _problem(body: bytes) -> str:
    """A short description of an error body for the failures table: type and detail."""
    try:
        data = json.loads(body)
        return f"{problem_type(body)}: {str(data.get('detail', ''))[:160]}"
    except (ValueError, AttributeError):
        return body[:160].decode("utf-8", "replace")


def _encode(body: dict) -> bytes:
    return json.dumps(body, separators=(",", ":")).encode()
