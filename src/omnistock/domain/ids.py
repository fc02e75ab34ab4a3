"""Identifier rules shared by every layer."""

import hashlib
import re

ID_PATTERN = r"^[A-Za-z0-9._:-]{1,64}$"
_ID_RE = re.compile(ID_PATTERN)


def is_valid_id(value: str) -> bool:
    return isinstance(value, str) and _ID_RE.fullmatch(value) is not None


def digest_of(*parts: bytes) -> str:
    """A short hex digest of parts kept apart (``ab``, ``c`` differs from ``a``, ``bc``): how
    operation ids and request fingerprints are derived from what names them."""
    h = hashlib.blake2b(digest_size=16)
    for part in parts:
        h.update(part)
        h.update(b"\x00")
    return h.hexdigest()
