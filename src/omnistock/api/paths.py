"""Checks of path and query parameters, named as the client sent them."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from litestar.datastructures import MultiDict

from omnistock.domain.errors import InvalidInput
from omnistock.domain.ids import is_valid_id


def checked_id(field: str, value: str) -> str:
    if not is_valid_id(value):
        raise InvalidInput(field, "must match ^[A-Za-z0-9._:-]{1,64}$")
    return value


def point(field: str, raw: str) -> tuple[float, float]:
    """``lat,lon`` as in ``near=52.52,13.40``."""
    lat_text, sep, lon_text = raw.partition(",")
    try:
        lat, lon = float(lat_text), float(lon_text)
    except ValueError:
        raise InvalidInput(field, "must be lat,lon in decimal degrees") from None
    if not sep or not (-90 <= lat <= 90) or not (-180 <= lon <= 180):
        raise InvalidInput(field, "must be lat,lon with lat in [-90, 90] and lon in [-180, 180]")
    return lat, lon


def takes_query(known: Iterable[str], repeatable: Iterable[str] = ()) -> dict[str, Any]:
    """The ``opt`` of a route that takes these query parameters (``repeatable`` ones may be
    given more than once); route_rules enforces it."""
    return {"query": frozenset(known), "repeatable": frozenset(repeatable)}


def check_query(query: MultiDict, known: frozenset[str], repeatable: frozenset[str]) -> None:
    """Refuses a query parameter the route does not take, naming it, and one given more than
    once that takes a single value (Litestar would quietly keep one of them)."""
    for name in query:
        if name not in known:
            raise InvalidInput(name, "unknown query parameter")
        if name not in repeatable and len(query.getall(name)) > 1:
            raise InvalidInput(name, "takes one value; given more than once")
