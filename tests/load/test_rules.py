"""Small rules of the load suite: outcome classes, options, durations, the flash-sale schedule,
the limited stock of hot SKUs and the users' picks. None of this imports locust."""

from __future__ import annotations

import argparse
import json
import random
import subprocess
import sys
from pathlib import Path

import pytest
from load.manifest import Manifest, NodeInfo
from load.outcomes import Outcome, classify, problem_type
from load.picks import Catalogue, Picker
from load.run import parse_duration

from load import network, phase, settings

ROOT = Path(__file__).resolve().parents[2]


def problem(kind: str) -> bytes:
    return json.dumps({"type": f"urn:omnistock:problem:{kind}", "status": 409}).encode()


@pytest.mark.parametrize(
    ("status", "body", "ok", "expected"),
    [
        (201, b"{}", frozenset({201}), Outcome.OK),
        (200, b"{}", frozenset({201}), Outcome.FAIL),
        (204, b"", frozenset(), Outcome.OK),
        (409, problem("insufficient-stock"), frozenset(), Outcome.SHORT),
        (409, problem("below-committed"), frozenset(), Outcome.SHORT),
        (409, problem("illegal-transition"), frozenset(), Outcome.CONFLICT),
        (409, problem("request-in-progress"), frozenset(), Outcome.RETRY),
        (409, problem("version-conflict"), frozenset(), Outcome.FAIL),
        (409, b"not json", frozenset(), Outcome.FAIL),
        (0, b"", frozenset(), Outcome.RETRY),
        (500, b"", frozenset(), Outcome.RETRY),
        (503, problem("dependency-unavailable"), frozenset(), Outcome.RETRY),
        (422, problem("invalid-input"), frozenset(), Outcome.FAIL),
        (404, b"", frozenset(), Outcome.FAIL),
    ],
)
def test_classify(status: int, body: bytes, ok: frozenset[int], expected: Outcome) -> None:
    assert classify(status, body, ok) is expected


def test_problem_type() -> None:
    assert problem_type(problem("insufficient-stock")) == "insufficient-stock"
    assert problem_type(b"[1]") == "" and problem_type(None) == ""


def test_durations() -> None:
    assert [parse_duration(x) for x in ("60s", "2m", "1h30m", "45", "1m5s")] == [
        60,
        120,
        5400,
        45,
        65,
    ]
    with pytest.raises(argparse.ArgumentTypeError):
        parse_duration("soon")


def test_think_times_and_options() -> None:
    assert settings.wait_range("0.5,2") == (0.5, 2.0)
    assert settings.wait_range("1") == (1.0, 1.0)
    with pytest.raises(ValueError):
        settings.wait_range("2,1")
    envs = [o.env for o in settings.OPTIONS]
    assert len(envs) == len(set(envs)) and all(e.startswith("LOAD_") for e in envs)
    defaults = {o.dest: o.default for o in settings.OPTIONS}
    assert defaults["shape"] == "steady"
    assert (defaults["storefront_weight"], defaults["oms_weight"]) == (6, 3)
    locustfile = (ROOT / "load" / "locustfile.py").read_text()
    for o in settings.OPTIONS:  # every option is documented in the locustfile's docstring
        assert o.flag in locustfile and o.env in locustfile


def test_flash_schedule() -> None:
    at = [phase.flash_phase(t, 60, 0.4, 0.25) for t in (0, 23.9, 24, 38.9, 39, 59.9, 60)]
    assert at == ["steady", "steady", "spike", "spike", "steady", "steady", None]


def test_hot_skus_are_a_limited_drop() -> None:
    assert network.limited({"a": 300, "b": 100, "c": 1}, 100) == {"a": 75, "b": 25, "c": 1}
    assert network.limited({"a": 3}, 100) == {"a": 3}
    c = network.build(warehouses=2, stores=10, skus=60, hot=3, hot_units=40, seed=1)
    assert c.hot_skus == c.skus[:3] == ("sku-00001", "sku-00002", "sku-00003")
    for sku in c.hot_skus:
        assert sum(c.stock[sku].values()) <= 40 + len(c.stock[sku])
    assert [n.kind for n in c.nodes].count("warehouse") == 2
    assert len(c.nodes) == 12 and len(c.skus) == 60


def small_manifest() -> Manifest:
    nodes = (
        NodeInfo("wh-01", "warehouse", 39.77, -86.16, False),
        NodeInfo("st-0001", "store", 41.88, -87.63, True),
        NodeInfo("st-0002", "store", 40.71, -74.01, False),
    )
    skus = tuple(f"sku-{i:05d}" for i in range(1, 41))
    stocked = {"wh-01": skus, "st-0001": skus[:3], "st-0002": ()}
    return Manifest("http://x", nodes, skus, skus[:2], stocked, 100)


def test_picks_come_from_the_manifest() -> None:
    pick = Picker(Catalogue(small_manifest()), random.Random(7))
    skus = [pick.sku() for _ in range(2000)]
    assert skus.count("sku-00001") > skus.count("sku-00040")  # Zipf demand
    assert len(pick.page(24)) == 24 and len(set(pick.skus(5))) == 5
    assert pick.store_sku(pickup=True)[0] == "st-0001"  # the only stocked pickup store
    assert {pick.store_sku()[0] for _ in range(50)} == {"st-0001"}  # st-0002 stocks nothing
    wh, store, _ = pick.replenishment()
    assert wh == "wh-01" and store in ("st-0001", "st-0002")
    p = pick.customer()
    assert 35 < p.lat < 45 and -90 < p.lon < -70


def test_runner_modules_do_not_import_locust() -> None:
    # gevent's monkey-patching would break the asyncio tests of this process: locust is only
    # ever run as a subprocess, and the modules the runner and these tests use stay free of it.
    code = (
        "import sys, load.run, load.seed, load.calls, load.picks, load.resolve;"
        "bad = sorted(m for m in ('locust', 'gevent') if m in sys.modules);"
        "print(*bad); sys.exit(1 if bad else 0)"
    )
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr
