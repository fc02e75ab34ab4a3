"""The ``omnistock`` command."""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys

from omnistock.runtime.bootstrap import ledger_runtime
from omnistock.runtime.settings import Settings, SettingsError

log = logging.getLogger("omnistock")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="omnistock", description="Real-time inventory ledger and order routing."
    )
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser(
        "serve",
        help="run the service (embedded Valkey under OMNISTOCK_DATA_DIR unless "
        "OMNISTOCK_REDIS_URL is set)",
    )
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8000)
    serve.add_argument("--workers", type=int, default=1)
    return parser


async def _serve_ledger(settings: Settings) -> int:
    """Runs the ledger runtime (embedded Valkey, ledger, sweeper) until SIGINT/SIGTERM or until
    the embedded Valkey dies, which is reported and ends the process with status 1."""
    stop = asyncio.Event()
    crashed: list[int] = []
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    async with ledger_runtime(settings) as runtime:
        if runtime.embedded is not None:

            def on_exit(code: int) -> None:
                crashed.append(code)
                loop.call_soon_threadsafe(stop.set)

            runtime.embedded.monitor(on_exit)
        print(
            f"omnistock ledger up: valkey at {runtime.redis_url} "
            f"({'embedded' if runtime.embedded else 'external'}, "
            f"durability={settings.durability})",
            flush=True,
        )
        await stop.wait()
    if crashed:
        log.error("the embedded valkey-server exited unexpectedly with code %s", crashed[0])
        return 1
    print("omnistock stopped", flush=True)
    return 0


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    try:
        settings = Settings.from_env()
    except SettingsError as exc:
        print(f"omnistock: {exc}", file=sys.stderr)
        return 2
    if args.command == "serve":
        return asyncio.run(_serve_ledger(settings))
    return 2


if __name__ == "__main__":
    sys.exit(main())
