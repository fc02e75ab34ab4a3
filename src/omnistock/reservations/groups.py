"""How the lines of one operation are split into script calls."""

from __future__ import annotations

from typing import Any

import msgspec


class Group(msgspec.Struct):
    """Items that go to one operation call: ``home`` is its home partition (the first of its
    keys), ``tags`` every partition it touches."""

    home: int
    tags: list[str]
    items: list[tuple[int, Any]]
