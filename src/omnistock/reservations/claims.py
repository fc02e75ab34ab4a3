"""Requests' claims on their operation ids, which is how the API's idempotency keys work.

The API derives an operation id from a request's ``Idempotency-Key`` and fingerprints the request
(method, path and body). The ledger remembers the fingerprint with the operation id, in the same
script as the operation on a single server, so that the same request again replays the first
result (``replayed`` is then set) and another request under the same key is refused.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(slots=True)
class RequestClaim:
    fingerprint: str
    replayed: bool = False
