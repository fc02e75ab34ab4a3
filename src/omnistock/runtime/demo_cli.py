"""``omnistock seed --demo`` and ``serve --demo``: the demo retailer, put into a service.

In-process by default, through the ledger and catalog the API uses (with the embedded default,
the running service's Valkey when there is one), or through a running service's HTTP API with
``--url`` and an admin key. Seeding again changes nothing (see ``omnistock.demo.seed``).
"""

from __future__ import annotations

import argparse
import asyncio
import sys

from omnistock.demo.catalogue import build
from omnistock.demo.seed import SeedReport, seed
from omnistock.runtime.settings import Settings
from omnistock.runtime.targets import TargetError, add_url_arguments, local_target, open_target

DESCRIPTION = """\
Put the demo retailer into the service: a US apparel and footwear chain with a national
distribution centre (Plainfield, IN), two regional ones (Reno, Allentown) and a store in each of
about fifty large cities (click & collect everywhere, ship-from-store at most), and about three
hundred SKUs (shoe-runner-42, tee-classic-m-black, jeans-slim-32x32, ...) with long-tail stock:
deep in the distribution centres, a few units in the stores, many positions empty.

The demo is the same on every run, and seeding again changes nothing: nodes already there are
left as they are, and a position is only set where it has never been written, so stock sold
since the first seeding is not counted back. Works with the service stopped or running."""

EPILOG = """\
examples:
  omnistock seed --demo
  omnistock seed --demo --url http://127.0.0.1:8000 --key "$OMNISTOCK_KEY"
  omnistock serve --demo        # seeds an empty service on start, then serves

then, for instance:
  curl -H "Authorization: Bearer $KEY" http://127.0.0.1:8000/v1/availability/shoe-runner-42
"""


def add_parser(commands: argparse._SubParsersAction) -> None:
    p = commands.add_parser(
        "seed",
        help="put the demo network and catalogue into the service (idempotent)",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--demo",
        action="store_true",
        required=True,
        help="the demo retailer (the only seed there is; `omnistock import` loads your stock)",
    )
    p.add_argument(
        "--no-progress", action="store_true", help="no progress bar (shown on a terminal)"
    )
    add_url_arguments(p)


def run(args: argparse.Namespace, settings: Settings) -> int:
    async def go() -> SeedReport:
        async with open_target(settings, args.url, args.key) as target:
            print(f"seeding the demo into {target.description}", flush=True)
            return await seed(target, progress=False if args.no_progress else None)

    try:
        report = asyncio.run(go())
    except TargetError as exc:
        print(f"omnistock seed: {exc}", file=sys.stderr)
        return 2
    print(report.render(build()))
    return 1 if report.refusals else 0


async def seed_on_start(settings: Settings, host: str, port: int) -> SeedReport | None:
    """For ``serve --demo``: seeds the demo when the catalog has no node yet, and says so."""
    async with local_target(settings) as target:
        if await target.node_ids():
            print("omnistock: --demo: the catalog has nodes already; not seeding", flush=True)
            return None
        report = await seed(target, progress=False)
    sku = build().skus[1]
    print(report.render(build()), flush=True)
    print(
        f"demo retailer loaded; try:\n  curl -H 'Authorization: Bearer <key>' "
        f"http://{host}:{port}/v1/availability/{sku}",
        flush=True,
    )
    return report
