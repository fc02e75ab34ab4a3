"""What the crash tests run: ``omnistock serve`` on a Valkey the test owns, concurrent HTTP
clients that keep a record of every answer, a killer that SIGKILLs Valkey at seeded random
moments and restarts it from its AOF, and the read-back that judges the result.

The clients are threads with an HTTP connection each, reserving, committing and releasing
through the API. A request that gets no answer, a 503 or another 5xx has an unknown outcome: the
client repeats it with the same Idempotency-Key, through the outage and after the restart, until
the answer is definite (2xx, or a 404/409 refusal). Every definite answer is recorded with the
moment it arrived, so that after the run the ledger can be compared with what was acknowledged.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import threading
import time
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from omnistock.runtime.valkey_server import EmbeddedValkey, free_port

ADMIN_KEY = "crash-test-admin-key-0000001"
OMS_KEY = "crash-test-oms-key-000000002"
START_TIMEOUT_S = 60
STOP_TIMEOUT_S = 30
# Between two tries of a request whose outcome is unknown (Valkey down or restarting).
RETRY_PAUSE_S = 0.05
# A client stuck without a definite answer for this long means the service did not recover.
DEFINITE_WITHIN_S = 60
# The service's request deadline (``OMNISTOCK_REQUEST_TIMEOUT_MS``, default 2.5 s). The client
# library reconnects and resends on its own, so a short outage can pass with every request in
# flight still answered; an outage longer than this deadline cuts requests off for certain.
REQUEST_DEADLINE_S = 2.5
LONG_OUTAGE_S = REQUEST_DEADLINE_S + 1.0


def headers(key: str, **extra: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}", **extra}


# -- the service ------------------------------------------------------------------------------


@dataclass
class Service:
    proc: subprocess.Popen[str]
    base: str
    output: list[str]

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def log_tail(self, lines: int = 40) -> str:
        return "".join(self.output[-lines:])


def start_service(data_dir: Path, redis_url: str, durability: str, workers: int = 2) -> Service:
    """``omnistock serve`` on an external Valkey (so the test can kill and restart it), its own
    SQLite file, two workers; returns once /readyz answers 200. The projector is off: the crash
    tests judge the ledger, and the machine's two cores are better spent on requests."""
    env = {
        **os.environ,
        "OMNISTOCK_DATA_DIR": str(data_dir),
        "OMNISTOCK_REDIS_URL": redis_url,
        "OMNISTOCK_REDIS_CLUSTER": "0",
        "OMNISTOCK_DURABILITY": durability,
        "OMNISTOCK_REQUEST_TIMEOUT_MS": str(int(REQUEST_DEADLINE_S * 1000)),
        "OMNISTOCK_API_KEYS": f"{ADMIN_KEY}:admin,{OMS_KEY}:oms",
        "OMNISTOCK_PROJECTOR": "0",
    }
    env.pop("OMNISTOCK_DATABASE_URL", None)
    port = free_port()
    command = [sys.executable, "-m", "omnistock.runtime.cli", "serve", "--port", str(port)]
    proc = subprocess.Popen(
        [*command, "--workers", str(workers)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    output: list[str] = []

    def drain() -> None:
        assert proc.stdout is not None
        for text in proc.stdout:
            output.append(text)

    threading.Thread(target=drain, daemon=True).start()
    service = Service(proc, f"http://127.0.0.1:{port}", output)
    deadline = time.monotonic() + START_TIMEOUT_S
    try:
        while True:
            assert proc.poll() is None, f"serve exited with {proc.returncode}: {''.join(output)}"
            try:
                if httpx.get(f"{service.base}/readyz", timeout=2).status_code == 200:
                    return service
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, f"serve not ready: {''.join(output)}"
            time.sleep(0.1)
    except BaseException:
        service.stop()
        raise


# -- the scene --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Stock:
    """Nodes and SKUs with their starting on_hand: most plentiful, some scarce, so that some
    reservations are refused for shortage while Valkey comes and goes."""

    uid: str
    nodes: tuple[str, ...]
    skus: tuple[str, ...]
    on_hand: dict[tuple[str, str], int]

    @classmethod
    def make(cls, uid: str, nodes: int = 2, skus: int = 6, scarce: int = 2) -> Stock:
        node_ids = tuple(f"n{i}-{uid}" for i in range(nodes))
        sku_ids = tuple(f"s{i}-{uid}" for i in range(skus))
        on_hand = {
            (n, s): (60 if j < scarce else 1_000_000)
            for n in node_ids
            for j, s in enumerate(sku_ids)
        }
        return cls(uid, node_ids, sku_ids, on_hand)

    def put(self, base: str) -> None:
        with httpx.Client(base_url=base, timeout=30, headers=headers(ADMIN_KEY)) as http:
            for i, node in enumerate(self.nodes):
                body = {
                    "name": node,
                    "kind": "warehouse",
                    "lat": 50.0 + i,
                    "lon": 10.0,
                    "ships": True,
                    "pickup": False,
                }
                made = http.put(f"/v1/nodes/{node}", json=body)
                assert made.status_code in (200, 201), made.text
            for (node, sku), qty in self.on_hand.items():
                put = http.put(f"/v1/stock/{node}/{sku}", json={"on_hand": qty})
                assert put.status_code == 200, put.text


# -- the clients ------------------------------------------------------------------------------


@dataclass
class Ack:
    """A definite answer: what was asked, what came back, when."""

    kind: str  # reserve, commit, release
    key: str
    status: int
    at: float  # time.monotonic() when the answer arrived
    tries: int
    rid: str | None = None
    lines: tuple[tuple[str, str, int], ...] = ()


@dataclass
class Booking:
    """A reservation the API acknowledged, and what the client did with it since."""

    rid: str
    lines: tuple[tuple[str, str, int], ...]
    acks: list[Ack] = field(default_factory=list)  # the reserve, then a commit or release

    @property
    def expected(self) -> str:
        last = self.acks[-1]
        if last.kind == "reserve":
            return "active"
        return "committed" if last.kind == "commit" else "released"


class Client(threading.Thread):
    """One HTTP client: reserves 1 to 3 lines, and now and then commits or releases one of its
    active reservations; every request is repeated under its Idempotency-Key until its answer
    is definite."""

    def __init__(self, n: int, base: str, stock: Stock, seed: int, stop: threading.Event) -> None:
        super().__init__(name=f"crash-client-{n}", daemon=True)
        self.n = n
        self.base = base
        self.stock = stock
        self.rng = random.Random(seed)
        self.stop_event = stop
        self.bookings: list[Booking] = []
        self.refusals: list[Ack] = []
        self.acks: list[Ack] = []
        self.unknown = 0  # tries that ended without a definite answer
        self.anomalies: list[str] = []
        self.in_flight = False
        self._serial = 0
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            with httpx.Client(base_url=self.base, timeout=10, headers=headers(OMS_KEY)) as http:
                while not self.stop_event.is_set():
                    self._one(http)
        except BaseException as exc:  # reported by the test
            self.error = exc

    def _one(self, http: httpx.Client) -> None:
        active = [b for b in self.bookings if b.expected == "active"]
        roll = self.rng.random()
        if active and roll < 0.3:
            booking = self.rng.choice(active)
            kind = "commit" if roll < 0.15 else "release"
            key = f"{booking.rid}-{kind}"
            ack = self._until_definite(http, kind, f"/v1/reservations/{booking.rid}/{kind}", key)
            if ack.status == 200:
                booking.acks.append(ack)
            else:
                self.refusals.append(ack)
            return
        self._serial += 1
        key = f"c{self.n}-{self.stock.uid}-{self._serial}"
        picked = self.rng.sample(
            [(n, s) for n in self.stock.nodes for s in self.stock.skus], self.rng.randint(1, 3)
        )
        lines = tuple((n, s, self.rng.randint(1, 3)) for n, s in picked)
        body = {
            "lines": [{"node_id": n, "sku": s, "qty": q} for n, s, q in lines],
            "ttl_s": 3600,
        }
        ack = self._until_definite(http, "reserve", "/v1/reservations", key, body)
        ack.lines = lines
        if ack.status == 201:
            self.bookings.append(Booking(ack.rid or "", lines, [ack]))
        else:
            self.refusals.append(ack)

    def _until_definite(
        self, http: httpx.Client, kind: str, path: str, key: str, body: Any = None
    ) -> Ack:
        started = time.monotonic()
        tries = 0
        while True:
            tries += 1
            self.in_flight = True
            try:
                response = http.post(path, json=body, headers={"Idempotency-Key": key})
            except httpx.TransportError:
                response = None
            finally:
                self.in_flight = False
            now = time.monotonic()
            if response is not None and response.status_code < 500:
                status = response.status_code
                ack = Ack(kind, key, status, now, tries)
                if status in (200, 201):
                    ack.rid = response.json()["reservation_id"]
                elif status not in (404, 409):
                    self.anomalies.append(f"{kind} {key}: {status} {response.text[:300]}")
                self.acks.append(ack)
                return ack
            if response is not None and response.status_code != 503:
                self.anomalies.append(f"{kind} {key}: {response.status_code} {response.text[:300]}")
            self.unknown += 1
            if now - started > DEFINITE_WITHIN_S:
                raise AssertionError(f"{kind} {key}: no definite answer in {DEFINITE_WITHIN_S}s")
            time.sleep(RETRY_PAUSE_S)


# -- the crashes ------------------------------------------------------------------------------


@dataclass
class Kill:
    at: float
    restarted_at: float
    in_flight: int  # clients waiting for an answer at the moment of the kill
    acked_before: int  # acknowledgements since the previous restart


def acks_total(clients: list[Client]) -> int:
    return sum(len(c.acks) for c in clients)


def wait_for(condition: Any, what: str, timeout_s: float = DEFINITE_WITHIN_S) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.01)


def crash_repeatedly(
    server: EmbeddedValkey,
    clients: list[Client],
    kills: int,
    rng: random.Random,
    *,
    min_acks: int = 20,
) -> list[Kill]:
    """Kills Valkey ``kills`` times with SIGKILL, each at a random moment once at least
    ``min_acks`` requests were acknowledged since it last came back, and restarts it from its
    data directory after a random outage of up to 0.3 s, which the service may bridge by
    reconnecting. One kill of the run, picked at random, keeps Valkey down for ``LONG_OUTAGE_S``
    instead, past the request deadline, so every run also has requests cut off without an
    answer and repeated."""
    done: list[Kill] = []
    long_one = rng.randrange(kills)
    for index in range(kills):
        floor = acks_total(clients)
        wait_for(lambda f=floor: acks_total(clients) >= f + min_acks, "load after a restart")
        time.sleep(rng.uniform(0.0, 0.4))  # a random moment under load
        in_flight = sum(c.in_flight for c in clients)
        acked = acks_total(clients) - floor
        at = time.monotonic()
        server.kill()  # SIGKILL, as kill -9
        time.sleep(LONG_OUTAGE_S if index == long_one else rng.uniform(0.0, 0.3))
        server.start(timeout=30)  # same port and data dir: replays the AOF
        done.append(Kill(at, time.monotonic(), in_flight, acked))
        for client in clients:
            assert client.error is None, client.error
    floor = acks_total(clients)
    wait_for(lambda: acks_total(clients) >= floor + min_acks, "load after the last restart")
    return done


# -- reading the outcome back -----------------------------------------------------------------


def read_back(
    base: str, stock: Stock, bookings: list[Booking]
) -> tuple[dict[str, dict | None], dict[tuple[str, str], dict]]:
    """Every acknowledged reservation as the API shows it now (None when 404), and every
    position."""

    def reservation(rid: str) -> tuple[str, dict | None]:
        with httpx.Client(base_url=base, timeout=30, headers=headers(OMS_KEY)) as http:
            got = http.get(f"/v1/reservations/{rid}")
        assert got.status_code in (200, 404), got.text
        return rid, got.json() if got.status_code == 200 else None

    with ThreadPoolExecutor(max_workers=8) as pool:
        seen = dict(pool.map(reservation, [b.rid for b in bookings]))
    positions = {}
    with httpx.Client(base_url=base, timeout=30, headers=headers(ADMIN_KEY)) as http:
        for node, sku in stock.on_hand:
            got = http.get(f"/v1/stock/{node}/{sku}")
            assert got.status_code == 200, got.text
            positions[(node, sku)] = got.json()
    return seen, positions


def lines_of(view: dict) -> tuple[tuple[str, str, int], ...]:
    return tuple((line["node_id"], line["sku"], line["qty"]) for line in view["lines"])


def check_invariants(
    stock: Stock, seen: dict[str, dict | None], positions: dict[tuple[str, str], dict]
) -> list[str]:
    """What must hold of the ledger as read back, whatever was lost: every position's reserved
    is the sum of the active reservations' lines on it, on_hand is the starting stock less what
    committed reservations took (units are conserved), reserved + held <= on_hand and available
    is what the contract says and never negative. Returns the violations."""
    reserved: dict[tuple[str, str], int] = defaultdict(int)
    committed: dict[tuple[str, str], int] = defaultdict(int)
    for view in seen.values():
        if view is None:
            continue
        for node, sku, qty in lines_of(view):
            if view["status"] == "active":
                reserved[(node, sku)] += qty
            elif view["status"] == "committed":
                committed[(node, sku)] += qty
    problems = []
    for pair, p in positions.items():
        want_available = max(0, p["on_hand"] - p["reserved"] - p["held"] - p["safety_stock"])
        if p["reserved"] != reserved[pair]:
            problems.append(f"{pair}: reserved {p['reserved']} != active lines {reserved[pair]}")
        if p["on_hand"] + committed[pair] != stock.on_hand[pair]:
            problems.append(
                f"{pair}: on_hand {p['on_hand']} + committed {committed[pair]} != "
                f"{stock.on_hand[pair]} units at the start"
            )
        if p["reserved"] + p["held"] > p["on_hand"]:
            problems.append(f"{pair}: reserved + held > on_hand: {p}")
        if p["available"] < 0 or p["available"] != want_available:
            problems.append(f"{pair}: available {p['available']} (want {want_available}): {p}")
        if min(p["reserved"], p["held"], p["inbound"]) < 0:
            problems.append(f"{pair}: negative quantity: {p}")
    return problems


@dataclass
class Lost:
    ack: Ack
    kill: int  # the index of the first kill after the acknowledgement
    before_kill_s: float  # how long before that kill it was acknowledged


def lost_acks(bookings: list[Booking], seen: dict[str, dict | None], kills: list[Kill]) -> list:
    """Acknowledged changes the ledger no longer shows: a reservation gone (404), or a commit or
    release whose reservation reads back in an earlier state. Each is placed before the kill
    that lost it."""
    lost: list[Lost] = []
    order = ["reserve", "commit", "release"]
    for booking in bookings:
        view = seen[booking.rid]
        if view is None:
            gone = booking.acks
        elif view["status"] == booking.expected:
            gone = []
        elif view["status"] == "active":
            gone = [a for a in booking.acks if a.kind != "reserve"]
        else:
            gone = []  # an unexpected state: reported by the caller, not counted as a loss
        for ack in sorted(gone, key=lambda a: order.index(a.kind)):
            index = next((i for i, k in enumerate(kills) if k.at >= ack.at), len(kills))
            before = kills[index].at - ack.at if index < len(kills) else float("nan")
            lost.append(Lost(ack, index, before))
    return lost
