"""The Redis ledger and the in-memory model ledger, driven side by side by random programs.

A hypothesis state machine runs random sequences of every ledger operation against a real Valkey
(a single server, then a 3-shard cluster) and against ``ModelLedger``, with one fake clock in
milliseconds shared by both, so deadlines are crossed deterministically. Every call must give the
same result or the same error on both; after every step both ledgers must hold the same positions,
reservations, transfers and holds, and the ledger invariants must hold: no negative quantity;
``reserved`` is the sum of the active reservations' lines and the requested transfers' lines at
their source; ``held`` is what the placed and ready holds hold; ``inbound`` is what the transfers
in transit carry to their destination; ``on_hand`` moves only through set_stock, adjust, commit,
ship, receive and collect; and per SKU, on_hand + inbound summed over the nodes moves only
through set_stock, adjust, commit, collect and the losses of receipts. Before those reads, the
same reads made dry (on the ledger script's read-only twin, which the ledger falls back on at
maxmemory) must give exactly what the reads after them give, versions included, although the dry
reads release nothing that is due and the others release it.

Each example starts on an empty keyspace (FLUSHALL on a server owned by this module, so other
modules' data is never touched). The async ledgers are driven from the synchronous machine through
one event loop per server fixture, opened once per test rather than once per example.

On the cluster a multi-partition adjust is a saga: when one partition refuses, the partitions
already applied are undone by inverse adjustments. Quantities come back but versions move, and a
position the refused adjust named for the first time is left behind empty; so on the cluster
versions are not compared and empty positions are left out of listings. (A transfer or hold over
several partitions is made part by part there, and a refused one undone in the parts made before:
quantities come back, versions move too.)

Transfers and holds are driven to every state: the rules that act on them mostly pick one that
the action suits, and run up to three actions in a row, so a program of a few dozen steps sees
transfers requested, shipped and received (in full, in part, or refused) and holds placed,
arrived, made ready, collected, cancelled and expired; pickup windows are mostly long, and a rule
of its own jumps to around a hold's deadline.

A failure shrinks to a short program in well under a minute; the explain phase, which would
replay it hundreds of times more, is off.
"""

from __future__ import annotations

import asyncio
import itertools
import os
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
from omnistock.domain.movement import Hold, HoldStatus, SkuQty, Transfer, TransferStatus
from omnistock.domain.reservation import Reservation, ReservationStatus
from omnistock.domain.stock import Adjustment, Line, Position, Reason
from omnistock.reservations import keys
from omnistock.reservations.connect import LedgerConnection, open_ledger
from omnistock.reservations.model import ModelLedger
from omnistock.reservations.redis_ledger import RedisLedger
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
    """One reservation, transfer or hold, as each ledger names it."""

    redis_id: str
    model_id: str


@dataclass
class Call:
    """One call of ``method`` on each ledger: (args, kwargs) per side, which differ only in
    reservation, transfer and hold ids and, on a cluster, in the versions passed to set_stock. A
    mutation keeps its first outcomes, so it can be repeated with the same op id and arguments."""

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
    deadline of the ``pick``-th active reservation (-1: just before, 0: exactly at it). Holds
    have a rule of their own for that (``to_hold_deadline``): their deadlines are far off."""

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
sku_lines = st.lists(st.builds(SkuQty, skus, st.integers(1, 4)), min_size=1, max_size=3)
other_node = st.sampled_from([1, 1, 1, 2, 2, 2, 0])
"""Another node, as an offset in NODES from the first; now and then (0) the same node."""
windows = st.one_of(
    st.integers(1, 3000), st.integers(60_000, 600_000), st.integers(60_000, 600_000)
)
"""Pickup windows: mostly longer than the waits of a whole program (only ``to_hold_deadline``
reaches them), else likely to run out."""
receipts = st.one_of(
    st.none(),
    st.lists(st.tuples(st.integers(0, 4), st.sampled_from([0, 0, 1, 2, 5, -1])), max_size=3),
)
"""What arrived: None (everything shipped), or per entry a line of the transfer (4: a SKU not on
it) and how many short of what was ordered (-1: one more than shipped)."""
DOC_GHOSTS = (
    "not-a-document",
    keys.doc_id("t", "ghost", keys.partition_of(SKUS[2]), single=True),
    keys.doc_id("h", "ghost", keys.partition_of(SKUS[2]), single=True),
)
ghosts = st.one_of(st.none(), st.none(), st.none(), st.none(), st.sampled_from(DOC_GHOSTS))
"""Now and then an id that is no transfer's or hold's: malformed, never used, or of the other
kind, instead of the one picked."""
LIVE_HOLD = (HoldStatus.PLACED, HoldStatus.READY)
recent = st.one_of(st.just(0), st.integers(0, 1000))
"""Which earlier item, counting back from the latest: often the latest itself."""
fitting = st.sampled_from([True, True, True, False])
"""Pick among the transfers or holds the action suits (if any), or among all of them."""
TRANSFER_ACTIONS = ("next", "next", "ship_transfer", "receive", "cancel_transfer", "get")
HOLD_ACTIONS = ("next", "next", "ready_hold", "collect_hold", "cancel_hold", "get")
"""``next`` takes a transfer or hold one step along its way (see ``LedgerComparison.next_of``)."""


class Act(NamedTuple):
    """One action on a transfer or hold: which (``pick`` counting back from the latest, among
    those the action suits when ``fit``; or ``ghost``), and for a receipt what arrived."""

    action: str
    pick: int
    fit: bool
    receipt: list[tuple[int, int]] | None
    ghost: str | None


def acts(actions: tuple[str, ...]) -> st.SearchStrategy[list[Act]]:
    """One to three actions: a rule runs them in a row, so a program of a few dozen steps sees
    transfers and holds through their whole life."""
    act = st.builds(Act, st.sampled_from(actions), recent, fitting, receipts, ghosts)
    return st.lists(act, min_size=1, max_size=3)


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
        self.transfers: list[Pair] = []
        self.holds: list[Pair] = []
        self.ghosts: list[str] = list(GHOSTS)
        self.on_hand: dict[tuple[str, str], int] = {}
        # Per SKU, on_hand + inbound over every node, as the operations that may change it left it.
        self.total: dict[str, int] = dict.fromkeys(SKUS, 0)

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
            self.check_pair(self.pairs, r.reservation_id, m.reservation_id, where)
            assert self.comparable_reservation(r) == self.comparable_reservation(m), where
        elif isinstance(r, Transfer):
            assert isinstance(m, Transfer), where
            self.check_pair(self.transfers, r.transfer_id, m.transfer_id, where)
            self.check_pair(self.holds, r.hold_id, m.hold_id, where)
            same = {"transfer_id": "", "hold_id": None}
            assert msgspec.structs.replace(r, **same) == msgspec.structs.replace(m, **same), where
        elif isinstance(r, Hold):
            assert isinstance(m, Hold), where
            self.check_pair(self.holds, r.hold_id, m.hold_id, where)
            self.check_pair(self.transfers, r.transfer_id, m.transfer_id, where)
            same = {"hold_id": "", "transfer_id": None}
            assert msgspec.structs.replace(r, **same) == msgspec.structs.replace(m, **same), where
        else:
            assert r == m, where

    @staticmethod
    def check_pair(
        pairs: list[Pair], redis_id: str | None, model_id: str | None, where: str
    ) -> None:
        """Both ids name the same thing: both None, or paired when one of them is known."""
        assert (redis_id is None) == (model_id is None), where
        known = [p for p in pairs if p.redis_id == redis_id]
        if known:
            assert known[0].model_id == model_id, where

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
            self.count_on_hand(node, sku, on_hand - self.on_hand.get((node, sku), 0), total=True)

    def count_on_hand(self, node: str, sku: str, delta: int, *, total: bool) -> None:
        """An on_hand change some operation made; ``total``: one that changes the SKU's total."""
        self.on_hand[(node, sku)] = self.on_hand.get((node, sku), 0) + delta
        if total:
            self.total[sku] += delta

    @rule(tick=ticks, adjustments=adjustments)
    def adjust(self, tick: Tick, adjustments: list[Adjustment]) -> None:
        self.advance(tick)
        if self.mutate(Call.same("adjust", self.op_id(), adjustments)).error is None:
            for a in adjustments:
                self.count_on_hand(a.node_id, a.sku, a.delta, total=True)

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
                self.count_on_hand(line.node_id, line.sku, -line.qty, total=True)

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

    # -- transfers ------------------------------------------------------------------------------

    def doc_call(self, method: str, pair: Pair, *args: Any, op: bool = True) -> Call:
        """A call of ``method`` on one transfer or hold, as each ledger names it."""
        head: tuple[Any, ...] = (self.op_id(),) if op else ()
        return Call(
            method, ((*head, pair.redis_id, *args), {}), ((*head, pair.model_id, *args), {})
        )

    def model_docs(self) -> dict[str, Transfer | Hold]:
        """The model's transfers and holds by id, as they stand."""
        docs: dict[str, Transfer | Hold] = {t.transfer_id: t for t in self.model.transfers()}
        docs.update({h.hold_id: h for h in self.model.holds()})
        return docs

    def choose(self, pairs: list[Pair], act: Act, suits: Callable[[Any], bool]) -> Pair:
        """The ``act.pick``-th (counting back from the latest) of the pairs whose document
        ``suits`` the action when ``act.fit`` and there are any, else of all the pairs."""
        if act.ghost is not None:
            return Pair(act.ghost, act.ghost)
        if act.fit:
            docs = self.model_docs()
            pairs = [p for p in pairs if suits(docs[p.model_id])] or pairs
        return pairs[-1 - act.pick % len(pairs)]

    @rule(
        tick=ticks,
        source=nodes,
        dest_offset=other_node,
        lines=sku_lines,
        reason=st.sampled_from([None, "rebalance"]),
    )
    def request_transfer(
        self, tick: Tick, source: str, dest_offset: int, lines: list[SkuQty], reason: str | None
    ) -> None:
        """Often refused: the source short of a line, or the source the destination itself."""
        dest = NODES[(NODES.index(source) + dest_offset) % len(NODES)]
        self.advance(tick)
        call = Call.same("request_transfer", self.op_id(), source, dest, lines, reason=reason)
        r = self.mutate(call)
        if r.error is None:
            m = call.model_first.value  # type: ignore[union-attr]
            self.transfers.append(Pair(r.value.transfer_id, m.transfer_id))

    @precondition(lambda self: bool(self.transfers))
    @rule(tick=ticks, steps=acts(TRANSFER_ACTIONS))
    def transfer_steps(self, tick: Tick, steps: list[Act]) -> None:
        """Ship, receive, cancel or read transfers, mostly ones the action suits, else whatever
        their state; one made for a hold cannot be cancelled directly. ``next`` ships a requested
        transfer and receives one in transit."""
        self.advance(tick)
        for act in steps:
            action = act.action

            def suits(t: Transfer, action: str = action) -> bool:
                if action in ("receive", "next"):
                    return t.status is TransferStatus.IN_TRANSIT or (
                        action == "next" and t.status is TransferStatus.REQUESTED
                    )
                if action == "cancel_transfer":
                    return t.status is TransferStatus.REQUESTED and t.hold_id is None
                return t.status is TransferStatus.REQUESTED or action == "get"

            pair = self.choose(self.transfers, act, suits)
            if action == "next":
                status = None if act.ghost else self.model_docs()[pair.model_id].status
                action = "receive" if status is TransferStatus.IN_TRANSIT else "ship_transfer"
            self.transfer_action(action, pair, act)

    def transfer_action(self, action: str, pair: Pair, act: Act) -> None:
        if action == "get":
            r, _ = self.run(self.doc_call("get_transfer", pair, op=False))
        elif action == "receive":
            arrived = None if act.ghost else self.receipt(pair, act.receipt)
            r = self.mutate(self.doc_call("receive_transfer", pair, arrived))
        else:
            r = self.mutate(self.doc_call(action, pair))
        if act.ghost is not None:
            assert isinstance(r.error, NotFound), f"{action} of {act.ghost}: {r}"
        elif r.error is None and action == "ship_transfer":
            for line in r.value.lines:
                self.count_on_hand(r.value.from_node, line.sku, -line.qty, total=False)
        elif r.error is None and action == "receive":
            for line in r.value.lines:
                self.count_on_hand(r.value.to_node, line.sku, line.received, total=False)
                self.total[line.sku] -= line.shipped - line.received  # the loss

    def receipt(self, pair: Pair, receipt: list[tuple[int, int]] | None) -> list[SkuQty] | None:
        """What arrived of a transfer, from ``receipts``: everything (None), or per entry a line
        and how many short of it (-1: one more than shipped), or a SKU not on the transfer."""
        if receipt is None:
            return None
        lines = self.model_docs()[pair.model_id].lines
        others = [s for s in SKUS if s not in {line.sku for line in lines}]
        arrived: list[SkuQty] = []
        for index, shortfall in receipt:
            if index == 4 and others:
                entry = SkuQty(others[0], 1)
            else:
                line = lines[index % len(lines)]
                entry = SkuQty(line.sku, max(0, line.qty - shortfall))
            if entry.sku not in {a.sku for a in arrived}:
                arrived.append(entry)
        return arrived

    # -- holds ----------------------------------------------------------------------------------

    @rule(
        tick=ticks,
        store=nodes,
        lines=sku_lines,
        source_offset=st.one_of(st.none(), other_node),
        window_ms=windows,
        ready_in_ms=st.sampled_from([0, 1, 1500]),
    )
    def place_hold(
        self,
        tick: Tick,
        store: str,
        lines: list[SkuQty],
        source_offset: int | None,
        window_ms: int,
        ready_in_ms: int,
    ) -> None:
        """A hold of the store's own stock, or with a source: a transfer to the store first."""
        source = None
        if source_offset is not None:
            source = NODES[(NODES.index(store) + source_offset) % len(NODES)]
        self.advance(tick)
        call = Call.same(
            "place_hold",
            self.op_id(),
            store,
            lines,
            customer_ref="customer-1",
            pickup_window_ms=window_ms,
            ready_in_ms=ready_in_ms,
            source_node_id=source,
        )
        r = self.mutate(call)
        if r.error is None:
            m = call.model_first.value  # type: ignore[union-attr]
            self.holds.append(Pair(r.value.hold_id, m.hold_id))
            if r.value.transfer_id is not None:
                self.transfers.append(Pair(r.value.transfer_id, m.transfer_id))

    @precondition(lambda self: bool(self.holds))
    @rule(tick=ticks, steps=acts(HOLD_ACTIONS))
    def hold_steps(self, tick: Tick, steps: list[Act]) -> None:
        """Ready, collect, cancel or read holds, mostly ones the action suits, else whatever
        their state. ``next`` takes a placed or ready hold one step along its way (see
        ``next_of``)."""
        self.advance(tick)
        for act in steps:
            suits = {
                "ready_hold": lambda h: h.status is HoldStatus.PLACED and h.ready_by_ms is not None,
                "collect_hold": lambda h: h.status is HoldStatus.READY,
                "get": lambda h: True,
            }.get(act.action, lambda h: h.status in LIVE_HOLD)
            pair = self.choose(self.holds, act, suits)
            action = act.action
            if action == "next":
                action, pair = ("ready_hold", pair) if act.ghost else self.next_of(pair)
            if action in ("ship_transfer", "receive"):
                self.transfer_action(action, pair, act)
                continue
            if action == "get":
                r, _ = self.run(self.doc_call("get_hold", pair, op=False))
            else:
                r = self.mutate(self.doc_call(action, pair))
            if act.ghost is not None:
                assert isinstance(r.error, NotFound), f"{action} of {act.ghost}: {r}"
            elif r.error is None and action == "collect_hold":
                for line in r.value.lines:  # only a hold that got everything can be collected
                    self.count_on_hand(r.value.store_id, line.sku, -line.qty, total=True)

    def next_of(self, pair: Pair) -> tuple[str, Pair]:
        """The step that takes a hold along: ship or receive its transfer while it waits for
        it, make it ready once its goods are there, collect it when ready, cancel it if short."""
        hold = self.model_docs()[pair.model_id]
        assert isinstance(hold, Hold)
        if hold.status is HoldStatus.READY:
            return "collect_hold", pair
        if hold.status is HoldStatus.PLACED and hold.ready_by_ms is None:
            transfer = next(t for t in self.transfers if t.model_id == hold.transfer_id)
            status = self.model_docs()[transfer.model_id].status
            return ("ship_transfer" if status is TransferStatus.REQUESTED else "receive"), transfer
        if hold.status is HoldStatus.PLACED and hold.short:
            return "cancel_hold", pair
        return "ready_hold", pair

    @precondition(
        lambda self: any(h.status in LIVE_HOLD for h in self.model.holds()),
    )
    @rule(pick=st.one_of(st.just(0), st.integers(0, 5)), offset=st.sampled_from([-1, 0, 1]))
    def to_hold_deadline(self, pick: int, offset: int) -> None:
        """Time jumps to around the deadline of a placed or ready hold (``pick``-th nearest; -1:
        just before, 0: exactly at it), crossing every deadline before it."""
        deadlines = sorted(h.expires_at_ms for h in self.model.holds() if h.status in LIVE_HOLD)
        clock = self.t.clock
        clock.now = max(clock.now, deadlines[pick % len(deadlines)] + offset)

    # -- time -----------------------------------------------------------------------------------

    @rule(tick=ticks)
    def advance_clock(self, tick: Tick) -> None:
        self.advance(tick)

    @rule(tick=ticks)
    def expire_due(self, tick: Tick) -> None:
        """Every step ends with reads of every partition, which release what is due then; so the
        sweep releases exactly what falls due with this tick: one record per reservation or hold
        on a single server, one per partition part on a cluster."""
        self.advance(tick)
        now = self.t.clock.now
        due: list[list[str]] = [
            [line.sku for line in r.lines]
            for r in self.model.reservations()
            if r.status is ReservationStatus.ACTIVE and r.expires_at_ms <= now
        ] + [
            [line.sku for line in h.lines]
            for h in self.model.holds()
            if h.status in LIVE_HOLD and h.expires_at_ms <= now
        ]
        records = (
            sum(len({keys.partition_of(sku) for sku in skus}) for skus in due)
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
            elif isinstance(first.error, InvalidInput | NotFound):
                # Not remembered, so checked again: a receipt refused as more than shipped is
                # refused as received once the transfer is. Both ledgers agree (``run``).
                same = again.error is not None
            else:
                same = again.error is not None and _same_error_exactly(again.error, first.error)
            assert same, f"repeat of {call}: {side} first gave {first}, then {again}"
        assert self.snapshot() == before, f"repeat of {call} changed the ledger"

    # -- invariants -----------------------------------------------------------------------------

    async def redis_snapshot(self, ledger: RedisLedger | None = None) -> list[Any]:
        """The Redis ledger's positions, reservations, transfers and holds, read concurrently:
        the script runner sends them as one pipeline."""
        ledger = ledger or self.redis
        return await asyncio.gather(
            ledger.availability_many(SKUS),
            asyncio.gather(*(ledger.get_reservation(p.redis_id) for p in self.pairs)),
            asyncio.gather(*(ledger.get_transfer(p.redis_id) for p in self.transfers)),
            asyncio.gather(*(ledger.get_hold(p.redis_id) for p in self.holds)),
        )

    def model_snapshot(self) -> list[Any]:
        model = self.model
        return [
            _at_once(model.availability_many(SKUS)),
            [_at_once(model.get_reservation(p.model_id)) for p in self.pairs],
            [_at_once(model.get_transfer(p.model_id)) for p in self.transfers],
            [_at_once(model.get_hold(p.model_id)) for p in self.holds],
        ]

    def snapshot(self) -> tuple[list[Any], list[Any]]:
        """Both ledgers' positions, reservations, transfers and holds, as read through their
        public interface."""
        return self.t.run(self.redis_snapshot()), self.model_snapshot()

    @invariant()
    def ledgers_agree(self) -> None:
        dry = self.t.run(self.redis_snapshot(self.redis.with_dry_reads()))
        redis_side, model_side = self.snapshot()
        assert dry == redis_side, f"dry reads gave {dry}, the reads after them {redis_side}"
        redis_positions, model_positions = redis_side[0], model_side[0]
        for sku in SKUS:
            self.check_same_value(redis_positions[sku], model_positions[sku], f"positions of {sku}")
        for kind, pairs, r_docs, m_docs in zip(
            ("reservation", "transfer", "hold"),
            (self.pairs, self.transfers, self.holds),
            redis_side[1:],
            model_side[1:],
            strict=True,
        ):
            for pair, r, m in zip(pairs, r_docs, m_docs, strict=True):
                self.check_same_value(r, m, f"{kind} {pair}")
        for side, (positions, records, transfers, holds) in (
            ("redis", redis_side),
            ("model", model_side),
        ):
            self.check_side(side, positions, records, transfers, holds)

    def check_side(
        self,
        side: str,
        positions: dict[str, list[Position]],
        records: list[Reservation],
        transfers: list[Transfer],
        holds: list[Hold],
    ) -> None:
        """What each position's reserved, held and inbound must be, given every reservation,
        transfer and hold; what its on_hand must be, and each SKU's total, given the operations
        that succeeded."""
        expected: dict[str, dict[tuple[str, str], int]] = {"rs": {}, "hd": {}, "ib": {}}

        def add(field: str, node: str, sku: str, qty: int) -> None:
            expected[field][(node, sku)] = expected[field].get((node, sku), 0) + qty

        for record in records:
            if record.status is ReservationStatus.ACTIVE:
                for line in record.lines:
                    add("rs", line.node_id, line.sku, line.qty)
        for t in transfers:
            for tl in t.lines:
                if t.status is TransferStatus.REQUESTED:
                    add("rs", t.from_node, tl.sku, tl.qty)
                elif t.status is TransferStatus.IN_TRANSIT:
                    add("ib", t.to_node, tl.sku, tl.shipped)
        for h in holds:
            for hl in h.lines:
                if h.status in LIVE_HOLD:
                    add("hd", h.store_id, hl.sku, hl.held)
                else:
                    assert hl.held == 0, f"{side}: {h} is over but holds {hl}"

        seen = set()
        totals = dict.fromkeys(SKUS, 0)
        for p in (p for sku in SKUS for p in positions[sku]):
            key = (p.node_id, p.sku)
            seen.add(key)
            totals[p.sku] += p.on_hand + p.inbound
            quantities = (p.on_hand, p.reserved, p.held, p.safety_stock, p.inbound, p.version)
            assert min(quantities) >= 0, f"{side}: negative quantity in {p}"
            actual = {"rs": p.reserved, "hd": p.held, "ib": p.inbound}
            for field, by_key in expected.items():
                assert actual[field] == by_key.get(key, 0), (
                    f"{side}: {p} but reservations, transfers and holds make {field} "
                    f"{by_key.get(key, 0)}"
                )
            assert p.on_hand == self.on_hand.get(key, 0), (
                f"{side}: {p} but the operations that succeeded left on_hand "
                f"{self.on_hand.get(key, 0)}"
            )
        for field, by_key in expected.items():
            missing = {k: q for k, q in by_key.items() if q and k not in seen}
            assert not missing, f"{side}: {field} of {missing} on unlisted positions"
        assert totals == self.total, (
            f"{side}: on_hand + inbound per SKU is {totals}, the operations that succeeded "
            f"(stock counts, adjustments, commits, collects, losses) left {self.total}"
        )


# `make test-soak` raises SCALE to explore many more programs than the default run can afford.
SCALE = int(os.environ.get("OMNISTOCK_PROPERTY_SCALE", "1"))
SINGLE = settings(
    max_examples=300 * SCALE,
    stateful_step_count=50,
    deadline=None,
    report_multiple_bugs=False,
    phases=[Phase.explicit, Phase.reuse, Phase.generate, Phase.target, Phase.shrink],
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
CLUSTER = settings(SINGLE, max_examples=80 * SCALE)


# Passing takes seconds; the higher limit lets a slow shrink on a loaded machine finish and report
# its minimal program (hypothesis stops shrinking by itself after five minutes).
@pytest.mark.timeout(600 * SCALE)
def test_redis_ledger_matches_the_model_on_a_single_server(single_target: Target) -> None:
    run_state_machine_as_test(lambda: LedgerComparison(single_target), settings=SINGLE)


@pytest.mark.cluster
@pytest.mark.timeout(600 * SCALE)
def test_redis_ledger_matches_the_model_on_a_cluster(cluster_target: Target) -> None:
    run_state_machine_as_test(lambda: LedgerComparison(cluster_target), settings=CLUSTER)
