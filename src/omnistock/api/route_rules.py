"""What a route declares in its ``opt``, enforced in one place before its handler runs:

* ``role``: the least role its caller's key must hold (``opt={"role": Role.OMS}``, see auth);
* ``query``: the query parameters it takes (``opt=takes_query(...)``, see paths). Any other is
  refused, naming it, and so is one given twice that takes a single value. A route that
  declares none ignores a query string.

A plain middleware rather than Litestar guards: guards cost a copy of the route handler per
call, which on the hot path is more than the rest of the authentication together.
"""

from __future__ import annotations

from litestar.connection import ASGIConnection
from litestar.types import ASGIApp, Receive, Scope, Send

from omnistock.api.auth import authorize
from omnistock.api.paths import check_query


def route_rules_middleware(app: ASGIApp) -> ASGIApp:
    async def middleware(scope: Scope, receive: Receive, send: Send) -> None:
        opt = scope["route_handler"].opt
        role = opt.get("role")
        if role is not None:
            authorize(scope, scope["litestar_app"].state.services.keys, role)
        if scope["query_string"] and "query" in opt:
            # Parsed as the handler will read it (Litestar keeps the parse in the scope).
            check_query(ASGIConnection(scope).query_params, opt["query"], opt["repeatable"])
        await app(scope, receive, send)

    return middleware
