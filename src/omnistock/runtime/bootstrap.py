"""The composition root: builds the ledger runtime from settings, and takes it down in order."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass

from omnistock.reservations.connect import LedgerConnection, open_ledger
from omnistock.reservations.redis_ledger import RedisLedger
from omnistock.reservations.sweeper import Sweeper
from omnistock.runtime.settings import Settings
from omnistock.runtime.valkey_server import EmbeddedValkey

log = logging.getLogger("omnistock.runtime")


@dataclass
class LedgerRuntime:
    settings: Settings
    connection: LedgerConnection
    sweeper: Sweeper
    embedded: EmbeddedValkey | None
    redis_url: str

    @property
    def ledger(self) -> RedisLedger:
        return self.connection.ledger


def start_embedded_valkey(settings: Settings) -> EmbeddedValkey:
    server = EmbeddedValkey(settings.data_dir / "valkey", durability=settings.durability)
    server.start()
    return server


@contextlib.asynccontextmanager
async def ledger_runtime(
    settings: Settings, *, embedded: EmbeddedValkey | None = None
) -> AsyncIterator[LedgerRuntime]:
    """Starts the embedded Valkey when no Redis URL is set, opens the ledger and its sweeper;
    on exit stops them in reverse order, the embedded Valkey last."""
    owned = None
    if settings.redis_url is None and embedded is None:
        owned = embedded = start_embedded_valkey(settings)
    url = settings.redis_url or embedded.url  # type: ignore[union-attr]
    try:
        connection = await open_ledger(
            url,
            cluster=settings.redis_cluster,
            durability=settings.durability,
            timeout_s=settings.redis_timeout_s,
        )
        try:
            sweeper = Sweeper(connection.ledger, interval_s=settings.sweep_interval_ms / 1000)
            sweeper.start()
            try:
                yield LedgerRuntime(settings, connection, sweeper, embedded, url)
            finally:
                await sweeper.stop()
        finally:
            await connection.aclose()
    finally:
        if owned is not None:
            owned.stop()
