"""What a route declares in its ``opt``, enforced in one place before its handler runs:

* ``role``: the least role its caller's key must hold (``opt={"role": Role.OMS}``, see auth);
  such a route uses the worker's services, so until they are up it answers 503;
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
from omnistock.api.problems import starting


def route_rules_middleware(app: ASGIApp) -> ASGIApp:
    async def middleware(scope: Scope, receive: Receive, send: Send) -> None:
        opt = scope["route_handler"].opt
        role = opt.get("role")
        if role is not None:
            # Every route that takes a key uses the services; until they are up it gets a 503.
            services = scope["litestar_app"].state.get("services")
            if services is None:
                raise starting(scope["litestar_app"].state.startup.waiting)
            authorize(scope, services.keys, role)
        if scope["query_string"] and "query" in opt:
            # Parsed as the handler will read it (Litestar keeps the parse in the scope).
            check_query(ASGIConnection(scope).query_params, opt["query"], opt["repeatable"])
        await app(scope, receive, send)

    return middleware
