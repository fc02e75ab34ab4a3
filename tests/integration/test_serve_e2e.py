"""`omnistock serve --workers 2` end to end over real HTTP: first-start admin key, a node, stock,
a reservation and its commit, then a clean stop on SIGTERM, including with requests in flight."""

from __future__ import annotations

import hashlib
import json
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
import redis

from omnistock.runtime.valkey_server import free_port
from tests.integration.process_support import gone

READY = re.compile(r"omnistock listening on \S+ .*valkey at (redis://\S+)")
KEY_LINE = re.compile(r"^  (osk_\S+)$")
START_TIMEOUT_S = 30
STOP_TIMEOUT_S = 30


@dataclass
class Served:
    proc: subprocess.Popen[str]
    base: str
    key: str
    valkey_url: str
    output: list[str] = field(default_factory=list)

    def headers(self, **extra: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.key}", **extra}

    def stop(self) -> int:
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout=STOP_TIMEOUT_S)


def start_serve(data_dir: Path) -> Served:
    env = {**os.environ, "OMNISTOCK_DATA_DIR": str(data_dir)}
    for name in (
        "OMNISTOCK_REDIS_URL",
        "OMNISTOCK_REDIS_CLUSTER",
        "OMNISTOCK_DATABASE_URL",
        "OMNISTOCK_API_KEYS",
    ):
        env.pop(name, None)
    port = free_port()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "omnistock.runtime.cli",
            "serve",
            "--port",
            str(port),
            "--workers",
            "2",
        ],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    output: list[str] = []
    found: dict[str, str] = {}
    ready = threading.Event()

    def read() -> None:  # drains the pipe for the whole life of the process
        assert proc.stdout is not None
        for text in proc.stdout:
            output.append(text)
            if m := KEY_LINE.match(text.rstrip("\n")):
                found["key"] = m.group(1)
            if m := READY.search(text):
                found["valkey"] = m.group(1)
                ready.set()
        ready.set()

    threading.Thread(target=read, daemon=True).start()
    try:
        assert ready.wait(START_TIMEOUT_S), f"serve did not report ready: {output}"
        assert "valkey" in found, f"serve exited early with {proc.poll()}: {output}"
        assert "key" in found, f"no first-start admin key printed: {output}"
        served = Served(proc, f"http://127.0.0.1:{port}", found["key"], found["valkey"], output)
        wait_ready(served.base, time.monotonic() + START_TIMEOUT_S)
        return served
    except BaseException:
        shut_down(proc)
        raise


def shut_down(proc: subprocess.Popen[str]) -> None:
    """Stops a serve process that is still running, gracefully first so that it stops its
    embedded valkey-server too."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def wait_ready(base: str, deadline: float) -> None:
    while True:
        try:
            if httpx.get(f"{base}/readyz", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        assert time.monotonic() < deadline, "serve did not answer /readyz"
        time.sleep(0.1)


def valkey_pid(url: str) -> int:
    with redis.Redis.from_url(url) as client:
        return int(client.info("server")["process_id"])


def test_serve_runs_the_api_end_to_end_and_stops_cleanly(tmp_path: Path) -> None:
    served = start_serve(tmp_path)
    try:
        pid = valkey_pid(served.valkey_url)
        with httpx.Client(base_url=served.base, timeout=10) as http:
            assert http.get("/v1/nodes").status_code == 401
            node = http.put(
                "/v1/nodes/wh-1",
                json={
                    "name": "Warehouse",
                    "kind": "warehouse",
                    "lat": 52.5,
                    "lon": 13.4,
                    "ships": True,
                    "pickup": False,
                },
                headers=served.headers(),
            )
            assert node.status_code == 201, node.text
            stock = http.put("/v1/stock/wh-1/sku-1", json={"on_hand": 10}, headers=served.headers())
            assert stock.status_code == 200 and stock.json()["available"] == 10, stock.text
            made = http.post(
                "/v1/reservations",
                json={"lines": [{"node_id": "wh-1", "sku": "sku-1", "qty": 4}]},
                headers=served.headers(**{"Idempotency-Key": "e2e-1"}),
            )
            assert made.status_code == 201, made.text
            seen = http.get("/v1/availability/sku-1", headers=served.headers())
            assert seen.status_code == 200, seen.text
            assert seen.json()["available"] == 6
            rid = made.json()["reservation_id"]
            committed = http.post(f"/v1/reservations/{rid}/commit", headers=served.headers())
            assert committed.status_code == 200, committed.text
            assert committed.json()["status"] == "committed"
            after = http.get("/v1/stock/wh-1/sku-1", headers=served.headers()).json()
            assert (after["on_hand"], after["reserved"], after["available"]) == (6, 0, 6)

        stored = (tmp_path / "api-keys").read_text()
        assert served.key not in stored
        entries = [x for x in stored.splitlines() if x.strip() and not x.startswith("#")]
        assert entries == [f"{hashlib.sha256(served.key.encode()).hexdigest()}:admin"]

        assert served.stop() == 0, "".join(served.output)
        assert gone(pid), "the embedded valkey-server outlived serve"
    finally:
        shut_down(served.proc)


@dataclass
class Outcome:
    started: float
    ended: float
    status: int | None = None  # None: no response at all (refused or closed before headers)
    body: bytes = b""
    truncated: str | None = None


def hammer(base: str, headers: dict[str, str], body: bytes, stop: threading.Event) -> list:
    """Posts the query again and again until told to stop or the server is gone."""
    outcomes: list[Outcome] = []
    with httpx.Client(base_url=base, timeout=20) as http:
        while not stop.is_set():
            outcome = Outcome(time.monotonic(), 0.0)
            try:
                with http.stream(
                    "POST", "/v1/availability/query", content=body, headers=headers
                ) as response:
                    outcome.status = response.status_code
                    try:
                        outcome.body = response.read()
                    except httpx.HTTPError as exc:
                        outcome.truncated = repr(exc)
            except httpx.TransportError:
                pass
            outcome.ended = time.monotonic()
            outcomes.append(outcome)
            if outcome.status is None and outcome.truncated is None:
                time.sleep(0.01)
    return outcomes


def test_sigterm_lets_in_flight_requests_finish_with_complete_answers(tmp_path: Path) -> None:
    served = start_serve(tmp_path)
    try:
        skus = [f"sku-{i}" for i in range(500)]
        body = json.dumps({"skus": skus}).encode()
        headers = served.headers(**{"Content-Type": "application/json"})
        stop = threading.Event()
        results: list[list[Outcome]] = []

        def run() -> None:
            results.append(hammer(served.base, headers, body, stop))

        threads = [threading.Thread(target=run) for _ in range(4)]
        for thread in threads:
            thread.start()
        try:
            time.sleep(0.5)  # let the load build up; the shutdown must happen under it
            sigterm_at = time.monotonic()
            code = served.stop()
        finally:
            stop.set()
            for thread in threads:
                thread.join(timeout=30)
        assert code == 0, "".join(served.output)

        outcomes = [o for per_thread in results for o in per_thread]
        answered = [o for o in outcomes if o.status is not None]
        assert len(results) == len(threads)
        assert answered, "no request was answered"
        before = [o for o in answered if o.ended < sigterm_at]
        assert len(before) >= 4, "too little load before SIGTERM to test anything"
        # Requests sent before SIGTERM and answered after it: the shutdown waited for them.
        assert [o for o in answered if o.started < sigterm_at < o.ended], "none was in flight"
        for o in answered:
            assert o.truncated is None, o.truncated
            assert o.status == 200, (o.status, o.body[:300])
            items = json.loads(o.body)["items"]
            assert [item["sku"] for item in items] == skus
    finally:
        shut_down(served.proc)
