"""A projector as a process of its own, for the kill/restart test:

    python -m tests.integration.projector_worker REDIS_URL DATABASE_URL CONSUMER

Unlike ``omnistock projector`` (whose consumer name holds its pid), it takes its consumer name as
an argument, so a restarted worker is the same consumer and gets back what it left pending. It
prints ``ready`` once it runs, and its totals on SIGTERM.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sys

import redis.asyncio as aioredis

from omnistock.store.database import open_engine
from omnistock.store.projector import Projector


async def main(redis_url: str, database_url: str, consumer: str) -> int:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    client = aioredis.from_url(redis_url, socket_timeout=10)
    engine = open_engine(database_url, timeout_s=10)
    try:
        projector = Projector(client, engine, cluster=False, consumer=consumer, block_ms=200)
        task = asyncio.create_task(projector.run())
        print("ready", flush=True)
        await stop.wait()
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        print(f"projected {projector.projected} delivered {projector.delivered}", flush=True)
    finally:
        await client.aclose()
        await engine.dispose()
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main(*sys.argv[1:4])))
