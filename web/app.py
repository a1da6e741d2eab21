"""The app factory: ``create_app(settings)`` builds the Litestar app around one Appliance.

The appliance opens in the lifespan and closes (committing what is pending) on shutdown.
``make_app`` is the zero-argument factory granian calls; it reads settings from the
environment (``FOOTFALL_CONFIG`` and ``FOOTFALL_*``), which ``footfall serve`` sets.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from pathlib import Path

from litestar import Litestar, Request, Response, Router, get
from litestar.concurrency import set_asyncio_executor
from litestar.datastructures import State
from litestar.exceptions import HTTPException, NotAuthorizedException, ValidationException
from litestar.openapi import OpenAPIConfig
from litestar.openapi.plugins import SwaggerRenderPlugin
from litestar.openapi.spec import (
    Components,
)
from litestar.plugins.jinja import JinjaTemplateEngine
from litestar.response import Redirect
from litestar.template.config import TemplateConfig
from litestar.types import ASGIApp, Empty, Receive, Scope, Send

from appliance.budget import time_budget
from appliance.config import Settings, load_settings
from appliance.errors import DomainError, StorageFullError
from appliance.nesting import TOO_DEEP, json_too_deep
from appliance.operations.logs import configure_logging
from appliance.ratelimit import LoginThrottle
from appliance.runtime.appliance import Appliance
from appliance.runtime.ownership import SERVER_LOCK_WAIT_SECONDS, SERVER_ROLE
from web.api import API_CONTROLLERS
from web.api_alerts import ALERT_CONTROLLERS
from web.api_definitions import DEFINITION_CONTROLLERS
from web.api_plausible import PLAUSIBLE_CONTROLLERS
from web.api_raw_events import RAW_EVENT_CONTROLLERS
from web.api_reports import REPORT_CONTROLLERS
from web.api_transfers import TRANSFER_JOB_CONTROLLERS
from web.auth import LoginRequired, session_principal
from web.dashboard import DASHBOARD_CONTROLLERS, register_dashboard_helpers
from web.dashboard_alerts import ALERT_PAGES
from web.dashboard_definitions import DEFINITION_PAGES
from web.dashboard_reports import REPORT_PAGES
from web.dashboard_transfers import TRANSFER_PAGES
from web.dependencies import DEPENDENCIES
from web.errors import EXCEPTION_HANDLERS
from web.exports import EXPORT_CONTROLLERS
from web.heap import freeze_startup_heap
from web.ingest import ClientAddress, ingest_gate, make_ingest_handlers
from web.ingest_compat import make_compat_handlers
from web.ingest_dispatch import IngestFrontDoor
from web.interpreter import TurnTaking, set_switch_interval
from web.live_view import LiveController as LiveViewController
from web.login import SessionController, login_required_handler, register_template_helpers
from web.observability import ObservabilityController, request_context, start_metrics_listener
from web.openapi import SECURITY_SCHEMES, document_answers
from web.openapi import document as document_openapi
from web.privacy import PRIVACY_CONTROLLERS, PRIVACY_PAGES
from web.replication import REPLICATION_CONTROLLERS, read_only_while_following
from web.security import security_headers
from web.trackers import TRACKER_ROUTES
from web.worker_signals import leave_interrupts_to_the_supervisor

STATIC = Path(__file__).parent / "static"
TEMPLATES = Path(__file__).parent / "templates"
log = logging.getLogger(__name__)


@get("/js/footfall.js", include_in_schema=False, cache=False)
async def tracker_script() -> Response:
    return Response(
        (STATIC / "footfall.js").read_bytes(),
        media_type="application/javascript",
        headers={"Cache-Control": "public, max-age=3600", "Access-Control-Allow-Origin": "*"},
    )


FAVICON = (STATIC / "favicon.svg").read_bytes()


@get("/favicon.ico", include_in_schema=False, cache=False)
async def favicon() -> Response:
    """Browsers ask for ``/favicon.ico`` on their own (a JSON answer, an old bookmark): the SVG
    icon the pages link to, so no console shows a 404."""
    return Response(FAVICON, media_type="image/svg+xml", headers={"Cache-Control": "public, max-age=86400"})


@get("/", include_in_schema=False, sync_to_thread=True)
def index(request: Request) -> Response:
    """The front door: the site list when signed in, the login page otherwise (which lands on
    the site list)."""
    try:
        principal = session_principal(request)
    except NotAuthorizedException:  # an ended session: log in again
        principal = None
    signed_in = principal is not None and principal.session is not None  # not a shared link
    return Redirect("/sites" if signed_in else "/login", status_code=303)


class CheckedRequest(Request):
    """Litestar decodes every JSON request body through ``Request.json()`` (the ``data``
    argument of a handler): refuse a body nested too deep before the decoder recurses."""

    async def json(self):
        if self._json is Empty and self._connection_state.json is Empty and json_too_deep(await self.body()):
            raise ValidationException(TOO_DEEP, extra=[{"key": "$", "message": TOO_DEEP}])
        return await super().json()


def _template_helpers(engine) -> None:
    register_template_helpers(engine)
    register_dashboard_helpers(engine)
    # Templates ship with the code: no stat() of every included template on each render
    # (26 a dashboard page; jinja2 checks each one's mtime by default).
    engine.engine.auto_reload = False


async def _log_server_error(exception: BaseException, scope) -> None:
    """Every unexpected exception (a 500) is logged with its traceback; an expected 5xx (503
    storage full, a query past its time budget) in one line with its reason; 4xx without
    noise. The request id is in each line (:mod:`appliance.operations.logs`)."""
    if isinstance(exception, HTTPException | StorageFullError | DomainError):
        status = 503 if isinstance(exception, StorageFullError) else getattr(
            exception, "status_code", getattr(exception, "status", 0))
        if status >= 500:
            log.warning("answered %s on %s %s: %s", status, scope.get("method", ""), scope.get("path", ""),
                        exception)
        return  # answered with their own status and message
    log.error(
        "unhandled error on %s %s", scope.get("method", ""), scope.get("path", ""),
        exc_info=(type(exception), exception, exception.__traceback__),
    )


def query_budget(seconds: float):
    """ASGI middleware: every request it wraps runs its queries under a time budget. The
    deadline lives in a context variable, which follows the request into the worker thread
    that runs its handler."""

    def wrap(app: ASGIApp) -> ASGIApp:
        async def middleware(scope: Scope, receive: Receive, send: Send) -> None:
            with time_budget(seconds if scope["type"] == "http" else None):
                await app(scope, receive, send)

        return middleware

    return wrap


def create_app(settings: Settings) -> Litestar:
    configure_logging(settings.observability.log_format, settings.observability.log_level)
    appliance = Appliance(settings)

    @contextlib.asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        # The worker owns the data dir's events; a previous worker may still be closing.
        appliance.open(lock_wait=SERVER_LOCK_WAIT_SECONDS, role=SERVER_ROLE)
        app.state.appliance = appliance
        try:
            document_openapi(app)
        except Exception:  # documentation must never stop the server
            log.exception("could not complete the OpenAPI schema")
        bind = settings.observability.metrics_bind
        stop_metrics = start_metrics_listener(bind, appliance.metrics) if bind else None
        loop = type(asyncio.get_running_loop())
        log.info("serving %s: %d sites%s; event loop %s.%s", settings.data_dir, len(appliance.sites.all()),
                 f", metrics also on {bind}" if bind else "", loop.__module__, loop.__qualname__)
        try:
            yield
        finally:
            if stop_metrics is not None:
                stop_metrics()
            appliance.close()

    auth = settings.auth
    api = [
        *API_CONTROLLERS,
        *DEFINITION_CONTROLLERS,
        *REPORT_CONTROLLERS,
        *ALERT_CONTROLLERS,
        *RAW_EVENT_CONTROLLERS,
        *PLAUSIBLE_CONTROLLERS,
        *PRIVACY_CONTROLLERS,
        *REPLICATION_CONTROLLERS,
        *TRANSFER_JOB_CONTROLLERS,
    ]
    document_answers(api)
    # Everything but ingest goes through the security-headers middleware; the ingest
    # handlers stay bare on the hot path.
    site = Router(
        path="/",
        route_handlers=[
            *api,
            SessionController,
            *DASHBOARD_CONTROLLERS,
            *DEFINITION_PAGES,
            *REPORT_PAGES,
            *ALERT_PAGES,
            *TRANSFER_PAGES,
            LiveViewController,
            tracker_script,
            favicon,
            index,
            *TRACKER_ROUTES,
            ObservabilityController,
            *PRIVACY_PAGES,
            *EXPORT_CONTROLLERS,
        ],
        middleware=[security_headers, query_budget(settings.query.time_budget_seconds), read_only_while_following],
    )
    gate = ingest_gate(appliance)  # one rate-limit budget for every ingest route
    return Litestar(
        route_handlers=[*make_ingest_handlers(appliance, gate), *make_compat_handlers(appliance, gate), site],
        lifespan=[lifespan],
        middleware=[request_context(appliance.metrics)],  # request ids, latency per route
        logging_config=None,  # our handler (appliance.operations.logs), not Litestar's default
        dependencies=DEPENDENCIES,  # appliance, query, form: see web.dependencies
        after_exception=[_log_server_error],
        request_class=CheckedRequest,
        state=State(
            {
                "client_address": ClientAddress(settings.server.trusted_proxies),
                "login_throttle": LoginThrottle(
                    auth.login_burst_per_ip,
                    auth.login_rate_per_ip_per_minute,
                    auth.login_burst_per_username,
                    auth.login_rate_per_username_per_minute,
                ),
            }
        ),
        exception_handlers={**EXCEPTION_HANDLERS, LoginRequired: login_required_handler},
        template_config=TemplateConfig(
            directory=TEMPLATES, engine=JinjaTemplateEngine, engine_callback=_template_helpers
        ),
        openapi_config=OpenAPIConfig(
            openapi_router=Router(path="/schema", route_handlers=[], middleware=[security_headers]),
            title="Footfall",
            version="0.1.0",
            description="Self-hosted web analytics: ingestion, reports, stats and administration.",
            path="/schema",
            render_plugins=[SwaggerRenderPlugin()],
            # security is per operation (web.openapi): public routes take no credential
            components=Components(security_schemes=SECURITY_SCHEMES),
        ),
        debug=False,
    )


def make_app() -> IngestFrontDoor:
    """granian's factory: settings come from the environment set by ``footfall serve``;
    tracker requests skip Litestar's router (:mod:`web.ingest_dispatch`)."""
    settings = load_settings()
    app = create_app(settings)
    set_switch_interval(settings.server.switch_interval_ms)  # logged: create_app set up logging
    set_asyncio_executor(TurnTaking())  # handlers off the event loop compute in turns
    app.on_startup.append(freeze_startup_heap)  # after the lifespan opened the appliance
    app.on_startup.append(leave_interrupts_to_the_supervisor)  # its stop: granian's SIGTERM
    return IngestFrontDoor(app)
