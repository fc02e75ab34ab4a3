"""Service endpoints: liveness, readiness, metrics, and the no-op endpoints benchmarks compare
against."""

from __future__ import annotations

import asyncio
from typing import Any

from litestar import Controller, Response, get, post
from litestar.datastructures import State
from litestar.params import JSONBody

from omnistock.api.auth import Role
from omnistock.api.schemas import Health, NoopOut, Readiness
from omnistock.reservations import keys
from omnistock.store.database import ping

READY_TIMEOUT_S = 1.0


class ServiceController(Controller):
    tags = ["service"]

    @get("/healthz", operation_id="health", summary="The process is alive")
    async def health(self) -> Health:
        return Health("ok")

    @get("/readyz", operation_id="readiness", summary="Redis and the database both answer")
    async def readiness(self, state: State) -> Response[Readiness]:
        services = state.get("services")
        if services is None:  # still starting: say what it waits for
            return Response(Readiness("starting", state.startup.checks()), status_code=503)
        # Every check runs at once, bounded well inside the request deadline: a hung dependency
        # must leave time to answer which one failed, not have the deadline cut the answer off.
        timeout_s = min(READY_TIMEOUT_S, services.settings.request_timeout_s / 2)
        redis_ok, db_ok, lag = await asyncio.gather(
            _check(services.runtime.connection.runner.op("ping", [keys.tag(0)], ()), timeout_s),
            _check(ping(services.engine), timeout_s),
            _lag(services.projector, timeout_s),
        )
        checks = {"redis": redis_ok, "database": db_ok}
        ready = all(v == "ok" for v in checks.values())
        # Information, not a condition of readiness: the journal trails the ledger by this.
        details = {"projector_lag_events": lag}
        return Response(
            Readiness("ready" if ready else "unavailable", checks, details),
            status_code=200 if ready else 503,
        )

    @get(
        "/metrics",
        operation_id="metrics",
        summary="Prometheus metrics",
        media_type="text/plain; version=0.0.4",
        opt={"role": Role.STOREFRONT},
    )
    async def metrics(self, state: State) -> str:
        services = state.services
        # This worker's own counts are read live; the other workers' come from their snapshots.
        services.count_ledger_outcomes()
        return services.metrics.render()


async def _lag(projector: Any, timeout_s: float) -> int | None:
    try:
        async with asyncio.timeout(timeout_s):
            return await projector.lag()
    except Exception:
        return None


async def _check(call: Any, timeout_s: float) -> str:
    try:
        async with asyncio.timeout(timeout_s):
            await call
        return "ok"
    except Exception as exc:
        return f"failed: {type(exc).__name__}"


class DiagnosticsController(Controller):
    """No-op endpoints through the same app, auth and body decoding: the peers of the HTTP
    benchmark."""

    path = "/v1/diagnostics"
    tags = ["service"]
    opt = {"role": Role.STOREFRONT}

    @get("/noop", operation_id="noopGet", summary="Does nothing (benchmark peer)")
    async def noop_get(self) -> NoopOut:
        return NoopOut(True)

    @post(
        "/noop",
        operation_id="noopPost",
        summary="Decodes its JSON body, does nothing",
        status_code=200,
    )
    async def noop_post(self, data: JSONBody[dict[str, Any]]) -> NoopOut:
        return NoopOut(True)
