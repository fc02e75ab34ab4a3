"""The Litestar app factory.

``create_app`` builds the app; settings are read when it is called, never at import, and every
connection (Redis, database) is opened in the lifespan by the composition root
(``omnistock.runtime.bootstrap.service_runtime``). ``create_asgi`` wraps the app in the edge layer
(request deadline, content type, metrics): it is what the server runs.
"""

from __future__ import annotations

import contextlib
import gc
import logging
import os
import signal
import threading
import time
from collections.abc import AsyncIterator, Callable

from litestar import Litestar
from litestar.openapi import OpenAPIConfig

from omnistock.api.controllers.availability import AvailabilityController
from omnistock.api.controllers.availability_stream import STREAM_PATH, AvailabilityStreamController
from omnistock.api.controllers.holds import HoldsController
from omnistock.api.controllers.journal import JournalController
from omnistock.api.controllers.nodes import NodesController
from omnistock.api.controllers.orders import OrdersController
from omnistock.api.controllers.reservations import ReservationsController
from omnistock.api.controllers.routing import BATCH_DEADLINE_S, RoutingController
from omnistock.api.controllers.service import DiagnosticsController, ServiceController
from omnistock.api.controllers.stock import StockController
from omnistock.api.controllers.transfers import TransfersController
from omnistock.api.controllers.ui import DashboardController
from omnistock.api.edge import Edge
from omnistock.api.metrics import Metrics
from omnistock.api.openapi import COMPONENTS, ExactStructSchemas, document_outcomes
from omnistock.api.problems import handle
from omnistock.api.route_rules import route_rules_middleware
from omnistock.runtime.bootstrap import Services, services_in_background
from omnistock.runtime.settings import Settings
from omnistock.runtime.worker_failures import report_to_service

log = logging.getLogger("omnistock.api")

MAX_BODY_BYTES = 1_048_576
OPENAPI_PATH = "/schema"
"""The OpenAPI document is at /schema/openapi.json, the interactive docs at /schema/swagger."""
# How often a serve worker checks that its service process is still there.
ORPHAN_CHECK_S = 0.5


def create_app(
    settings: Settings | None = None,
    metrics: Metrics | None = None,
    *,
    on_start_failure: Callable[[BaseException], None] | None = None,
) -> Litestar:
    """``on_start_failure``: what to do when the services, built in the background, fail for
    good. After the app already answers (see ``services_in_background``) the app by default
    goes on answering 503 and readiness says why; before, the start fails too, after it."""
    settings = settings or Settings.from_env()
    metrics = metrics or Metrics(settings.data_dir / "metrics")

    @contextlib.asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        def ready(services: Services) -> None:
            app.state.services = services
            # Everything built so far lives as long as the worker: moving it out of the
            # collector's sight keeps full collections short, and so the latency tail.
            gc.collect()
            gc.freeze()
            gc.set_threshold(20_000, 20, 20)

        # Until the services are up (Valkey or the database unreachable at start), routes that
        # need them answer 503 (route_rules) and readiness says what the worker waits for.
        answering = False
        try:
            async with services_in_background(
                settings, metrics, ready, on_start_failure
            ) as startup:
                answering = True
                app.state.startup = startup
                yield
        except Exception as exc:
            if not answering and on_start_failure is not None:
                on_start_failure(exc)
            raise

    app = Litestar(
        route_handlers=[
            ServiceController,
            DiagnosticsController,
            NodesController,
            StockController,
            AvailabilityController,
            AvailabilityStreamController,
            ReservationsController,
            HoldsController,
            TransfersController,
            RoutingController,
            OrdersController,
            JournalController,
            DashboardController,
        ],
        lifespan=[lifespan],
        middleware=[route_rules_middleware],
        exception_handlers={Exception: handle},
        request_max_body_size=MAX_BODY_BYTES,
        openapi_config=OpenAPIConfig(
            title="omnistock",
            version="1.0.0",
            description="Real-time inventory ledger and order routing.",
            path=OPENAPI_PATH,
            components=COMPONENTS,
        ),
        plugins=[ExactStructSchemas()],
        logging_config=None,
    )
    document_outcomes(app)
    return app


def create_asgi(
    settings: Settings | None = None,
    *,
    on_start_failure: Callable[[BaseException], None] | None = None,
) -> Edge:
    """The app as served: the Litestar app inside the edge layer."""
    settings = settings or Settings.from_env()
    metrics = Metrics(settings.data_dir / "metrics")
    return Edge(
        create_app(settings, metrics, on_start_failure=on_start_failure),
        metrics,
        deadline_s=settings.request_timeout_s,
        long_paths={"/v1/routing/batch": BATCH_DEADLINE_S},
        streaming_paths=frozenset({STREAM_PATH}),
        max_in_flight=settings.max_requests_in_flight,
    )


def create_worker_asgi() -> Edge:
    """The app as one of ``omnistock serve``'s granian workers runs it. A worker whose services
    fail for good tells the serve process and stops (its start fails, or, once it answers, it
    stops itself as if told to); granian then starts a new one in its place, and the service
    stops once that one fails too (see runtime.worker_failures), so a service that cannot work
    says so by ending rather than answering 503 for ever.
    A worker whose service process is gone (killed with SIGKILL, say) stops too, instead of
    answering on its own from a stale listening socket."""
    settings = Settings.from_env()
    _stop_when_orphaned(os.getppid(), grace_s=2 * settings.request_timeout_s + 2)
    return create_asgi(settings, on_start_failure=_stop_this_worker)


def _stop_this_worker(_exc: BaseException) -> None:
    report_to_service()
    os.kill(os.getpid(), signal.SIGTERM)


def _stop_when_orphaned(parent: int, *, grace_s: float) -> None:
    """Watches, from a daemon thread, for this process's parent to change (it died and the
    process was handed to another); then stops it as granian stops a worker, letting its
    requests finish, and kills it if it has not ended after ``grace_s``."""

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(ORPHAN_CHECK_S)
        log.warning("the service process %d is gone; this worker stops", parent)
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(grace_s)
        os.kill(os.getpid(), signal.SIGKILL)

    threading.Thread(target=watch, name="orphan-watch", daemon=True).start()
