"""The composition root starts the ledger with its background sweeper."""

from __future__ import annotations

import asyncio
from pathlib import Path

from omnistock.domain.reservation import ReservationStatus
from omnistock.domain.stock import Line
from omnistock.reservations import keys
from omnistock.reservations.events import parse_entry
from omnistock.runtime.bootstrap import ledger_runtime
from omnistock.runtime.settings import Settings


async def _expire_events(client, rid: str) -> list[str]:
    entries = await client.xrange(keys.stream_key(0))
    return [e.kind for eid, f in entries for e in parse_entry(eid, f) if e.ref == rid]


async def test_the_sweeper_expires_reservations_nobody_touches(tmp_path: Path):
    settings = Settings(data_dir=tmp_path, sweep_interval_ms=20)
    async with ledger_runtime(settings) as runtime:
        ledger = runtime.ledger
        await ledger.set_stock("set", "n1", "sku", 5)
        reservation = await ledger.reserve("r", [Line("n1", "sku", 2)], ttl_ms=100)

        # No operation touches the partition: only the sweeper can write the expiry event.
        client = runtime.connection.client
        for _ in range(200):
            if "expire" in await _expire_events(client, reservation.reservation_id):
                break
            await asyncio.sleep(0.02)

        assert "expire" in await _expire_events(client, reservation.reservation_id)
        assert runtime.sweeper.expired_total >= 1
        assert (await ledger.get_reservation(reservation.reservation_id)).status is (
            ReservationStatus.EXPIRED
        )
        assert (await ledger.position("n1", "sku")).reserved == 0
