"""Key layout: SKUs are spread over a fixed number of partitions, each with its own hash tag.

Every key of a partition carries the tag ``{os.N}``, so one script on one partition stays in one
cluster slot. A partition holds, for each of its SKUs, one hash of positions (fields
``<node>|oh``, ``|rs``, ``|hd``, ``|ss``, ``|ib``, ``|v``), plus the reservation records whose home
it is, their deadlines (``:exp``), pinned parts (``:pin``), remembered operation ids (``:op:``) and
its event stream (``:ev``). The partition count is part of the data layout: changing it needs a
rebuild of the ledger.
"""

from __future__ import annotations

import hashlib
import zlib

NAMESPACE = "os"
PARTITIONS = 128


def partition_of(sku: str) -> int:
    return zlib.crc32(sku.encode()) % PARTITIONS


def tag(partition: int) -> str:
    return f"{{{NAMESPACE}.{partition}}}"


def stream_key(partition: int) -> str:
    """The event stream of a partition on a cluster; a single server keeps every event in the
    stream of partition 0 (see ``event_streams``)."""
    return f"{tag(partition)}:ev"


def event_streams(cluster: bool) -> list[str]:
    """Every stream the ledger appends events to."""
    return [stream_key(p) for p in range(PARTITIONS)] if cluster else [stream_key(0)]


def reservation_id(op_id: str, home: int, *, single: bool) -> str:
    """A reservation id derived from its operation id, so a retried reserve reuses it.

    The id names its home partition, where its record lives, and whether it has parts in other
    partitions (``r`` one part, ``m`` several), so commit and release need no extra look-up.
    """
    digest = hashlib.blake2b(op_id.encode(), digest_size=12).hexdigest()
    return f"{'r' if single else 'm'}{home}-{digest}"


def is_multi_part(reservation_id: str) -> bool:
    return reservation_id.startswith("m")


def home_of(reservation_id: str) -> int | None:
    """The home partition named by a reservation id, or None when the id is not one of ours."""
    head, sep, rest = reservation_id.partition("-")
    if not sep or len(head) < 2 or head[0] not in "rm" or not head[1:].isdigit() or len(rest) != 24:
        return None
    home = int(head[1:])
    return home if home < PARTITIONS else None


def doc_id(kind: str, op_id: str, home: int, *, single: bool) -> str:
    """The id of a transfer (``kind`` "t") or hold ("h"), derived from its operation id like a
    reservation id: it names the kind, the home partition, and (``m``) whether it has parts in
    other partitions."""
    digest = hashlib.blake2b(f"{kind}:{op_id}".encode(), digest_size=12).hexdigest()
    return f"{kind}{home}{'' if single else 'm'}-{digest}"


def parse_doc_id(doc: str, kind: str) -> tuple[int, bool] | None:
    """(home partition, multi-part) of a transfer or hold id of ``kind``, or None."""
    head, sep, rest = doc.partition("-")
    if not sep or len(rest) != 24 or not head.startswith(kind):
        return None
    body = head[1:]
    multi = body.endswith("m")
    digits = body[:-1] if multi else body
    if not digits.isdigit() or int(digits) >= PARTITIONS:
        return None
    return int(digits), multi
