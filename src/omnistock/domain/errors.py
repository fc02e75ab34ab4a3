"""Domain errors. Each carries enough structure for the API to render problem+json."""

from __future__ import annotations

from omnistock.domain.stock import Shortage


class DomainError(Exception):
    """Base class of every rule violation the domain reports."""


class InvalidInput(DomainError, ValueError):
    def __init__(self, field: str, detail: str) -> None:
        super().__init__(f"{field}: {detail}")
        self.field = field
        self.detail = detail


class InsufficientStock(DomainError):
    """Not enough available stock; `shortages` names every short line, not only the first."""

    def __init__(self, shortages: list[Shortage]) -> None:
        super().__init__(f"{len(shortages)} line(s) short")
        self.shortages = shortages


class BelowCommitted(DomainError):
    """A change would take on_hand below what is reserved and held."""

    def __init__(self, shortages: list[Shortage]) -> None:
        super().__init__("on_hand would fall below reserved + held")
        self.shortages = shortages


class VersionConflict(DomainError):
    def __init__(self, expected: int, actual: int) -> None:
        super().__init__(f"expected version {expected}, position is at {actual}")
        self.expected = expected
        self.actual = actual


class NotFound(DomainError):
    def __init__(self, kind: str, ident: str) -> None:
        super().__init__(f"{kind} {ident} not found")
        self.kind = kind
        self.ident = ident


class IllegalTransition(DomainError):
    """A state change the state machine forbids, such as committing a released reservation."""

    def __init__(self, kind: str, ident: str, status: str, action: str) -> None:
        super().__init__(f"cannot {action} {kind} {ident}: it is {status}")
        self.kind = kind
        self.ident = ident
        self.status = status
        self.action = action


class IdempotencyKeyReused(DomainError):
    """An idempotency key already used for another request (another body or another path)."""

    def __init__(self) -> None:
        super().__init__("this Idempotency-Key was already used for another request")
