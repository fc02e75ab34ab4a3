"""Seeds a realistic network and catalogue through the HTTP API, and writes the manifest.

    python -m load.seed --url http://127.0.0.1:8000 --admin-key KEY [options]

Builds the network of `load.network` (warehouses at DC sites, stores in real US cities, a share
of them with click & collect, long-tail stock over `--skus` SKUs) and sets it through the API
with the admin key: `PUT /v1/nodes/{node_id}` for every node, then the stock, one of two ways:

* `--stock-via put` (default): `PUT /v1/stock/{node}/{sku}` per position, a counted quantity,
  so seeding again resets the same stock (about 1,700 positions/s on a local 2-core server);
* `--stock-via receipts`: `POST /v1/stock/adjustments`, 200 `receipt` lines a request (about
  20,000 positions/s), for an empty service: seeding again adds the stock a second time.

Requests go out `--concurrency` at a time over keep-alive connections, retried on transport
errors and 503 (each is safe to repeat: a PUT sets, a batch of receipts carries its own
Idempotency-Key). `--oms-key` and `--storefront-key`, when given, are checked to have their
roles. The manifest (`load.manifest`) is written to `--manifest` for the locust users.

Keys may come from the environment instead: LOAD_ADMIN_KEY, LOAD_OMS_KEY, LOAD_STOREFRONT_KEY.
"""

from __future__ import annotations

import argparse
import os
import secrets
import sys
import time
from pathlib import Path

from load import manifest, network
from load.http import Api, ApiError
from load.manifest import Manifest, NodeInfo
from omnistock.runtime.targets import node_body

DEFAULT_MANIFEST = Path("load/results/manifest.json")
BATCH = 200  # lines per adjustments request: the API's maximum


def seed(
    url: str,
    admin_key: str,
    catalogue: network.Catalogue,
    *,
    stock_via: str = "put",
    concurrency: int = 16,
    role_keys: dict[str, str] | None = None,
) -> Manifest:
    """Puts the catalogue into the service at `url`; returns its manifest."""
    api = Api(url, admin_key, concurrency=concurrency)
    api.call("GET", "/v1/nodes")  # the admin key works before thousands of calls are made
    api.map(
        lambda n: api.call("PUT", f"/v1/nodes/{n.node_id}", json=node_body(n)),
        catalogue.nodes,
    )
    positions = [
        (node, sku, qty)
        for sku, at in catalogue.stock.items()
        for node, qty in at.items()
        if qty > 0
    ]
    if stock_via == "put":
        api.map(
            lambda p: api.call("PUT", f"/v1/stock/{p[0]}/{p[1]}", json={"on_hand": p[2]}),
            positions,
        )
    elif stock_via == "receipts":
        run = secrets.token_hex(8)
        batches = [positions[i : i + BATCH] for i in range(0, len(positions), BATCH)]
        api.map(
            lambda b: api.call(
                "POST",
                "/v1/stock/adjustments",
                json={
                    "adjustments": [
                        {"node_id": n, "sku": s, "delta": q, "reason": "receipt", "ref": "seed"}
                        for n, s, q in b[1]
                    ]
                },
                headers={"Idempotency-Key": f"seed-{run}-{b[0]}"},
            ),
            enumerate(batches),
        )
    else:
        raise ValueError(f"stock_via must be put or receipts, not {stock_via!r}")
    for role, key in (role_keys or {}).items():
        check_role(url, role, key, catalogue)
    stocked: dict[str, list[str]] = {n.node_id: [] for n in catalogue.nodes}
    for node, sku, _ in positions:
        stocked[node].append(sku)
    return Manifest(
        url=url,
        nodes=tuple(NodeInfo(n.node_id, n.kind, n.lat, n.lon, n.pickup) for n in catalogue.nodes),
        skus=catalogue.skus,
        hot_skus=catalogue.hot_skus,
        stocked={node: tuple(skus) for node, skus in stocked.items()},
        seeded_units=sum(qty for _, _, qty in positions),
    )


def check_role(url: str, role: str, key: str, catalogue: network.Catalogue) -> None:
    """A key meant for `role` can do what that role does (read availability; read a position)."""
    sku = catalogue.skus[0]
    if role == "storefront":
        path = f"/v1/availability/{sku}"
    else:
        path = f"/v1/stock/{catalogue.nodes[0].node_id}/{sku}"
    try:
        Api(url, key, concurrency=1).call("GET", path)
    except ApiError as exc:
        raise ApiError("GET", f"{path} with the {role} key", exc.status, exc.body) from None


def add_catalogue_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--warehouses", type=int, default=3, help="1 to 3 (default 3)")
    p.add_argument("--stores", type=int, default=150, help="default 150")
    p.add_argument("--skus", type=int, default=5_000, help="default 5,000")
    p.add_argument("--hot", type=int, default=5, help="hot SKUs of a flash sale (default 5)")
    p.add_argument(
        "--hot-units", type=int, default=100, help="stock of each hot SKU, about (default 100)"
    )
    p.add_argument(
        "--pickup-share", type=float, default=0.6, help="share of stores with click & collect"
    )
    p.add_argument("--seed", type=int, default=0, help="random seed of the network and stock")


def catalogue_of(args: argparse.Namespace) -> network.Catalogue:
    return network.build(
        warehouses=args.warehouses,
        stores=args.stores,
        skus=args.skus,
        hot=args.hot,
        hot_units=args.hot_units,
        pickup_share=args.pickup_share,
        seed=args.seed,
    )


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m load.seed", description=__doc__.split("\n")[0])
    p.add_argument("--url", required=True, help="the service, e.g. http://127.0.0.1:8000")
    p.add_argument("--admin-key", default=os.environ.get("LOAD_ADMIN_KEY"), help="$LOAD_ADMIN_KEY")
    for role in ("oms", "storefront"):
        env = f"LOAD_{role.upper()}_KEY"
        p.add_argument(f"--{role}-key", default=os.environ.get(env), help=f"checked (${env})")
    add_catalogue_arguments(p)
    p.add_argument(
        "--stock-via",
        choices=("put", "receipts"),
        default="put",
        help="put: counted quantities (default); receipts: batches, for an empty service",
    )
    p.add_argument("--concurrency", type=int, default=16, help="requests in flight (default 16)")
    p.add_argument("--manifest", type=Path, default=DEFAULT_MANIFEST)
    args = p.parse_args(argv)
    if not args.admin_key:
        p.error("--admin-key (or LOAD_ADMIN_KEY) is required")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    started = time.perf_counter()
    roles = {r: k for r, k in (("oms", args.oms_key), ("storefront", args.storefront_key)) if k}
    try:
        result = seed(
            args.url.rstrip("/"),
            args.admin_key,
            catalogue_of(args),
            stock_via=args.stock_via,
            concurrency=args.concurrency,
            role_keys=roles,
        )
    except (ApiError, OSError) as exc:
        print(f"seed failed: {exc}", file=sys.stderr)
        return 1
    manifest.write(args.manifest, result)
    print(summary(result, time.perf_counter() - started) + f"; manifest {args.manifest}")
    return 0


def summary(result: Manifest, seconds: float) -> str:
    positions = sum(len(s) for s in result.stocked.values())
    return (
        f"seeded {len(result.nodes)} nodes, {len(result.skus)} SKUs, {positions} positions, "
        f"{result.seeded_units} units in {seconds:.1f} s"
    )


if __name__ == "__main__":
    sys.exit(main())
