"""Identifier rules shared by every layer."""

import re

ID_PATTERN = r"^[A-Za-z0-9._:-]{1,64}$"
_ID_RE = re.compile(ID_PATTERN)


def is_valid_id(value: str) -> bool:
    return isinstance(value, str) and _ID_RE.fullmatch(value) is not None
