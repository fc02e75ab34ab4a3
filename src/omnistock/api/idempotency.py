"""Idempotency-Key: from the header to the ledger's operation id and request fingerprint.

The operation id is derived from the calling key's id and the Idempotency-Key, so two clients
never collide on a key. The fingerprint covers the method, the path and the decoded body
(re-encoded, so the same body with other spacing or field order is the same request). The ledger
remembers both (see ``omnistock.reservations.claims``): the same request again replays the stored
first result, another request under the same key is refused with 422.
"""

from __future__ import annotations

import re
import uuid
from typing import Any

import msgspec
from litestar import Request

from omnistock.api.auth import principal_of
from omnistock.api.problems import ApiProblem, invalid
from omnistock.domain.errors import IdempotencyKeyReused
from omnistock.domain.ids import digest_of
from omnistock.reservations import keys
from omnistock.reservations.claims import RequestClaim

HEADER = "idempotency-key"
REPLAYED = "Idempotent-Replayed"
MAX_KEY = 255
_PRINTABLE = re.compile(r"^[\x20-\x7e]{1,255}$")
_encode = msgspec.json.encode


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
    op_id = "k:" + digest_of(principal.key_id.encode(), key.encode())
    fingerprint = digest_of(
        request.method.encode(),
        request.scope["path"].encode(),
        b"" if body is None else _encode(body),
    )
    claim = RequestClaim(fingerprint)
    request.scope["claim"] = claim  # type: ignore[typeddict-unknown-key]
    return op_id, claim


def replay_headers(claim: RequestClaim | None) -> dict[str, str] | None:
    return {REPLAYED: "true"} if claim is not None and claim.replayed else None


class StoredResponses:
    """The stored first response of requests made of several steps (orders), under their
    operation id: the same request again gets it back, another under the same key 422, and the
    same request while the first is still running 409. Single-step requests need none of this:
    the ledger's own memory of the operation replays them."""

    LOCK_MS = 30_000
    KEEP_MS = 48 * 3600 * 1000

    def __init__(self, client: Any) -> None:
        self._client = client

    @staticmethod
    def _keys(op_id: str) -> tuple[str, str]:
        tag = keys.tag(keys.partition_of(op_id))
        return f"{tag}:resp:{op_id}", f"{tag}:lock:{op_id}"

    async def begin(self, op_id: str, claim: RequestClaim) -> tuple[int, bytes] | None:
        """The stored (status, body) to replay, or None when this request is to run now."""
        response_key, lock_key = self._keys(op_id)
        stored = await self._stored(response_key, claim)
        if stored is not None:
            return stored
        if not await self._client.set(lock_key, claim.fingerprint, nx=True, px=self.LOCK_MS):
            stored = await self._stored(response_key, claim)
            if stored is not None:
                return stored
            raise ApiProblem(
                409,
                "request-in-progress",
                "Request in progress",
                "the first request with this Idempotency-Key is still running",
                "Idempotency-Key",
            )
        return None

    async def finish(self, op_id: str, claim: RequestClaim, status: int, body: bytes) -> None:
        response_key, lock_key = self._keys(op_id)
        record = _encode({"fp": claim.fingerprint, "status": status, "body": body.decode()})
        await self._client.set(response_key, record, px=self.KEEP_MS)
        await self._client.delete(lock_key)

    async def abandon(self, op_id: str) -> None:
        """The request failed without an answer worth keeping (bad input, a dependency down)."""
        await self._client.delete(self._keys(op_id)[1])

    async def _stored(self, key: str, claim: RequestClaim) -> tuple[int, bytes] | None:
        raw = await self._client.get(key)
        if raw is None:
            return None
        record = msgspec.json.decode(raw)
        if record["fp"] != claim.fingerprint:
            raise IdempotencyKeyReused()
        claim.replayed = True
        return int(record["status"]), record["body"].encode()
