"""Starts and stops an `omnistock serve` on the embedded default, for a self-contained run.

The server gets a fresh data directory (a bundled Valkey and a SQLite file inside it), a free
port on 127.0.0.1 and generated API keys, one per role, through `OMNISTOCK_API_KEYS`. It runs in
its own process group; `stop()` sends SIGTERM (in-flight requests finish, the embedded Valkey
stops last), waits, and only then kills the whole group.
"""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

START_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 30.0
ROLES = ("admin", "oms", "storefront")


@dataclass(frozen=True)
class Keys:
    admin: str
    oms: str
    storefront: str

    @classmethod
    def generate(cls) -> Keys:
        return cls(*(f"load-{role}-{secrets.token_hex(16)}" for role in ROLES))

    def env_value(self) -> str:
        """The `OMNISTOCK_API_KEYS` value that gives each key its role."""
        return f"{self.admin}:admin,{self.oms}:oms,{self.storefront}:storefront"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def omnistock_command() -> list[str]:
    script = Path(sys.executable).parent / "omnistock"
    if script.exists():
        return [str(script)]
    return [sys.executable, "-m", "omnistock.runtime.cli"]


class Server:
    """One `omnistock serve` process; use as a context manager or call start()/stop()."""

    def __init__(self, *, workers: int, log_path: Path, keys: Keys | None = None) -> None:
        self.workers = workers
        self.log_path = log_path
        self.keys = keys or Keys.generate()
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.data_dir = Path(tempfile.mkdtemp(prefix="omnistock-load-"))
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith("OMNISTOCK_")}
        env.update(OMNISTOCK_DATA_DIR=str(self.data_dir), OMNISTOCK_API_KEYS=self.keys.env_value())
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("wb") as log:
            self.proc = subprocess.Popen(
                [
                    *omnistock_command(),
                    "serve",
                    "--host",
                    "127.0.0.1",
                    "--port",
                    str(self.port),
                    "--workers",
                    str(self.workers),
                ],
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self._wait_ready(time.monotonic() + START_TIMEOUT_S)

    def _wait_ready(self, deadline: float) -> None:
        assert self.proc is not None
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(
                    f"omnistock serve exited with {self.proc.returncode}; see {self.log_path}"
                )
            try:
                if httpx.get(f"{self.url}/readyz", timeout=1.0).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"omnistock serve not ready after {START_TIMEOUT_S:.0f} s")
            time.sleep(0.1)

    def stop(self) -> int | None:
        """SIGTERM, wait, then SIGKILL the process group if it is still there. Returns the exit
        status of the serve process (None if it was never started)."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                # Still alive, so the group is still ours: end it and everything in it.
                os.killpg(self.proc.pid, signal.SIGKILL)
        code = self.proc.wait()
        shutil.rmtree(self.data_dir, ignore_errors=True)
        return code

    def __enter__(self) -> Server:
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
