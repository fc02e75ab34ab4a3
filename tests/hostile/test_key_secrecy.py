"""API keys never show: not in the service's logs (pytest's caplog of the app in process at DEBUG,
and the stdout and stderr of a real ``omnistock serve``), not in any answer's body or headers.

Requests carry valid keys of every role, wrong keys that are near misses of real ones (one
character changed, one cut, one added, another scheme, other case and spacing), and keys placed
where no key belongs: in JSON bodies, in path ids, in query parameters and in an
Idempotency-Key. Neither any key nor its first 8 characters may appear in what is captured.
The service may name the ids a request sent in its problem details; for that reason the keys
placed in ids are given a form no id can take (a character outside the id pattern), so the
service has no reason to repeat them.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable
from typing import Any

import httpx
import pytest

from tests.api.conftest import KEYS
from tests.hostile.support import Served, client, served  # noqa: F401

PREFIX = 8
CLIENT_LOGGERS = ("httpx", "httpcore")
SECRETS = sorted(KEYS.values())


def near_misses(key: str) -> list[str]:
    changed = key[:-1] + ("0" if key[-1] != "0" else "1")
    return [changed, key[:-1], key + "x", key.upper(), "X" + key[1:]]


def authorizations() -> list[str]:
    values = []
    for key in SECRETS:
        values += [f"Bearer {key}", f"bearer {key}", f"Bearer  {key}", f"Basic {key}", key]
        values += [f"Bearer {wrong}" for wrong in near_misses(key)]
    return values


def planted(key: str) -> list[tuple[str, str, dict[str, Any]]]:
    """Requests with a key where none belongs; ``!`` keeps it from being a valid id."""
    odd = key + "!"
    headers = {"Authorization": f"Bearer {KEYS['admin']}"}
    return [
        ("GET", f"/v1/nodes/{odd}", {"headers": headers}),
        ("GET", f"/v1/stock/{odd}/{odd}/history", {"headers": headers}),
        ("GET", f"/v1/availability/sku-1?node_id={odd}&near={odd}", {"headers": headers}),
        ("GET", f"/v1/events?after={odd}", {"headers": headers}),
        ("GET", f"/v1/nodes?api_key={key}", {"headers": headers}),
        (
            "POST",
            "/v1/reservations",
            {
                "headers": {**headers, "Idempotency-Key": key, "Content-Type": "application/json"},
                "content": json.dumps(
                    {"lines": [{"node_id": odd, "sku": odd, "qty": 1}], "order_ref": odd}
                ).encode(),
            },
        ),
        (
            "POST",
            "/v1/reservations",
            {
                "headers": {**headers, "Idempotency-Key": key + "\x01"},
                "json": {"lines": []},
            },
        ),
        ("POST", "/v1/diagnostics/noop", {"headers": headers, "json": {"key": key}}),
        (
            "POST",
            "/v1/reservations",
            {"headers": {**headers, "Content-Type": "application/json"}, "content": key.encode()},
        ),
        ("PUT", f"/v1/nodes/{odd}", {"headers": headers, "json": {"name": key}}),
        ("POST", f"/v1/transfers/{odd}/receive", {"headers": headers, "json": {"api_key": key}}),
    ]


def all_requests() -> list[tuple[str, str, dict[str, Any]]]:
    requests: list[tuple[str, str, dict[str, Any]]] = []
    for value in authorizations():
        for method, path in (("GET", "/v1/nodes"), ("GET", "/metrics"), ("GET", "/v1/events")):
            requests.append((method, path, {"headers": {"Authorization": value}}))
    for key in SECRETS:
        requests += planted(key)
    return requests


def leaks(text: str) -> list[str]:
    found = []
    for key in SECRETS:
        for wrong in [key, *near_misses(key)]:
            for needle in (wrong, wrong[:PREFIX]):
                if needle in text:
                    found.append(needle)
    return sorted(set(found))


def transcript(responses: Iterable[Any]) -> str:
    parts = []
    for r in responses:
        parts.append(f"{r.status_code}\n")
        parts += [f"{k}: {v}\n" for k, v in r.headers.items()]
        parts.append(r.content.decode("utf-8", "replace") + "\n")
    return "".join(parts)


def check_answers(responses: list[Any]) -> None:
    assert leaks(transcript(responses)) == []
    assert all(r.status_code < 500 for r in responses), [
        (r.status_code, r.text[:200]) for r in responses if r.status_code >= 500
    ]
    # The requests did reach the service: some were let through, the wrong keys refused.
    statuses = {r.status_code for r in responses}
    assert {200, 401} <= statuses, statuses


async def test_keys_never_show_in_the_app_logs_or_answers(
    client,  # noqa: F811
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    responses = []
    for method, path, kwargs in all_requests():
        responses.append(await client.request(method, path, **kwargs))
    check_answers(responses)
    # The test's own HTTP client logs the URLs it sends: only the service's records count.
    service = [r for r in caplog.records if not r.name.startswith(CLIENT_LOGGERS)]
    logged = "\n".join(f"{r.name} {r.getMessage()} {r.exc_text or ''} {r.args!r}" for r in service)
    assert leaks(logged) == []


def send_all(base: str, requests: list[tuple[str, str, dict[str, Any]]]) -> list[Any]:
    with httpx.Client(base_url=base, timeout=30) as http:
        return [http.request(method, path, **kwargs) for method, path, kwargs in requests]


def test_keys_never_show_in_serve_output_or_answers(served: Served) -> None:  # noqa: F811
    responses = send_all(served.base, all_requests())
    check_answers(responses)
    output = served.text()
    assert "omnistock listening on" in output
    assert leaks(output) == []
