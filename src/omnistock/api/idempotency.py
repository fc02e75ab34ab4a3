"""Idempotency-Key: from the header to the ledger's operation id and request fingerprint.

The operation id is derived from the calling key's id and the Idempotency-Key, so two clients
never collide on a key. The fingerprint covers the method, the path and the decoded body
(re-encoded, so the same body with other spacing or field order is the same request). The ledger
remembers both (see ``omnistock.reservations.claims``): the same request again replays the stored
first result, another request under the same key is refused with 422.
"""

from __future__ import annotations

import hashlib
import re
import uuid
from typing import Any

import msgspec
from litestar import Request

from omnistock.api.auth import principal_of
from omnistock.api.problems import invalid
from omnistock.reservations.claims import RequestClaim

HEADER = "idempotency-key"
REPLAYED = "Idempotent-Replayed"
MAX_KEY = 255
_PRINTABLE = re.compile(r"^[\x20-\x7e]{1,255}$")
_encode = msgspec.json.encode


def _hash(*parts: bytes) -> str:
    h = hashlib.blake2b(digest_size=16)
    for part in parts:
        h.update(part)
        h.update(b"\x00")
    return h.hexdigest()


def operation(
    request: Request, body: Any = None, *, required: bool
) -> tuple[str, RequestClaim | None]:
    """The ledger operation id and claim for a request. Without an Idempotency-Key (allowed
    only where ``required`` is false) the operation gets a fresh id and no claim."""
    key = request.headers.get(HEADER)
    if key is None:
        if required:
            raise invalid("Idempotency-Key", "this request needs an Idempotency-Key header", 400)
        return "u:" + uuid.uuid4().hex, None
    if not _PRINTABLE.match(key):
        raise invalid("Idempotency-Key", f"1 to {MAX_KEY} printable ASCII characters", 400)
    principal = principal_of(request)
    op_id = "k:" + _hash(principal.key_id.encode(), key.encode())
    fingerprint = _hash(
        request.method.encode(),
        request.scope["path"].encode(),
        b"" if body is None else _encode(body),
    )
    claim = RequestClaim(fingerprint)
    request.scope["claim"] = claim  # type: ignore[typeddict-unknown-key]
    return op_id, claim


def replay_headers(claim: RequestClaim | None) -> dict[str, str] | None:
    return {REPLAYED: "true"} if claim is not None and claim.replayed else None
