"""``omnistock serve --demo`` as a user runs it, and the tools beside the running service: the
demo answers availability and quotes at once; ``seed --demo`` (in-process through the service's
Valkey, and over HTTP) finds nothing to do; ``import --url`` sets stock through the API; a key
made with ``keys create`` works without a restart; and a restart does not seed again."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from omnistock.demo import catalogue
from omnistock.runtime.valkey_server import free_port
from tests.cli.support import omnistock, use_data_dir

READY = re.compile(r"omnistock listening on ")
KEY_LINE = re.compile(r"^  (osk_\S+)$")
START_TIMEOUT_S = 60
STOP_TIMEOUT_S = 30


@dataclass
class Served:
    proc: subprocess.Popen[str]
    base: str
    key: str | None
    output: list[str] = field(default_factory=list)

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                return self.proc.wait(timeout=STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        return self.proc.wait()


def serve_demo(data_dir: Path) -> Served:
    env = {k: v for k, v in os.environ.items() if not k.startswith("OMNISTOCK_")}
    env["OMNISTOCK_DATA_DIR"] = str(data_dir)
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "omnistock.runtime.cli", "serve", "--demo", "--port", str(port)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    served = Served(proc, f"http://127.0.0.1:{port}", None)
    ready = threading.Event()

    def read() -> None:  # drains the pipe for the whole life of the process
        assert proc.stdout is not None
        for text in proc.stdout:
            served.output.append(text)
            if m := KEY_LINE.match(text.rstrip("\n")):
                served.key = m.group(1)
            if READY.search(text):
                ready.set()
        ready.set()

    threading.Thread(target=read, daemon=True).start()
    try:
        assert ready.wait(START_TIMEOUT_S), f"serve did not report ready: {served.output}"
        assert proc.poll() is None, f"serve exited with {proc.poll()}: {served.output}"
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            try:
                if httpx.get(f"{served.base}/readyz", timeout=1).status_code == 200:
                    return served
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "serve did not answer /readyz"
            time.sleep(0.1)
    except BaseException:
        served.stop()
        raise


def test_serve_demo_answers_for_the_demo_and_the_tools_work_beside_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    demo = catalogue.build()
    data_dir = tmp_path / "data"
    served = serve_demo(data_dir)
    try:
        assert served.key is not None, served.output
        text = "".join(served.output)
        assert f"{len(demo.positions):,} position(s) set" in text
        admin = {"Authorization": f"Bearer {served.key}"}
        with httpx.Client(base_url=served.base, headers=admin, timeout=10) as http:
            body = http.get("/v1/availability/shoe-runner-42").json()
            expected = {
                p.node_id: max(0, p.on_hand - p.safety_stock)
                for p in demo.positions
                if p.sku == "shoe-runner-42"
            }
            assert {n["node_id"]: n["available"] for n in body["nodes"]} == expected
            quote = http.post(
                "/v1/routing/quote",
                json={
                    "lines": [{"sku": "tee-classic-m-black", "qty": 2}],
                    "destination": {"lat": 41.88, "lon": -87.63},  # Chicago
                },
            ).json()
            assert quote["unfulfilled"] == [] and quote["shipments"]

            # The tools reach the running service's Valkey; seeding again finds it all there.
            use_data_dir(monkeypatch, data_dir)
            assert omnistock("seed", "--demo", "--no-progress") == 0
            out = capsys.readouterr().out
            assert f"0 position(s) set, {len(demo.positions):,} already there" in out

            # Over HTTP too (other operation ids: the version check keeps every position).
            url = ["--url", served.base, "--key", served.key, "--no-progress"]
            assert omnistock("seed", "--demo", *url) == 0
            out = capsys.readouterr().out
            assert f"0 node(s) created, {len(demo.nodes)} already there" in out
            assert f"0 position(s) set, {len(demo.positions):,} already there" in out

            counts = tmp_path / "counts.csv"
            counts.write_text(
                "node_id,sku,on_hand\n"
                "store-chicago-il,cli-test-sku,9\n"
                "store-nowhere-xx,cli-test-sku,1\n"
            )
            assert omnistock("import", str(counts), *url) == 1
            out = capsys.readouterr().out
            assert "line 3: unknown node store-nowhere-xx" in out and "1 row(s) applied" in out
            assert omnistock("import", str(counts), *url) == 1
            assert "0 row(s) applied, 1 already applied" in capsys.readouterr().out
            assert omnistock("import", str(counts), "--url", served.base, "--key", "x" * 20) == 2
            assert "401" in capsys.readouterr().err
            position = http.get("/v1/stock/store-chicago-il/cli-test-sku").json()
            assert (position["on_hand"], position["version"]) == (9, 1)

            # A key made beside the running service works without a restart.
            assert omnistock("keys", "create", "--role", "storefront", "--quiet") == 0
            shop = {"Authorization": f"Bearer {capsys.readouterr().out.strip()}"}
            deadline = time.monotonic() + 5
            while http.get("/v1/availability/shoe-runner-42", headers=shop).status_code != 200:
                assert time.monotonic() < deadline, "the new key was not taken up"
                time.sleep(0.05)
    finally:
        assert served.stop() == 0, "".join(served.output)

    again = serve_demo(data_dir)  # a restart: the catalog has nodes, nothing is seeded
    try:
        assert "not seeding" in "".join(again.output)
    finally:
        assert again.stop() == 0, "".join(again.output)
