"""The stock checks after a load, over a results directory: `python -m load.check DIR`.

The runner (`load.run`) calls `snapshot` before the load (every position of the seeded SKUs,
summed per SKU into `DIR/before.json`) and `run_checks` after it. Run it by hand after a
distributed run, once the workers' `changes-*.jsonl` files are in DIR:

    python -m load.check load/results/<run> --url URL    (keys: LOAD_OMS_KEY, LOAD_STOREFRONT_KEY)

It settles the changes whose outcome the load never saw (`load.resolve`), reads every position
again and checks that nothing is oversold and every unit is accounted for
(`load.conservation`). Exit status 0 when both hold, 1 when not, 2 when it cannot check.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from load import changes, conservation, manifest, positions, resolve
from load.http import Api, ApiError

BEFORE = "before.json"
MANIFEST = "manifest.json"
RESOLVED = "changes-resolved.jsonl"
SHOWN = 10  # oversold positions and mismatches printed at most


def apis_for(url: str, oms_key: str, storefront_key: str) -> dict[str, Api]:
    return {
        "oms": Api(url, oms_key, concurrency=16),
        "storefront": Api(url, storefront_key, concurrency=4),
    }


def snapshot(apis: dict[str, Api], skus: tuple[str, ...], out: Path) -> dict[str, int]:
    """on_hand + inbound per SKU now, also written to `out/before.json`."""
    before = conservation.totals(positions.read_all(apis["oms"], skus))
    (out / BEFORE).write_text(json.dumps(before, sort_keys=True), encoding="utf-8")
    return before


def change_files(out: Path) -> list[Path]:
    """The change logs the locust processes wrote (not the runner's own)."""
    return [p for p in sorted(out.glob("changes-*.jsonl")) if p.name != RESOLVED]


def run_checks(apis: dict[str, Api], out: Path) -> tuple[bool, list[str]]:
    """Settles, reads and checks; returns whether both checks hold and the lines to print."""
    skus = manifest.read(out / MANIFEST).skus
    before = {k: int(v) for k, v in json.loads((out / BEFORE).read_text()).items()}
    recorded = changes.read_directory(out)
    settled, unknown = resolve.settle(recorded.values(), apis, changes.ChangeLog(out, RESOLVED))
    totals = changes.net(recorded.values())
    report = conservation.check(before, positions.read_all(apis["oms"], skus), totals)
    lines = [
        f"stock changes recorded: {len(recorded)} from {len(change_files(out))} locust "
        f"processes ({totals.applied} applied, {totals.refused} refused; {settled} settled "
        f"after the run, {unknown} still unknown)",
        "net units by kind: "
        + (", ".join(f"{k} {v:+d}" for k, v in sorted(totals.by_kind.items())) or "none"),
        f"oversold check: {report.positions} positions, {len(report.oversold)} with reserved + "
        f"held > on_hand: {'ok' if not report.oversold else 'FAIL'}",
    ]
    lines += [f"  oversold: {p}" for p in report.oversold[:SHOWN]]
    lines.append(
        f"conservation check: {report.skus} SKUs, on_hand + inbound = before + net changes"
        + (f" ({report.uncertain_skus} SKUs within a range)" if report.uncertain_skus else "")
        + f", {len(report.mismatches)} mismatches: {'ok' if not report.mismatches else 'FAIL'}"
    )
    lines += [f"  mismatch: {m}" for m in report.mismatches[:SHOWN]]
    return report.ok, lines


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m load.check", description=__doc__.split("\n")[0])
    p.add_argument("results", type=Path, help="the run's results directory")
    p.add_argument("--url", required=True)
    p.add_argument("--oms-key", default=os.environ.get("LOAD_OMS_KEY"))
    p.add_argument("--storefront-key", default=os.environ.get("LOAD_STOREFRONT_KEY"))
    args = p.parse_args(argv)
    if not args.oms_key or not args.storefront_key:
        p.error("give --oms-key and --storefront-key (or LOAD_OMS_KEY, LOAD_STOREFRONT_KEY)")
    try:
        ok, lines = run_checks(
            apis_for(args.url.rstrip("/"), args.oms_key, args.storefront_key), args.results
        )
    except (ApiError, OSError, ValueError) as exc:
        print(f"check failed to run: {exc}", file=sys.stderr)
        return 2
    print("\n".join(lines))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
