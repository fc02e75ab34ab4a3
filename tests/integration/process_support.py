"""What the tests that start and kill ``omnistock serve`` and Valkey ask of a process."""

from __future__ import annotations

from pathlib import Path


def gone(pid: int) -> bool:
    """Whether ``pid`` has ended: no longer in /proc, or a zombie not yet reaped."""
    status = Path(f"/proc/{pid}/status")
    try:
        return "zombie" in status.read_text()
    except FileNotFoundError:
        return True
