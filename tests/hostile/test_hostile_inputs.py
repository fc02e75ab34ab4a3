"""Hostile bodies through the app as served (ASGI, edge layer included, real Valkey and SQLite):
oversized bodies, JSON nested 100,000 deep, 10,000 lines, numbers of 2**70, megabyte ids,
invalid UTF-8 and non-finite numbers. Each is refused as problem+json with its documented
status (413, 400 or 422) naming the field, quickly, and leaves the ledger as it was.

The same requests against a real ``omnistock serve``, with slow clients beside them, are in
test_slow_clients.py.
"""

from __future__ import annotations

import json
import time
from typing import Any

import pytest

from omnistock.api.controllers.journal import MAX_SEQ
from tests.api.conftest import Ids, make_node, set_stock
from tests.api.support import assert_problem, snapshot
from tests.hostile.support import bearer, client  # noqa: F401

JSON = {"Content-Type": "application/json"}
ANSWER_WITHIN_S = 5.0


def deep_array(depth: int) -> bytes:
    return b"[" * depth + b"]" * depth


def deep_object(depth: int) -> bytes:
    return b'{"a":' * depth + b"1" + b"}" * depth


def reservation(node: str, sku: str, qty: Any = 1, **line: Any) -> dict[str, Any]:
    return {"lines": [{"node_id": node, "sku": sku, "qty": qty, **line}]}


# (name, method, path template, body builder, status, field). Path templates and bodies see the
# test's node and sku.
HOSTILE: list[tuple[str, str, str, Any, int, str | None]] = [
    (
        "body of 2 MiB",
        "POST",
        "/v1/reservations",
        lambda n, s: json.dumps({**reservation(n, s), "pad": "x" * 2_097_152}).encode(),
        413,
        "body",
    ),
    (
        "100k nested arrays",
        "POST",
        "/v1/reservations",
        lambda n, s: deep_array(100_000),
        400,
        "body",
    ),
    (
        "100k nested arrays inside a field",
        "POST",
        "/v1/reservations",
        lambda n, s: b'{"lines": ' + deep_array(100_000) + b"}",
        400,
        "body",
    ),
    (
        "100k nested objects",
        "POST",
        "/v1/diagnostics/noop",
        lambda n, s: deep_object(100_000),
        400,
        "body",
    ),
    (
        "100k nested arrays, any JSON accepted",
        "POST",
        "/v1/diagnostics/noop",
        lambda n, s: deep_array(100_000),
        400,
        "body",
    ),
    (
        "10k reservation lines",
        "POST",
        "/v1/reservations",
        lambda n, s: json.dumps({"lines": reservation(n, s)["lines"] * 10_000}).encode(),
        422,
        "lines",
    ),
    (
        "10k adjustments",
        "POST",
        "/v1/stock/adjustments",
        lambda n, s: json.dumps(
            {"adjustments": [{"node_id": n, "sku": s, "delta": 1, "reason": "receipt"}] * 10_000}
        ).encode(),
        422,
        "adjustments",
    ),
    (
        "10k skus in a query",
        "POST",
        "/v1/availability/query",
        lambda n, s: json.dumps({"skus": [s] * 10_000}).encode(),
        422,
        "skus",
    ),
    (
        "qty 2**70",
        "POST",
        "/v1/reservations",
        lambda n, s: json.dumps(reservation(n, s, 2**70)).encode(),
        422,
        "lines[0].qty",
    ),
    (
        "qty -2**70",
        "POST",
        "/v1/reservations",
        lambda n, s: json.dumps(reservation(n, s, -(2**70))).encode(),
        422,
        "lines[0].qty",
    ),
    (
        "on_hand 2**70",
        "PUT",
        "/v1/stock/{n}/{s}",
        lambda n, s: json.dumps({"on_hand": 2**70}).encode(),
        422,
        "on_hand",
    ),
    (
        "delta -2**70",
        "POST",
        "/v1/stock/adjustments",
        lambda n, s: json.dumps(
            {"adjustments": [{"node_id": n, "sku": s, "delta": -(2**70), "reason": "sale"}]}
        ).encode(),
        422,
        "adjustments[0].delta",
    ),
    (
        "qty with 400 digits",
        "POST",
        "/v1/reservations",
        lambda n, s: json.dumps(reservation(n, s, 10**400)).encode(),
        422,
        "lines[0].qty",
    ),
    (
        "ttl 1e999",
        "POST",
        "/v1/reservations",
        lambda n, s: json.dumps(reservation(n, s))[:-1].encode() + b', "ttl_s": 1e999}',
        400,
        "body",
    ),
    (
        "NaN quantity",
        "POST",
        "/v1/reservations",
        lambda n, s: json.dumps(reservation(n, s, "Q"))[:-1].replace('"Q"', "NaN").encode(),
        400,
        "body",
    ),
    (
        "900 KB sku",
        "POST",
        "/v1/reservations",
        lambda n, s: json.dumps(reservation(n, "s" * 900_000)).encode(),
        422,
        "lines[0].sku",
    ),
    (
        "1 MB node id",
        "POST",
        "/v1/reservations",
        lambda n, s: json.dumps(reservation("n" * 1_048_576, s)).encode(),
        413,
        "body",
    ),
    (
        "invalid UTF-8 in an id",
        "POST",
        "/v1/reservations",
        lambda n, s: b'{"lines": [{"node_id": "\xff\xfe", "sku": "a", "qty": 1}]}',
        400,
        "body",
    ),
    (
        "invalid UTF-8 in any JSON",
        "POST",
        "/v1/diagnostics/noop",
        lambda n, s: b'{"a": "\xc3\x28"}',
        400,
        "body",
    ),
    (
        "a lone surrogate escape",
        "POST",
        "/v1/reservations",
        lambda n, s: json.dumps(reservation(n, "\ud800")).encode(),
        400,
        "body",
    ),
    (
        "NUL in an id",
        "POST",
        "/v1/reservations",
        lambda n, s: json.dumps(reservation(n, "a\x00b")).encode(),
        422,
        "lines[0].sku",
    ),
]


@pytest.mark.parametrize(
    ("method", "template", "body", "status", "field"),
    [pytest.param(*case[1:], id=case[0]) for case in HOSTILE],
)
async def test_hostile_body_is_refused_with_its_field_and_changes_nothing(
    client,  # noqa: F811
    ids: Ids,
    method: str,
    template: str,
    body: Any,
    status: int,
    field: str | None,
) -> None:
    node, sku = ids.node(), ids.sku()
    await make_node(client, node)
    await set_stock(client, node, sku, 10)
    before = await snapshot(client, [(node, sku)])
    headers = {**bearer("admin"), **JSON, "Idempotency-Key": ids.key()}

    started = time.monotonic()
    response = await client.request(
        method, template.format(n=node, s=sku), content=body(node, sku), headers=headers
    )
    elapsed = time.monotonic() - started

    assert_problem(response, status, field)
    assert elapsed < ANSWER_WITHIN_S, elapsed
    assert await snapshot(client, [(node, sku)]) == before
    # The service still answers normally afterwards.
    assert (await client.get(f"/v1/stock/{node}/{sku}", headers=bearer("oms"))).status_code == 200


@pytest.fixture
def ids() -> Ids:
    return Ids()


@pytest.mark.parametrize(
    ("path", "field"),
    [
        ("/v1/events?after={big}", "after"),
        ("/v1/stock/{n}/{s}/history?before={big}", "before"),
        ("/v1/events?limit={big}", "limit"),
        ("/v1/stock/{n}/{s}/history?limit={big}", "limit"),
    ],
)
@pytest.mark.parametrize("big", [2**63, 2**70, 10**400], ids=["2**63", "2**70", "10**400"])
async def test_huge_numbers_in_the_query_are_invalid_input(
    client,  # noqa: F811
    ids: Ids,
    path: str,
    field: str,
    big: int,
) -> None:
    """Journal positions are SQL BIGINTs: a larger one is refused as input (422 naming the
    parameter), not handed to the database."""
    url = path.format(n=ids.node(), s=ids.sku(), big=big)
    assert_problem(await client.get(url, headers=bearer("oms")), 422, field)


async def test_the_largest_journal_position_is_accepted(client) -> None:  # noqa: F811
    response = await client.get(f"/v1/events?after={MAX_SEQ}", headers=bearer("oms"))
    assert response.status_code == 200, response.text
    assert response.json() == {"items": [], "next_after": MAX_SEQ}
