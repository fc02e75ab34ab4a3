"""The journal through the API, on SQLite and on PostgreSQL: a position's history newest first
(paged with ``next_before``) and every event in journal order (paged with ``next_after``), with
the reason, reference and resulting quantities of each change; oms and admin only.

The app runs its projector, on a Valkey of the test's own (the session's is shared by every
test's app, none of which journals). The journal trails the ledger, so tests poll the endpoint
until the events are there, up to a deadline.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from litestar.testing import AsyncTestClient

from omnistock.api.app import create_asgi
from omnistock.runtime.valkey_server import EmbeddedValkey
from tests.api.conftest import Ids, auth, make_node, set_stock, settings_for
from tests.api.support import assert_problem, idem, line, reserve_ok
from tests.integration.journal_support import (
    own_valkey_fixture,  # noqa: F401
    stop_task,
)

TIMESTAMP = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
WAIT_S = 15.0


@pytest.fixture
async def client(
    tmp_path: Path, own_valkey: EmbeddedValkey, database_url: str
) -> AsyncIterator[AsyncTestClient]:
    settings = settings_for(
        tmp_path / "data",
        own_valkey.url,
        projector=True,
        database_url=database_url,
        durability="fast",
    )
    async with AsyncTestClient(app=create_asgi(settings), timeout=30) as c:
        yield c
        # The app's shutdown cancels its projector once and waits for it without a deadline;
        # a cancellation lost in redis-py on Python 3.11 (see stop_task) would hang it for ever.
        await asyncio.to_thread(c.blocking_portal.call, _stop_projector)


async def _stop_projector() -> None:
    """Stops the app's projector task (on the app's event loop)."""
    for task in asyncio.all_tasks():
        if task.get_name() == "projector":
            await stop_task(task)


async def _get_ok(client: AsyncTestClient, path: str, **params: Any) -> dict[str, Any]:
    response = await client.get(path, params=params, headers=auth("oms"))
    assert response.status_code == 200, response.text
    return response.json()


async def wait_for_history(
    client: AsyncTestClient, node: str, sku: str, count: int
) -> list[dict[str, Any]]:
    """Polls the history until it has ``count`` events (the projector trails the ledger)."""
    deadline = time.monotonic() + WAIT_S
    while True:
        page = await _get_ok(client, f"/v1/stock/{node}/{sku}/history", limit=1000)
        if len(page["items"]) >= count:
            return page["items"]
        assert time.monotonic() < deadline, f"history has {len(page['items'])} of {count} events"
        await asyncio.sleep(0.05)


async def _adjust(client: AsyncTestClient, key: str, *adjustments: dict[str, Any]) -> None:
    response = await client.post(
        "/v1/stock/adjustments", json={"adjustments": list(adjustments)}, headers=idem(key)
    )
    assert response.status_code == 200, response.text


async def _finish(client: AsyncTestClient, key: str, rid: str, action: str) -> None:
    response = await client.post(f"/v1/reservations/{rid}/{action}", headers=idem(key))
    assert response.status_code == 200, response.text


async def _story(client: AsyncTestClient, ids: Ids) -> tuple[str, str, str, str]:
    """Five changes of one position: set 10, receipt +5 (ref po-1), sale -2, reserve 3, commit.
    Returns the node, the SKU, the reservation id and a second SKU changed alongside."""
    node, sku, other = ids.node(), ids.sku(), ids.sku()
    await make_node(client, node)
    await set_stock(client, node, sku, 10)
    await _adjust(
        client,
        ids.key(),
        {"node_id": node, "sku": sku, "delta": 5, "reason": "receipt", "ref": "po-1"},
        {"node_id": node, "sku": other, "delta": 4, "reason": "receipt"},
    )
    await _adjust(client, ids.key(), {"node_id": node, "sku": sku, "delta": -2, "reason": "sale"})
    reservation = await reserve_ok(client, ids.key(), [line(node, sku, 3)], order_ref="o-1")
    rid = reservation["reservation_id"]
    await _finish(client, ids.key(), rid, "commit")
    return node, sku, rid, other


async def test_history_is_newest_first_with_reasons_references_and_quantities(
    client: AsyncTestClient, ids: Ids
) -> None:
    node, sku, rid, other = await _story(client, ids)

    items = await wait_for_history(client, node, sku, 5)

    assert [i["kind"] for i in items] == ["commit", "reserve", "sale", "receipt", "set"]
    assert [i["ref"] for i in items] == [rid, rid, "", "po-1", "count"]
    deltas = [
        (i["delta"]["on_hand"], i["delta"]["reserved"], i["delta"]["held"], i["delta"]["inbound"])
        for i in items
    ]
    assert deltas == [(-3, -3, 0, 0), (0, 3, 0, 0), (-2, 0, 0, 0), (5, 0, 0, 0), (10, 0, 0, 0)]
    assert [(i["on_hand"], i["reserved"], i["held"], i["inbound"]) for i in items] == [
        (10, 0, 0, 0),
        (13, 3, 0, 0),
        (13, 0, 0, 0),
        (15, 0, 0, 0),
        (10, 0, 0, 0),
    ]
    assert [i["version"] for i in items] == [5, 4, 3, 2, 1]
    seqs = [i["seq"] for i in items]
    assert seqs == sorted(seqs, reverse=True) and len(set(seqs)) == 5
    assert all(i["node_id"] == node and i["sku"] == sku for i in items)
    assert all(TIMESTAMP.match(i["at"]) for i in items)
    assert all(i["op_id"] and i["safety_stock"] == 0 for i in items)
    assert len({i["event_id"] for i in items}) == 5
    # The last event leaves the position as the ledger has it now.
    live = await _get_ok(client, f"/v1/stock/{node}/{sku}")
    assert (items[0]["on_hand"], items[0]["reserved"]) == (live["on_hand"], live["reserved"])
    # The other SKU's receipt is its own history, not this one's.
    [receipt] = await wait_for_history(client, node, other, 1)
    assert (receipt["kind"], receipt["delta"]["on_hand"], receipt["on_hand"]) == ("receipt", 4, 4)


async def test_history_pages_with_next_before(client: AsyncTestClient, ids: Ids) -> None:
    node, sku, _rid, _other = await _story(client, ids)
    everything = await wait_for_history(client, node, sku, 5)
    path = f"/v1/stock/{node}/{sku}/history"

    first = await _get_ok(client, path, limit=2)
    second = await _get_ok(client, path, limit=2, before=first["next_before"])
    third = await _get_ok(client, path, limit=2, before=second["next_before"])

    assert first["next_before"] == first["items"][-1]["seq"]
    assert second["next_before"] == second["items"][-1]["seq"]
    assert third["next_before"] is None  # a short page is the last
    assert first["items"] + second["items"] + third["items"] == everything
    # A page that ends exactly at the oldest event still offers a next page, which is empty.
    full = await _get_ok(client, path, limit=5)
    assert full["items"] == everything and full["next_before"] == everything[-1]["seq"]
    assert await _get_ok(client, path, limit=5, before=full["next_before"]) == {
        "items": [],
        "next_before": None,
    }
    # The default page; an unknown position has no history.
    assert (await _get_ok(client, path))["items"] == everything
    assert await _get_ok(client, f"/v1/stock/{node}/{ids.sku()}/history") == {
        "items": [],
        "next_before": None,
    }


async def test_events_page_through_the_journal_in_order_with_next_after(
    client: AsyncTestClient, ids: Ids
) -> None:
    node, sku, _rid, other = await _story(client, ids)
    await wait_for_history(client, node, sku, 5)
    await wait_for_history(client, node, other, 1)

    pages = []
    after = 0
    while True:
        page = await _get_ok(client, "/v1/events", after=after, limit=2)
        pages.append(page)
        if not page["items"]:
            assert page["next_after"] == after  # nothing new: ask again from the same place
            break
        assert page["next_after"] == page["items"][-1]["seq"]
        after = page["next_after"]

    items = [i for page in pages for i in page["items"]]
    assert len(pages) == 4 and [len(p["items"]) for p in pages] == [2, 2, 2, 0]
    seqs = [i["seq"] for i in items]
    assert seqs == sorted(seqs) and len(set(seqs)) == 6
    assert [(i["sku"], i["kind"]) for i in items if i["sku"] == sku] == [
        (sku, "set"),
        (sku, "receipt"),
        (sku, "sale"),
        (sku, "reserve"),
        (sku, "commit"),
    ]
    assert [(i["sku"], i["kind"], i["ref"]) for i in items if i["sku"] == other] == [
        (other, "receipt", "")
    ]
    # The whole journal in one page, and a page after its end.
    everything = await _get_ok(client, "/v1/events", limit=1000)
    assert everything["items"] == items and everything["next_after"] == seqs[-1]
    assert (await _get_ok(client, "/v1/events", after=seqs[-1])) == {
        "items": [],
        "next_after": seqs[-1],
    }
    middle = await _get_ok(client, "/v1/events", after=seqs[2], limit=2)
    assert [i["seq"] for i in middle["items"]] == seqs[3:5]


@pytest.mark.parametrize("path", ["/v1/stock/n-1/s-1/history", "/v1/events"])
async def test_journal_is_for_oms_and_admin_only(client: AsyncTestClient, path: str) -> None:
    missing = await client.get(path)
    assert_problem(missing, 401)
    assert missing.headers.get("www-authenticate", "").startswith("Bearer")
    assert_problem(
        await client.get(path, headers={"Authorization": "Bearer test-unknown-key-0000000009"}),
        401,
    )
    assert_problem(await client.get(path, headers=auth("storefront")), 403)
    for role in ("oms", "admin"):
        response = await client.get(path, headers=auth(role))
        assert response.status_code == 200, response.text


@pytest.mark.parametrize(
    ("path", "field"),
    [
        ("/v1/stock/bad%20node/s-1/history", "node_id"),
        ("/v1/stock/n-1/bad$sku/history", "sku"),
        (f"/v1/stock/n-1/{'s' * 65}/history", "sku"),
        ("/v1/stock/n-1/s-1/history?limit=0", "limit"),
        ("/v1/stock/n-1/s-1/history?limit=1001", "limit"),
        ("/v1/stock/n-1/s-1/history?limit=ten", "limit"),
        ("/v1/stock/n-1/s-1/history?before=0", "before"),
        ("/v1/stock/n-1/s-1/history?before=x", "before"),
        ("/v1/events?limit=0", "limit"),
        ("/v1/events?limit=1001", "limit"),
        ("/v1/events?after=-1", "after"),
        ("/v1/events?after=later", "after"),
    ],
)
async def test_bad_ids_and_paging_parameters_are_422(
    client: AsyncTestClient, path: str, field: str
) -> None:
    assert_problem(await client.get(path, headers=auth("oms")), 422, field)
