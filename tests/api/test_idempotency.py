"""Idempotency-Key: the same request again gets the stored first response and changes nothing
more; another request under the same key is refused; keys are per API key and kept 24 hours."""

from __future__ import annotations

import hashlib
import json
from typing import Any

import redis.asyncio as aioredis

from tests.api.conftest import KEYS, Ids, auth, make_node, position, set_stock
from tests.api.support import (
    assert_problem,
    concurrently,
    idem,
    line,
    reserve,
    reserve_ok,
    snapshot,
)

REPLAYED = "idempotent-replayed"
DAY_MS = 24 * 3600 * 1000


async def stocked(client: Any, ids: Ids, on_hand: int = 10) -> tuple[str, str]:
    node, sku = ids.node(), ids.sku()
    await make_node(client, node)
    await set_stock(client, node, sku, on_hand)
    return node, sku


async def test_same_key_and_body_replays_the_first_response_and_reserves_once(
    client, ids: Ids
) -> None:
    node, sku = await stocked(client, ids)
    key = ids.key()
    first = await reserve(client, key, [line(node, sku, 3)], order_ref="o-1")
    second = await reserve(client, key, [line(node, sku, 3)], order_ref="o-1")

    assert first.status_code == 201, first.text
    assert REPLAYED not in first.headers
    assert second.status_code == 201, second.text
    assert second.headers.get(REPLAYED) == "true"
    assert second.content == first.content
    pos = await position(client, node, sku)
    assert (pos["reserved"], pos["available"]) == (3, 7)


async def test_a_255_character_key_is_accepted_and_replays(client, ids: Ids) -> None:
    node, sku = await stocked(client, ids)
    key = (ids.key() + "-" + "k" * 255)[:255]
    first = await reserve(client, key, [line(node, sku, 1)])
    second = await reserve(client, key, [line(node, sku, 1)])

    assert first.status_code == 201, first.text
    assert second.status_code == 201 and second.content == first.content
    assert second.headers.get(REPLAYED) == "true"
    assert (await position(client, node, sku))["reserved"] == 1


async def test_replay_after_commit_is_still_the_first_response(client, ids: Ids) -> None:
    node, sku = await stocked(client, ids)
    key = ids.key()
    first = await reserve(client, key, [line(node, sku, 4)])
    assert first.status_code == 201, first.text
    rid = first.json()["reservation_id"]
    committed = await client.post(f"/v1/reservations/{rid}/commit", headers=auth("oms"))
    assert committed.status_code == 200, committed.text

    again = await reserve(client, key, [line(node, sku, 4)])

    assert again.status_code == 201 and again.content == first.content
    assert again.headers.get(REPLAYED) == "true"
    pos = await position(client, node, sku)
    assert (pos["on_hand"], pos["reserved"], pos["available"]) == (6, 0, 6)


async def test_replay_of_a_shortage_is_the_same_409_even_once_stock_arrives(
    client, ids: Ids
) -> None:
    node, sku = await stocked(client, ids, on_hand=2)
    key = ids.key()
    first = await reserve(client, key, [line(node, sku, 5)])
    assert_problem(first, 409)
    await set_stock(client, node, sku, 50)

    second = await reserve(client, key, [line(node, sku, 5)])

    assert second.status_code == 409, second.text
    assert second.content == first.content
    assert second.headers.get(REPLAYED) == "true"
    assert (await position(client, node, sku))["reserved"] == 0


async def test_replay_of_a_refused_adjustment_is_the_same_409(client, ids: Ids) -> None:
    node, sku = await stocked(client, ids, on_hand=5)
    key = ids.key()
    body = {"adjustments": [{"node_id": node, "sku": sku, "delta": -9, "reason": "damage"}]}
    first = await client.post("/v1/stock/adjustments", json=body, headers=idem(key))
    assert_problem(first, 409)
    await set_stock(client, node, sku, 50)

    second = await client.post("/v1/stock/adjustments", json=body, headers=idem(key))

    assert second.status_code == 409, second.text
    assert second.content == first.content
    assert second.headers.get(REPLAYED) == "true"
    assert (await position(client, node, sku))["on_hand"] == 50


async def test_same_body_with_other_spacing_and_field_order_is_a_replay(client, ids: Ids) -> None:
    node, sku = await stocked(client, ids)
    key = ids.key()
    compact = json.dumps(
        {"lines": [{"node_id": node, "sku": sku, "qty": 2}], "ttl_s": 60},
        separators=(",", ":"),
    )
    spaced = json.dumps({"ttl_s": 60, "lines": [{"qty": 2, "sku": sku, "node_id": node}]}, indent=3)
    headers = idem(key, **{"Content-Type": "application/json"})
    first = await client.post("/v1/reservations", content=compact.encode(), headers=headers)
    second = await client.post("/v1/reservations", content=spaced.encode(), headers=headers)

    assert first.status_code == 201, first.text
    assert second.status_code == 201 and second.content == first.content
    assert second.headers.get(REPLAYED) == "true"
    assert (await position(client, node, sku))["reserved"] == 2


async def test_other_body_under_the_same_key_is_refused_and_changes_nothing(
    client, ids: Ids
) -> None:
    node, sku = await stocked(client, ids)
    key = ids.key()
    await reserve_ok(client, key, [line(node, sku, 2)])
    before = await snapshot(client, [(node, sku)])

    other = await reserve(client, key, [line(node, sku, 3)])

    assert_problem(other, 422, "Idempotency-Key")
    assert await snapshot(client, [(node, sku)]) == before


async def test_same_key_on_another_path_is_refused_and_changes_nothing(client, ids: Ids) -> None:
    node, sku = await stocked(client, ids)
    key = ids.key()
    adjusted = await client.post(
        "/v1/stock/adjustments",
        json={"adjustments": [{"node_id": node, "sku": sku, "delta": 5, "reason": "receipt"}]},
        headers=idem(key),
    )
    assert adjusted.status_code == 200, adjusted.text
    before = await snapshot(client, [(node, sku)])

    reserved = await reserve(client, key, [line(node, sku, 1)])

    assert_problem(reserved, 422, "Idempotency-Key")
    assert await snapshot(client, [(node, sku)]) == before
    assert before[0]["on_hand"] == 15


async def test_adjustment_replay_applies_the_delta_once(client, ids: Ids) -> None:
    node, sku = await stocked(client, ids)
    key = ids.key()
    body = {"adjustments": [{"node_id": node, "sku": sku, "delta": -4, "reason": "sale"}]}
    first = await client.post("/v1/stock/adjustments", json=body, headers=idem(key))
    second = await client.post("/v1/stock/adjustments", json=body, headers=idem(key))

    assert first.status_code == 200, first.text
    assert second.status_code == 200 and second.content == first.content
    assert second.headers.get(REPLAYED) == "true"
    assert (await position(client, node, sku))["on_hand"] == 6


async def test_the_same_key_under_two_api_keys_is_two_requests(client, ids: Ids) -> None:
    node, sku = await stocked(client, ids)
    key = ids.key()
    as_oms = await reserve(client, key, [line(node, sku, 2)], role="oms")
    as_admin = await reserve(client, key, [line(node, sku, 2)], role="admin")

    assert as_oms.status_code == 201, as_oms.text
    assert as_admin.status_code == 201, as_admin.text
    assert REPLAYED not in as_admin.headers
    assert as_oms.json()["reservation_id"] != as_admin.json()["reservation_id"]
    assert (await position(client, node, sku))["reserved"] == 4


async def test_concurrent_duplicates_reserve_exactly_once(client, ids: Ids) -> None:
    node, sku = await stocked(client, ids, on_hand=100)
    key = ids.key()
    request = {"json": {"lines": [line(node, sku, 7)]}, "headers": idem(key)}
    answers = await concurrently(client, "POST", "/v1/reservations", [request] * 20)

    created = [a for a in answers if a.status_code == 201]
    still_running = [a for a in answers if a.status_code == 409]
    assert len(created) + len(still_running) == len(answers), [a.text for a in answers]
    assert created, "at least the first request must have been answered 201"
    assert len({a.json()["reservation_id"] for a in created}) == 1
    assert len({a.content for a in created}) == 1
    for answer in still_running:
        assert_problem(answer, 409)
        assert "shortages" not in answer.json()
    assert sum(1 for a in created if a.headers.get(REPLAYED) != "true") == 1
    pos = await position(client, node, sku)
    assert (pos["reserved"], pos["available"]) == (7, 93)


def operation_id(api_key: str, idempotency_key: str) -> str:
    """The ledger operation id the API derives from the calling key and the Idempotency-Key
    (omnistock.api.idempotency): the key id is the first 12 hex characters of the key's SHA-256,
    hashed with the Idempotency-Key by BLAKE2b-128, each part followed by a NUL."""
    key_id = hashlib.sha256(api_key.encode()).hexdigest()[:12]
    h = hashlib.blake2b(digest_size=16)
    for part in (key_id.encode(), idempotency_key.encode()):
        h.update(part)
        h.update(b"\x00")
    return "k:" + h.hexdigest()


async def test_idempotency_keys_are_kept_at_least_24_hours(client, ids: Ids, valkey_server) -> None:
    node, sku = await stocked(client, ids)
    key = ids.key()
    await reserve_ok(client, key, [line(node, sku, 1)])

    claim_key = "{os.0}:fp:" + operation_id(KEYS["oms"], key)
    valkey = aioredis.from_url(valkey_server.url)
    try:
        ttl_ms = await valkey.pttl(claim_key)
    finally:
        await valkey.aclose()

    assert ttl_ms != -2, f"no claim stored at {claim_key}"
    assert ttl_ms == -1 or ttl_ms >= DAY_MS, ttl_ms


async def test_commit_with_a_key_replays_and_drops_on_hand_once(client, ids: Ids) -> None:
    node, sku = await stocked(client, ids)
    rid = (await reserve_ok(client, ids.key(), [line(node, sku, 3)]))["reservation_id"]
    key = ids.key()
    first = await client.post(f"/v1/reservations/{rid}/commit", headers=idem(key))
    second = await client.post(f"/v1/reservations/{rid}/commit", headers=idem(key))

    assert first.status_code == 200 and first.json()["status"] == "committed", first.text
    assert second.status_code == 200 and second.content == first.content
    assert second.headers.get(REPLAYED) == "true"
    pos = await position(client, node, sku)
    assert (pos["on_hand"], pos["reserved"], pos["available"]) == (7, 0, 7)

    # The same key on the release of the same reservation is another request.
    reused = await client.post(f"/v1/reservations/{rid}/release", headers=idem(key))
    assert_problem(reused, 422, "Idempotency-Key")
    assert await position(client, node, sku) == pos


async def test_release_with_a_key_replays_and_restores_available_once(client, ids: Ids) -> None:
    node, sku = await stocked(client, ids)
    rid = (await reserve_ok(client, ids.key(), [line(node, sku, 3)]))["reservation_id"]
    other = await reserve_ok(client, ids.key(), [line(node, sku, 2)])
    key = ids.key()
    first = await client.post(f"/v1/reservations/{rid}/release", headers=idem(key))
    second = await client.post(f"/v1/reservations/{rid}/release", headers=idem(key))

    assert first.status_code == 200 and first.json()["status"] == "released", first.text
    assert second.status_code == 200 and second.content == first.content
    assert second.headers.get(REPLAYED) == "true"
    pos = await position(client, node, sku)
    assert (pos["on_hand"], pos["reserved"], pos["available"]) == (10, 2, 8)
    assert other["status"] == "active"
