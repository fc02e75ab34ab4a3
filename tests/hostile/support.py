"""Fixtures and helpers of the hostile-input tests: the app in process (real Valkey, SQLite), a
real ``omnistock serve`` subprocess with known keys whose output is kept, and the profile.

Import the fixtures into a test module (``from tests.hostile.support import served  # noqa:
F401``); this folder has no conftest.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest
from litestar.testing import AsyncTestClient

from omnistock.api.app import create_app, create_asgi
from omnistock.runtime.settings import Settings
from omnistock.runtime.valkey_server import EmbeddedValkey, free_port
from tests.api.conftest import KEYS, settings_for

FULL = os.environ.get("OMNISTOCK_FAULTS_PROFILE", "").lower() == "full"
"""The long profile: ``OMNISTOCK_FAULTS_PROFILE=full``."""

RANK = {"storefront": 1, "oms": 2, "admin": 3}
START_TIMEOUT_S = 60
STOP_TIMEOUT_S = 30
READY = re.compile(r"omnistock listening on ")


def offline_app() -> Any:
    """The Litestar app as ``create_app`` builds it, never started: its routes and its OpenAPI
    document, with no connection opened."""
    settings = Settings(
        data_dir=Path(os.environ.get("TMPDIR", "/tmp")) / "omnistock-hostile-offline",
        redis_url="redis://127.0.0.1:1",
        api_keys=",".join(f"{key}:{role}" for role, key in KEYS.items()),
    )
    return create_app(settings)


def served_document() -> dict[str, Any]:
    """The OpenAPI document the app serves at /schema/openapi.json."""
    from litestar._openapi.plugin import OpenAPIPlugin

    return offline_app().plugins.get(OpenAPIPlugin).provide_openapi_schema()


@pytest.fixture
async def client(tmp_path: Path, valkey_server: EmbeddedValkey) -> AsyncIterator[AsyncTestClient]:
    """The app as served (edge layer included) through ASGI, with every role's key."""
    app = create_asgi(settings_for(tmp_path, valkey_server.url))
    async with AsyncTestClient(app=app, timeout=30) as c:
        yield c


def bearer(role: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {KEYS[role]}"}


# -- a real `omnistock serve` ---------------------------------------------------------------------


@dataclass
class Served:
    proc: subprocess.Popen[bytes]
    port: int
    data_dir: Path
    output: list[str] = field(default_factory=list)

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def text(self) -> str:
        return "".join(self.output)

    def worker_pids(self) -> list[int]:
        """The granian workers (children of serve that are not the embedded valkey-server)."""
        children = psutil.Process(self.proc.pid).children(recursive=True)
        return [c.pid for c in children if "valkey" not in " ".join(c.cmdline())]


def start_serve(data_dir: Path, *, workers: int = 1, **env_extra: str) -> Served:
    """``omnistock serve`` on the embedded default with the test keys, its stdout and stderr
    kept (both, through one pipe) for the whole life of the process."""
    env = {**os.environ, "OMNISTOCK_DATA_DIR": str(data_dir)}
    for name in ("OMNISTOCK_REDIS_URL", "OMNISTOCK_REDIS_CLUSTER", "OMNISTOCK_DATABASE_URL"):
        env.pop(name, None)
    env["OMNISTOCK_API_KEYS"] = ",".join(f"{key}:{role}" for role, key in KEYS.items())
    env["OMNISTOCK_DURABILITY"] = "fast"
    env.update(env_extra)
    port = free_port()
    command = [sys.executable, "-m", "omnistock.runtime.cli", "serve", "--port", str(port)]
    proc = subprocess.Popen(
        [*command, "--workers", str(workers)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    served = Served(proc, port, data_dir)
    ready = threading.Event()

    def read() -> None:
        assert proc.stdout is not None
        for raw in proc.stdout:
            text = raw.decode("utf-8", "replace")
            served.output.append(text)
            if READY.search(text):
                ready.set()
        ready.set()

    threading.Thread(target=read, daemon=True).start()
    try:
        assert ready.wait(START_TIMEOUT_S), f"serve did not start: {served.text()}"
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            assert proc.poll() is None, f"serve exited with {proc.poll()}: {served.text()}"
            try:
                if httpx.get(f"{served.base}/readyz", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, f"serve never ready: {served.text()}"
            time.sleep(0.1)
        return served
    except BaseException:
        stop_serve(served)
        raise


def stop_serve(served: Served) -> int | None:
    """SIGTERM (serve stops its embedded Valkey last), SIGKILL if it will not go."""
    proc = served.proc
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    return proc.returncode


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    """One ``omnistock serve`` (one worker) for the module."""
    s = start_serve(tmp_path_factory.mktemp("serve"))
    try:
        yield s
    finally:
        stop_serve(s)


def rss_kib(pid: int) -> int:
    """VmRSS of a live process, from /proc."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError(f"no VmRSS for {pid}")


NODE_BODY = {
    "name": "Hostile test node",
    "kind": "warehouse",
    "lat": 52.52,
    "lon": 13.405,
    "ships": True,
    "pickup": False,
}
