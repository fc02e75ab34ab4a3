"""The locust options of the load suite, each also settable by an environment variable.

Kept apart from the locustfile (and free of locust imports) so that the runner and the tests can
read the names and defaults. Think times are ranges in seconds, `MIN,MAX`, drawn uniformly.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Option:
    flag: str
    env: str
    type: type
    default: Any
    help: str
    secret: bool = False
    choices: tuple[str, ...] | None = None

    @property
    def dest(self) -> str:
        return self.flag.removeprefix("--").replace("-", "_")


OPTIONS = (
    Option("--storefront-weight", "LOAD_STOREFRONT_WEIGHT", int, 6, "weight of storefront users"),
    Option("--oms-weight", "LOAD_OMS_WEIGHT", int, 3, "weight of OMS users"),
    Option("--store-ops-weight", "LOAD_STORE_OPS_WEIGHT", int, 1, "weight of store-ops users"),
    Option("--storefront-wait", "LOAD_STOREFRONT_WAIT", str, "0.5,2", "storefront think time, s"),
    Option("--oms-wait", "LOAD_OMS_WAIT", str, "1,3", "OMS pause between orders, s"),
    Option(
        "--store-ops-wait", "LOAD_STORE_OPS_WAIT", str, "1,4", "store-ops pause between jobs, s"
    ),
    Option(
        "--step-wait",
        "LOAD_STEP_WAIT",
        str,
        "0.2,1",
        "pause between the steps of one flow (payment, picking, transit), s",
    ),
    Option("--commit-share", "LOAD_COMMIT_SHARE", float, 0.85, "orders committed (else released)"),
    Option("--order-ttl", "LOAD_ORDER_TTL_S", int, 600, "ttl_s of an order's reservation"),
    Option("--shape", "LOAD_SHAPE", str, "steady", "traffic shape", choices=("steady", "flash")),
    Option("--spike-at", "LOAD_SPIKE_AT", float, 0.4, "flash: spike start, share of run time"),
    Option("--spike-for", "LOAD_SPIKE_FOR", float, 0.25, "flash: spike length, share of run time"),
    Option(
        "--spike-users", "LOAD_SPIKE_USERS", float, 2.0, "flash: users during the spike, x steady"
    ),
    Option(
        "--spike-hot-share",
        "LOAD_SPIKE_HOT_SHARE",
        float,
        0.9,
        "flash: share of spike orders on the hot SKUs",
    ),
    Option("--manifest", "LOAD_MANIFEST", str, "load/results/manifest.json", "seed manifest"),
    Option("--changes-dir", "LOAD_CHANGES_DIR", str, "", "where to record stock changes"),
    Option("--storefront-key", "LOAD_STOREFRONT_KEY", str, "", "storefront API key", secret=True),
    Option("--oms-key", "LOAD_OMS_KEY", str, "", "oms API key", secret=True),
    Option("--request-timeout", "LOAD_REQUEST_TIMEOUT_S", float, 10.0, "per request, s"),
)


def wait_range(text: str) -> tuple[float, float]:
    """`"0.5,2"` -> (0.5, 2.0); a single number is a fixed pause."""
    parts = [float(x) for x in text.split(",")]
    if len(parts) == 1:
        parts *= 2
    low, high = parts
    if len(parts) != 2 or low < 0 or high < low:
        raise ValueError(f"a think time is MIN,MAX seconds with 0 <= MIN <= MAX, not {text!r}")
    return low, high
