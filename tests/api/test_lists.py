"""Lists of reservations, holds and transfers, on SQLite and on PostgreSQL: by status (open ones
by default), newest first, paged with ``next_after``, each item the body of the single GET as
the ledger has it now; oms and admin only.

Which documents exist comes from the projection, so the app runs its projector, on a Valkey of
the test's own, and tests poll a list until the projector has caught up, up to a deadline.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
from litestar.testing import AsyncTestClient

from omnistock.api.app import create_asgi
from omnistock.runtime.valkey_server import EmbeddedValkey
from tests.api.conftest import Ids, auth, make_node, set_stock, settings_for
from tests.api.movement_support import hold_ok, make_store, sku_line, step_ok, transfer_ok
from tests.api.support import assert_problem, idem, line, reserve_ok
from tests.integration.journal_support import (
    own_valkey_fixture,  # noqa: F401
    stop_task,
)

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
        await asyncio.to_thread(c.blocking_portal.call, _stop_projector)


async def _stop_projector() -> None:
    """Stops the app's projector task (on the app's event loop); see tests/api/test_journal.py."""
    for task in asyncio.all_tasks():
        if task.get_name() == "projector":
            await stop_task(task)


async def _list(client: AsyncTestClient, path: str, **params: Any) -> dict[str, Any]:
    response = await client.get(path, params=params, headers=auth("oms"))
    assert response.status_code == 200, response.text
    return response.json()


async def wait_for_list(
    client: AsyncTestClient,
    path: str,
    ready: Callable[[list[dict[str, Any]]], bool],
    **params: Any,
) -> list[dict[str, Any]]:
    """Polls a list (one page) until ``ready`` holds for its items: the projector trails the
    ledger."""
    deadline = time.monotonic() + WAIT_S
    while True:
        items = (await _list(client, path, **params))["items"]
        if ready(items):
            return items
        assert time.monotonic() < deadline, f"{path} {params}: {items}"
        await asyncio.sleep(0.05)


def ids_of(items: list[dict[str, Any]], field: str) -> list[str]:
    return [item[field] for item in items]


async def _finish(client: AsyncTestClient, ids: Ids, rid: str, action: str) -> None:
    response = await client.post(f"/v1/reservations/{rid}/{action}", headers=idem(ids.key()))
    assert response.status_code == 200, response.text


async def test_reservations_by_status_newest_first_each_as_its_single_get(
    client: AsyncTestClient, ids: Ids
) -> None:
    node, sku = ids.node(), ids.sku()
    await make_node(client, node)
    await set_stock(client, node, sku, 100)
    made = []
    for i in range(5):
        made.append(
            await reserve_ok(client, ids.key(), [line(node, sku, i + 1)], order_ref=f"o{i}")
        )
        await asyncio.sleep(0.002)  # distinct creation milliseconds: a defined order
    rids = [r["reservation_id"] for r in made]
    newest_first = rids[::-1]

    active = await wait_for_list(
        client, "/v1/reservations", lambda items: len(items) == 5, status="active"
    )

    assert ids_of(active, "reservation_id") == newest_first
    for item in active:
        single = await client.get(f"/v1/reservations/{item['reservation_id']}", headers=auth("oms"))
        assert item == single.json()
    assert active[-1]["lines"] == [line(node, sku, 1)] and active[-1]["order_ref"] == "o0"
    # Active is the default.
    assert (await _list(client, "/v1/reservations"))["items"] == active

    # Committed and released ones leave the active list at once (each item is read live) and
    # are listed under their new status.
    await _finish(client, ids, rids[1], "commit")
    await _finish(client, ids, rids[3], "release")
    listed = await _list(client, "/v1/reservations")
    assert ids_of(listed["items"], "reservation_id") == [rids[4], rids[2], rids[0]]
    committed = await wait_for_list(client, "/v1/reservations", bool, status="committed")
    assert ids_of(committed, "reservation_id") == [rids[1]]
    assert committed[0]["status"] == "committed"
    released = await wait_for_list(client, "/v1/reservations", bool, status="released")
    assert ids_of(released, "reservation_id") == [rids[3]]
    assert (await _list(client, "/v1/reservations", status="expired"))["items"] == []


async def test_reservations_page_with_next_after(client: AsyncTestClient, ids: Ids) -> None:
    node, sku = ids.node(), ids.sku()
    await make_node(client, node)
    await set_stock(client, node, sku, 100)
    rids = []
    for _ in range(5):
        rids.append((await reserve_ok(client, ids.key(), [line(node, sku, 1)]))["reservation_id"])
    everything = await wait_for_list(client, "/v1/reservations", lambda items: len(items) == 5)
    assert sorted(ids_of(everything, "reservation_id")) == sorted(rids)

    pages = [await _list(client, "/v1/reservations", limit=2)]
    while pages[-1]["next_after"] is not None:
        pages.append(
            await _list(client, "/v1/reservations", limit=2, after=pages[-1]["next_after"])
        )

    assert [len(p["items"]) for p in pages] == [2, 2, 1]
    assert [i for p in pages for i in p["items"]] == everything
    # A full page ending at the oldest offers a next page, which is empty.
    full = await _list(client, "/v1/reservations", limit=5)
    assert full["items"] == everything and full["next_after"] is not None
    assert await _list(client, "/v1/reservations", limit=5, after=full["next_after"]) == {
        "items": [],
        "next_after": None,
    }


async def test_holds_and_transfers_by_status(client: AsyncTestClient, ids: Ids) -> None:
    sku = ids.sku()
    store = await make_store(client, ids)
    source = ids.node("wh")
    await make_node(client, source)
    await set_stock(client, store, sku, 10)
    await set_stock(client, source, sku, 10)
    hold = await hold_ok(client, ids.key(), store, [sku_line(sku, 2)], customer_ref="c-1")
    moved = await transfer_ok(client, ids.key(), source, store, [sku_line(sku, 3)])

    holds = await wait_for_list(client, "/v1/holds", bool)
    transfers = await wait_for_list(client, "/v1/transfers", bool)

    single_hold = await client.get(f"/v1/holds/{hold['hold_id']}", headers=auth("oms"))
    assert holds == [single_hold.json()]
    single_transfer = await client.get(f"/v1/transfers/{moved['transfer_id']}", headers=auth("oms"))
    assert transfers == [single_transfer.json()]

    # A hold made ready emits no event, so the projection still has it placed: each item is
    # read live, and the list by status says what the ledger says.
    await step_ok(client, "holds", hold["hold_id"], "ready")
    await step_ok(client, "transfers", moved["transfer_id"], "ship")
    ready = await _list(client, "/v1/holds", status="ready")
    assert ids_of(ready["items"], "hold_id") == [hold["hold_id"]]
    assert (await _list(client, "/v1/holds", status="placed"))["items"] == []
    assert ids_of((await _list(client, "/v1/holds"))["items"], "hold_id") == [hold["hold_id"]]
    in_transit = await _list(client, "/v1/transfers", status="in_transit")
    assert [i["status"] for i in in_transit["items"]] == ["in_transit"]

    await step_ok(client, "holds", hold["hold_id"], "cancel")
    await step_ok(client, "transfers", moved["transfer_id"], "receive")
    assert (await _list(client, "/v1/holds"))["items"] == []
    assert (await _list(client, "/v1/transfers"))["items"] == []
    cancelled = await wait_for_list(client, "/v1/holds", bool, status="cancelled")
    assert ids_of(cancelled, "hold_id") == [hold["hold_id"]]
    received = await wait_for_list(client, "/v1/transfers", bool, status="received")
    assert ids_of(received, "transfer_id") == [moved["transfer_id"]]


@pytest.mark.parametrize("path", ["/v1/reservations", "/v1/holds", "/v1/transfers"])
async def test_lists_refuse_bad_parameters_and_lower_roles(
    client: AsyncTestClient, path: str
) -> None:
    async def get(**params: Any) -> Any:
        return await client.get(path, params=params, headers=auth("oms"))

    assert_problem(await get(status="lost"), 422, "status")
    assert_problem(await get(limit=0), 422, "limit")
    assert_problem(await get(limit=101), 422, "limit")
    assert_problem(await get(after="yesterday"), 422, "after")
    assert_problem(await get(page=2), 422, "page")
    assert_problem(await client.get(path), 401)
    assert_problem(await client.get(path, headers=auth("storefront")), 403)
    assert (await client.get(path, headers=auth("admin"))).status_code == 200
