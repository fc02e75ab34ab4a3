"""The Redis ledger and the in-memory model ledger, driven side by side by random programs.

A hypothesis state machine runs random sequences of every ledger operation against a real Valkey
(a single server, then a 3-shard cluster) and against ``ModelLedger``, with one fake clock in
milliseconds shared by both, so deadlines are crossed deterministically. Every call must give the
same result or the same error on both; after every step both ledgers must hold the same positions
and reservations, and the ledger invariants must hold: no negative quantity, ``reserved`` is the
sum of the active reservations' lines, and ``on_hand`` moves only through set_stock, adjust and
commit.

Each example starts on an empty keyspace (FLUSHALL on a server owned by this module, so other
modules' data is never touched). The async ledgers are driven from the synchronous machine through
one event loop per server fixture, opened once per test rather than once per example.

On the cluster a multi-partition adjust is a saga: when one partition refuses, the partitions
already applied are undone by inverse adjustments. Quantities come back but versions move, and a
position the refused adjust named for the first time is left behind empty; so on the cluster
versions are not compared and empty positions are left out of listings.

A failure shrinks to a short program in well under a minute; the explain phase, which would
replay it hundreds of times more, is off.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Callable, Coroutine, Iterator
from dataclasses import dataclass
from typing import Any, NamedTuple

import msgspec
import pytest
import redis
from hypothesis import HealthCheck, Phase, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

from omnistock.domain.errors import (
    BelowCommitted,
    DomainError,
    IllegalTransition,
    InsufficientStock,
    InvalidInput,
    NotFound,
    VersionConflict,
)
from omnistock.domain.reservation import Reservation, ReservationStatus
from omnistock.domain.stock import Adjustment, Line, Position, Reason
from omnistock.reservations import keys
from omnistock.reservations.connect import LedgerConnection, open_ledger
from omnistock.reservations.model import ModelLedger
from omnistock.runtime.valkey_cluster import EmbeddedCluster
from omnistock.runtime.valkey_server import EmbeddedValkey

NODES = ("n0", "n1", "n2")
# sku-0 and sku-62 share partition 120; sku-1 (110) and sku-5 (119) have their own. So a call can
# touch one partition with several SKUs, or several partitions (a saga on the cluster).
SKUS = ("sku-0", "sku-62", "sku-1", "sku-5")
START_MS = 1_000_000


class Clock:
    """The fake clock both ledgers read, in milliseconds; it only moves forward."""

    def __init__(self) -> None:
        self.now = START_MS

    def __call__(self) -> int:
        return self.now


@dataclass
class Target:
    """A Redis ledger under test, its own event loop and a way to empty its keyspace."""

    conn: LedgerConnection
    loop: asyncio.AbstractEventLoop
    clock: Clock
    flush: Callable[[], None]
    cluster: bool

    def run(self, coro: Coroutine[Any, Any, Any]) -> Any:
        return self.loop.run_until_complete(coro)


def _open(
    url: str, *, cluster: bool, flush: Callable[[], None]
) -> tuple[Target, Callable[[], None]]:
    loop = asyncio.new_event_loop()
    clock = Clock()
    conn = loop.run_until_complete(
        open_ledger(url, cluster=cluster, durability="fast", clock=clock)
    )
    target = Target(conn, loop, clock, flush, cluster)

    def close() -> None:
        loop.run_until_complete(conn.aclose())
        loop.close()

    return target, close


@pytest.fixture(scope="module")
def single_target(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Target]:
    with (
        EmbeddedValkey(tmp_path_factory.mktemp("property-valkey"), durability="fast") as server,
        server.client() as admin,
    ):
        target, close = _open(server.url, cluster=False, flush=admin.flushall)
        try:
            yield target
        finally:
            close()


@pytest.fixture(scope="module")
def cluster_target(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Target]:
    with EmbeddedCluster(tmp_path_factory.mktemp("property-cluster"), durability="fast") as c:
        admins: list[redis.Redis] = [node.client() for node in c.primaries]

        def flush() -> None:
            for admin in admins:
                admin.flushall()

        target, close = _open(c.url, cluster=True, flush=flush)
        try:
            yield target
        finally:
            close()
            for admin in admins:
                admin.close()


# -- outcomes and how they compare ---------------------------------------------------------------


@dataclass(frozen=True)
class Outcome:
    value: Any = None
    error: DomainError | None = None

    def __str__(self) -> str:
        return repr(self.value) if self.error is None else repr(self.error)


async def _outcome(call: Coroutine[Any, Any, Any]) -> Outcome:
    try:
        return Outcome(value=await call)
    except DomainError as exc:
        return Outcome(error=exc)


def _at_once(call: Coroutine[Any, Any, Any]) -> Any:
    """The result of a coroutine that never waits, such as every ModelLedger call; without an
    event loop, which keeps the many examples hypothesis runs while shrinking cheap."""
    try:
        call.send(None)
    except StopIteration as done:
        return done.value
    call.close()
    raise AssertionError("the model ledger waited for something")


def _model_outcome(call: Coroutine[Any, Any, Any]) -> Outcome:
    try:
        return Outcome(value=_at_once(call))
    except DomainError as exc:
        return Outcome(error=exc)


def _same_error_exactly(a: DomainError, b: DomainError) -> bool:
    return type(a) is type(b) and vars(a) == vars(b) and a.args == b.args


def _without_blanks(items: list[Any]) -> list[Any]:
    """Drops positions that hold nothing. A refused adjust on a cluster is undone by inverse
    adjustments, which leaves an empty position behind where the refused one named a new one."""
    return [
        p
        for p in items
        if not isinstance(p, Position)
        or (p.on_hand, p.reserved, p.held, p.safety_stock, p.inbound) != (0, 0, 0, 0, 0)
    ]


@dataclass(frozen=True)
class Pair:
    """One reservation, as each ledger names it."""

    redis_id: str
    model_id: str


@dataclass
class Call:
    """One call of ``method`` on each ledger: (args, kwargs) per side, which differ only in
    reservation ids and, on a cluster, in the versions passed to set_stock. A mutation keeps its
    first outcomes, so it can be repeated with the same op id and the same arguments."""

    method: str
    redis: tuple[tuple[Any, ...], dict[str, Any]]
    model: tuple[tuple[Any, ...], dict[str, Any]]
    redis_first: Outcome | None = None
    model_first: Outcome | None = None

    @classmethod
    def same(cls, method: str, *args: Any, **kwargs: Any) -> Call:
        return cls(method, (args, kwargs), (args, kwargs))

    def __str__(self) -> str:
        args, kwargs = self.redis
        shown = [repr(a) for a in args] + [f"{k}={v!r}" for k, v in kwargs.items()]
        return f"{self.method}({', '.join(shown)})"


class Tick(NamedTuple):
    """How far the clock moves before a call: not at all, by ``ms``, or to ``offset`` ms from the
    deadline of the ``pick``-th active reservation (-1: just before, 0: exactly at it)."""

    kind: str
    ms: int = 0
    pick: int = 0
    offset: int = 0


_STILL = Tick("none")
ticks = st.one_of(
    st.just(_STILL),
    st.just(_STILL),
    st.just(_STILL),
    st.builds(Tick, st.just("wait"), st.integers(1, 100), st.just(0), st.just(0)),
    st.builds(Tick, st.just("wait"), st.integers(100, 3000), st.just(0), st.just(0)),
    st.builds(
        Tick, st.just("deadline"), st.just(0), st.integers(0, 20), st.sampled_from([-1, 0, 1])
    ),
)
"""Mostly still, else a short or a long wait, or a jump to around a deadline."""
nodes = st.sampled_from(NODES)
skus = st.sampled_from(SKUS)
deltas = st.one_of(st.integers(-12, 12).filter(bool), st.sampled_from([-40, 40]))
adjustments = st.lists(
    st.builds(
        Adjustment,
        nodes,
        skus,
        deltas,
        st.sampled_from(list(Reason)),
        st.one_of(st.none(), st.just("ref-1")),
    ),
    min_size=1,
    max_size=4,
)
lines = st.lists(st.builds(Line, nodes, skus, st.integers(1, 8)), min_size=1, max_size=4)
GHOSTS = (
    "not-a-reservation",
    keys.reservation_id("ghost", keys.partition_of(SKUS[2]), single=True),
)
recent = st.one_of(st.just(0), st.integers(0, 1000))
"""Which earlier item, counting back from the latest: often the latest itself."""
_examples = itertools.count()


class LedgerComparison(RuleBasedStateMachine):
    def __init__(self, target: Target) -> None:
        super().__init__()
        target.flush()
        target.clock.now = START_MS
        self.t = target
        self.cluster = target.cluster
        self.redis = target.conn.ledger
        self.model = ModelLedger(target.clock)
        self.prefix = f"ex{next(_examples)}-"
        self.ops = itertools.count()
        self.calls: list[Call] = []
        self.pairs: list[Pair] = []
        self.ghosts: list[str] = list(GHOSTS)
        self.on_hand: dict[tuple[str, str], int] = {}

    # -- helpers --------------------------------------------------------------------------------

    def op_id(self) -> str:
        return f"{self.prefix}{next(self.ops)}"

    def advance(self, tick: Tick) -> None:
        clock = self.t.clock
        if tick.kind == "wait":
            clock.now += tick.ms
        elif tick.kind == "deadline":
            active = [r for r in self.model.reservations() if r.status is ReservationStatus.ACTIVE]
            if active:
                deadline = active[tick.pick % len(active)].expires_at_ms
                clock.now = max(clock.now, deadline + tick.offset)

    def run(self, call: Call) -> tuple[Outcome, Outcome]:
        """Makes ``call`` on both ledgers at the same clock time and checks they agree."""
        args, kwargs = call.redis
        r = self.t.run(_outcome(getattr(self.redis, call.method)(*args, **kwargs)))
        args, kwargs = call.model
        m = _model_outcome(getattr(self.model, call.method)(*args, **kwargs))
        self.check_same(r, m, str(call))
        return r, m

    def mutate(self, call: Call) -> Outcome:
        """Runs a mutation and keeps it for repeats; returns the Redis ledger's outcome."""
        call.redis_first, call.model_first = self.run(call)
        self.calls.append(call)
        return call.redis_first

    def check_same(self, r: Outcome, m: Outcome, what: str) -> None:
        where = f"{what}: redis gave {r}, model {m}"
        assert type(r.error) is type(m.error), where
        if r.error is not None:
            self.check_same_error(r.error, m.error, where)  # type: ignore[arg-type]
        else:
            self.check_same_value(r.value, m.value, where)

    def check_same_error(self, r: DomainError, m: Any, where: str) -> None:
        if isinstance(r, InsufficientStock | BelowCommitted):
            assert r.shortages == m.shortages, where
        if isinstance(r, VersionConflict) and not self.cluster:
            assert (r.expected, r.actual) == (m.expected, m.actual), where
        if isinstance(r, IllegalTransition):
            assert (r.status, r.action) == (m.status, m.action), where
        if isinstance(r, NotFound):
            assert r.kind == m.kind, where
        if isinstance(r, InvalidInput):
            assert r.field == m.field, where

    def check_same_value(self, r: Any, m: Any, where: str) -> None:
        if isinstance(r, list):
            if self.cluster and isinstance(m, list):
                r, m = _without_blanks(r), _without_blanks(m)
            assert isinstance(m, list) and len(r) == len(m), where
            for a, b in zip(r, m, strict=True):
                self.check_same_value(a, b, where)
        elif isinstance(r, Position):
            assert self.comparable(r) == self.comparable(m), where
        elif isinstance(r, Reservation):
            assert isinstance(m, Reservation), where
            known = [p for p in self.pairs if p.redis_id == r.reservation_id]
            if known:
                assert known[0].model_id == m.reservation_id, where
            assert self.comparable_reservation(r) == self.comparable_reservation(m), where
        else:
            assert r == m, where

    def comparable(self, p: Position) -> Position:
        return msgspec.structs.replace(p, version=0) if self.cluster else p

    def comparable_reservation(self, r: Reservation) -> tuple[Any, ...]:
        return (r.status, r.lines, r.expires_at_ms, r.created_at_ms, r.order_ref)

    # -- stock ----------------------------------------------------------------------------------

    @initialize(
        stock=st.lists(
            st.tuples(st.integers(-4, 20), st.sampled_from([None, 0, 1, 3])),
            min_size=len(NODES) * len(SKUS),
            max_size=len(NODES) * len(SKUS),
        )
    )
    def stock_positions(self, stock: list[tuple[int, int | None]]) -> None:
        """Counted stock (and safety stock) for every position; a negative count leaves the
        position unwritten."""
        positions = itertools.product(NODES, SKUS)
        for (node, sku), (on_hand, safety) in zip(positions, stock, strict=True):
            if on_hand >= 0:
                self.set_stock(_STILL, node, sku, on_hand, safety, None)

    @rule(
        tick=ticks,
        node=nodes,
        sku=skus,
        on_hand=st.integers(0, 30),
        safety=st.one_of(st.none(), st.integers(0, 5)),
        version=st.one_of(st.none(), st.integers(-2, 2)),
    )
    def set_stock(
        self, tick: Tick, node: str, sku: str, on_hand: int, safety: int | None, version: int | None
    ) -> None:
        """``version``: None sets unconditionally, 0 passes the current version, else a wrong one.
        Each ledger gets its own current version (they differ on a cluster), read before the clock
        moves, so an expiry can make even the right one stale."""
        versions: tuple[int | None, int | None] = (None, None)
        if version is not None:
            r, m = self.run(Call.same("position", node, sku))
            versions = (max(0, r.value.version + version), max(0, m.value.version + version))
        self.advance(tick)
        args = (self.op_id(), node, sku, on_hand)
        call = Call(
            "set_stock",
            (args, {"safety_stock": safety, "if_version": versions[0]}),
            (args, {"safety_stock": safety, "if_version": versions[1]}),
        )
        if self.mutate(call).error is None:
            self.on_hand[(node, sku)] = on_hand

    @rule(tick=ticks, adjustments=adjustments)
    def adjust(self, tick: Tick, adjustments: list[Adjustment]) -> None:
        self.advance(tick)
        if self.mutate(Call.same("adjust", self.op_id(), adjustments)).error is None:
            for a in adjustments:
                key = (a.node_id, a.sku)
                self.on_hand[key] = self.on_hand.get(key, 0) + a.delta

    @rule(tick=ticks, node=nodes, sku=skus, whole_sku=st.booleans())
    def read(self, tick: Tick, node: str, sku: str, whole_sku: bool) -> None:
        self.advance(tick)
        self.run(Call.same("sku_positions", sku) if whole_sku else Call.same("position", node, sku))

    # -- reservations ---------------------------------------------------------------------------

    @rule(
        tick=ticks,
        lines=lines,
        ttl_ms=st.one_of(st.integers(1, 5000), st.integers(3000, 5000)),
        order_ref=st.one_of(st.none(), st.just("order-1")),
    )
    def reserve(self, tick: Tick, lines: list[Line], ttl_ms: int, order_ref: str | None) -> None:
        self.advance(tick)
        op = self.op_id()
        call = Call.same("reserve", op, lines, ttl_ms=ttl_ms, order_ref=order_ref)
        if self.mutate(call).error is None:
            r, m = call.redis_first.value, call.model_first.value  # type: ignore[union-attr]
            self.pairs.append(Pair(r.reservation_id, m.reservation_id))
        elif len(partitions := {keys.partition_of(line.sku) for line in lines}) == 1:
            # The id a refused single-partition reserve would have had names no reservation.
            self.ghosts.append(keys.reservation_id(op, partitions.pop(), single=True))

    @precondition(lambda self: bool(self.pairs))
    @rule(
        tick=ticks,
        pick=recent,
        action=st.sampled_from(["commit", "release", "get_reservation"]),
    )
    def finish(self, tick: Tick, pick: int, action: str) -> None:
        """Commit, release or read a reservation (``pick`` counts back from the latest), whatever
        its state."""
        pair = self.pairs[-1 - pick % len(self.pairs)]
        self.advance(tick)
        if action == "get_reservation":
            self.run(Call(action, ((pair.redis_id,), {}), ((pair.model_id,), {})))
            return
        op = self.op_id()
        r = self.mutate(Call(action, ((op, pair.redis_id), {}), ((op, pair.model_id), {})))
        if r.error is None and action == "commit":
            for line in r.value.lines:
                key = (line.node_id, line.sku)
                self.on_hand[key] = self.on_hand.get(key, 0) - line.qty

    @rule(action=st.sampled_from(["get_reservation", "commit", "release"]), pick=recent)
    def unknown_reservation(self, action: str, pick: int) -> None:
        """An id that is not a reservation's: malformed, never used, or the one a refused reserve
        would have had (``pick`` counts back from the latest)."""
        ghost = self.ghosts[-1 - pick % len(self.ghosts)]
        if action == "get_reservation":
            r, _ = self.run(Call.same(action, ghost))
        else:
            r = self.mutate(Call.same(action, self.op_id(), ghost))
        assert isinstance(r.error, NotFound), f"{action} of {ghost}: {r}"

    # -- time -----------------------------------------------------------------------------------

    @rule(tick=ticks)
    def advance_clock(self, tick: Tick) -> None:
        self.advance(tick)

    @rule(tick=ticks)
    def expire_due(self, tick: Tick) -> None:
        """Every step ends with reads of every partition, which release what is due then; so the
        sweep releases exactly what falls due with this tick: one record per reservation on a
        single server, one per partition part on a cluster."""
        self.advance(tick)
        now = self.t.clock.now
        due = [
            r
            for r in self.model.reservations()
            if r.status is ReservationStatus.ACTIVE and r.expires_at_ms <= now
        ]
        records = (
            sum(len({keys.partition_of(line.sku) for line in r.lines}) for r in due)
            if self.cluster
            else len(due)
        )
        swept = self.t.run(self.redis.expire_due())
        assert _at_once(self.model.expire_due()) == len(due)
        assert swept == records, f"expire_due released {swept} records, {records} were due"

    # -- repeats --------------------------------------------------------------------------------

    @precondition(lambda self: bool(self.calls))
    @rule(tick=ticks, pick=st.integers(0, 1000))
    def repeat(self, tick: Tick, pick: int) -> None:
        """The same op id and arguments again (``pick`` counts back from the latest call): the
        first outcome again, on each ledger, and nothing changes."""
        call = self.calls[-1 - pick % len(self.calls)]
        self.advance(tick)
        before = self.snapshot()
        r, m = self.run(call)
        for side, again, first in (("redis", r, call.redis_first), ("model", m, call.model_first)):
            assert first is not None
            if first.error is None:
                same = again.error is None and again.value == first.value
            else:
                same = again.error is not None and _same_error_exactly(again.error, first.error)
            assert same, f"repeat of {call}: {side} first gave {first}, then {again}"
        assert self.snapshot() == before, f"repeat of {call} changed the ledger"

    # -- invariants -----------------------------------------------------------------------------

    async def redis_snapshot(self) -> list[Any]:
        """The Redis ledger's positions and then reservations, read concurrently: the script
        runner sends them as one pipeline."""
        return await asyncio.gather(
            self.redis.availability_many(SKUS),
            *(self.redis.get_reservation(p.redis_id) for p in self.pairs),
        )

    def snapshot(self) -> tuple[Any, ...]:
        """Both ledgers' positions and reservations, as read through their public interface."""
        redis_positions, *redis_records = self.t.run(self.redis_snapshot())
        model_positions = _at_once(self.model.availability_many(SKUS))
        model_records = [_at_once(self.model.get_reservation(p.model_id)) for p in self.pairs]
        return redis_positions, model_positions, redis_records, model_records

    @invariant()
    def ledgers_agree(self) -> None:
        redis_positions, model_positions, redis_records, model_records = self.snapshot()
        for sku in SKUS:
            self.check_same_value(redis_positions[sku], model_positions[sku], f"positions of {sku}")
        for pair, r, m in zip(self.pairs, redis_records, model_records, strict=True):
            self.check_same_value(r, m, f"reservation {pair}")

        for side, positions, records in (
            ("redis", redis_positions, redis_records),
            ("model", model_positions, model_records),
        ):
            reserved: dict[tuple[str, str], int] = {}
            for record in records:
                if record.status is ReservationStatus.ACTIVE:
                    for line in record.lines:
                        key = (line.node_id, line.sku)
                        reserved[key] = reserved.get(key, 0) + line.qty
            seen = set()
            for p in (p for sku in SKUS for p in positions[sku]):
                key = (p.node_id, p.sku)
                seen.add(key)
                quantities = (p.on_hand, p.reserved, p.held, p.safety_stock, p.inbound, p.version)
                assert min(quantities) >= 0, f"{side}: negative quantity in {p}"
                assert p.reserved == reserved.get(key, 0), (
                    f"{side}: {p} but active reservations hold {reserved.get(key, 0)}"
                )
                assert p.on_hand == self.on_hand.get(key, 0), (
                    f"{side}: {p} but set_stock, adjust and commit left {self.on_hand.get(key, 0)}"
                )
            missing = {k: q for k, q in reserved.items() if q and k not in seen}
            assert not missing, f"{side}: reservations hold {missing} on unlisted positions"


SINGLE = settings(
    max_examples=60,
    stateful_step_count=30,
    deadline=None,
    report_multiple_bugs=False,
    phases=[Phase.explicit, Phase.reuse, Phase.generate, Phase.target, Phase.shrink],
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
CLUSTER = settings(SINGLE, max_examples=15)


# Passing takes seconds; the higher limit lets a slow shrink on a loaded machine finish and report
# its minimal program (hypothesis stops shrinking by itself after five minutes).
@pytest.mark.timeout(600)
def test_redis_ledger_matches_the_model_on_a_single_server(single_target: Target) -> None:
    run_state_machine_as_test(lambda: LedgerComparison(single_target), settings=SINGLE)


@pytest.mark.cluster
@pytest.mark.timeout(600)
def test_redis_ledger_matches_the_model_on_a_cluster(cluster_target: Target) -> None:
    run_state_machine_as_test(lambda: LedgerComparison(cluster_target), settings=CLUSTER)
