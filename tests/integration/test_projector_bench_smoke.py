"""The projector benchmark runs end to end in a short round and writes a complete report (its
figures are not checked here: CPU time on a shared machine says nothing about correctness; the
benchmark itself fails when a round's events are not journaled exactly once)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aioredis

from benchmarks import projector_bench
from omnistock.reservations import keys
from omnistock.runtime.valkey_server import EmbeddedValkey
from tests.integration.journal_support import own_valkey_fixture  # noqa: F401


def test_short_projector_benchmark_journals_every_event_once_and_reports_both_arms(
    tmp_path: Path,
) -> None:
    code = projector_bench.main(
        ["--seconds", "1", "--rounds", "1", "--rate", "500", "--out", str(tmp_path)]
    )

    assert code == 0
    report = json.loads((tmp_path / "projector.json").read_text())
    assert set(report["arms"]) == {"linger", "eager"}
    for arm in report["arms"].values():
        [only_round] = arm["rounds"]
        assert only_round["events"] > 0
        assert only_round["batches"] > 0
        assert only_round["cpu_usec_per_event"] > 0
    assert report["linger_vs_eager_cpu"] > 0
    assert "| linger | 25 |" in (tmp_path / "projector.md").read_text()


STREAM = keys.stream_key(0)


@pytest.fixture
async def client(own_valkey: EmbeddedValkey) -> AsyncIterator[Any]:
    c = aioredis.from_url(own_valkey.url)
    try:
        yield c
    finally:
        await c.aclose()


async def test_a_rounds_events_are_counted_in_its_own_entries_when_earlier_ones_were_trimmed(
    client: Any,
) -> None:
    # The stream is capped: once enough rounds ran, it no longer holds the journal's early
    # events, and only the entries a round added can be checked against what it journaled.
    await client.xadd(STREAM, {"e": "earlier\nround"})
    mark = await projector_bench.stream_mark(client)
    await client.xadd(STREAM, {"e": "one\ntwo"})
    await client.xadd(STREAM, {"e": "three"})
    assert await projector_bench.events_since(client, mark) == 3

    await client.xtrim(STREAM, maxlen=2, approximate=False)  # the earlier entry goes
    assert await client.xlen(STREAM) == 2
    assert await projector_bench.events_since(client, mark) == 3


async def test_a_round_whose_own_entries_were_trimmed_fails_instead_of_undercounting(
    client: Any,
) -> None:
    mark = await projector_bench.stream_mark(client)
    assert mark == (b"0-0", 0)  # no stream yet
    for line in ("one", "two", "three"):
        await client.xadd(STREAM, {"e": line})
    await client.xtrim(STREAM, maxlen=1, approximate=False)

    with pytest.raises(projector_bench.BenchmarkError, match="3 entries added this round"):
        await projector_bench.events_since(client, mark)
