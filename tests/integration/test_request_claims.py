"""Requests claim their operation ids with a fingerprint: the same request again replays, another
request under the same id is refused and changes nothing."""

from __future__ import annotations

import pytest

from omnistock.domain.errors import IdempotencyKeyReused
from omnistock.domain.stock import Line
from omnistock.reservations.claims import RequestClaim
from tests.integration.ledger_fixtures import (
    LONG_TTL_MS,
    Harness,
    harness_fixture,  # noqa: F401
    receipt,
)


async def test_same_request_replays_and_says_so(harness: Harness) -> None:
    node, sku = harness.names.node(), harness.names.sku()
    await harness.stock(node, sku, 5)
    op = harness.names.op()
    first_claim, again_claim = RequestClaim("fp-a"), RequestClaim("fp-a")
    first = await harness.ledger.reserve(
        op, [Line(node, sku, 2)], ttl_ms=LONG_TTL_MS, claim=first_claim
    )
    again = await harness.ledger.reserve(
        op, [Line(node, sku, 2)], ttl_ms=LONG_TTL_MS, claim=again_claim
    )
    assert (first_claim.replayed, again_claim.replayed) == (False, True)
    assert again == first
    assert (await harness.ledger.position(node, sku)).reserved == 2


async def test_another_request_under_the_same_id_is_refused(harness: Harness) -> None:
    node = harness.names.node()
    a, b = harness.names.skus_in_distinct_partitions(2)
    await harness.stock(node, a, 5)
    await harness.stock(node, b, 5)
    op = harness.names.op()
    await harness.ledger.reserve(
        op, [Line(node, a, 1)], ttl_ms=LONG_TTL_MS, claim=RequestClaim("x")
    )
    before = await harness.snapshot([a, b])
    with pytest.raises(IdempotencyKeyReused):
        # Another body, touching another partition: still the same key.
        await harness.ledger.reserve(
            op, [Line(node, b, 3)], ttl_ms=LONG_TTL_MS, claim=RequestClaim("y")
        )
    with pytest.raises(IdempotencyKeyReused):
        await harness.ledger.adjust(op, [receipt(node, b, 4)], claim=RequestClaim("z"))
    assert await harness.snapshot([a, b]) == before


async def test_claims_cover_commit_release_set_and_adjust(harness: Harness) -> None:
    node, sku = harness.names.node(), harness.names.sku()
    set_op = harness.names.op()
    await harness.ledger.set_stock(set_op, node, sku, 9, claim=RequestClaim("s"))
    replay = RequestClaim("s")
    pos = await harness.ledger.set_stock(set_op, node, sku, 9, claim=replay)
    assert replay.replayed and pos.on_hand == 9 and pos.version == 1
    adjust_op = harness.names.op()
    await harness.ledger.adjust(adjust_op, [receipt(node, sku, 1)], claim=RequestClaim("a"))
    replay = RequestClaim("a")
    [pos] = await harness.ledger.adjust(adjust_op, [receipt(node, sku, 1)], claim=replay)
    assert replay.replayed and pos.on_hand == 10
    r = await harness.ledger.reserve(harness.names.op(), [Line(node, sku, 4)], ttl_ms=LONG_TTL_MS)
    commit_op = harness.names.op()
    await harness.ledger.commit(commit_op, r.reservation_id, claim=RequestClaim("c"))
    replay = RequestClaim("c")
    done = await harness.ledger.commit(commit_op, r.reservation_id, claim=replay)
    assert replay.replayed and done.status == "committed"
    with pytest.raises(IdempotencyKeyReused):
        await harness.ledger.release(commit_op, r.reservation_id, claim=RequestClaim("r"))
    assert (await harness.ledger.position(node, sku)).on_hand == 6
