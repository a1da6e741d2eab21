"""The app factory: ``create_app(settings)`` builds the Litestar app around one Appliance.

The appliance opens in the lifespan and closes (committing what is pending) on shutdown.
``make_app`` is the zero-argument factory granian calls; it reads settings from the
environment (``FOOTFALL_CONFIG`` and ``FOOTFALL_*``), which ``footfall serve`` sets.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator
from pathlib import Path

from litestar import Litestar, MediaType, Request, Response, Router, get
from litestar.datastructures import State
from litestar.di import Provide
from litestar.exceptions import NotAuthorizedException
from litestar.openapi import OpenAPIConfig
from litestar.openapi.plugins import SwaggerRenderPlugin
from litestar.openapi.spec import (
    Components,
    OpenAPIMediaType,
    OpenAPIResponse,
    Operation,
    PathItem,
    RequestBody,
    Schema,
    SecurityScheme,
)
from litestar.plugins.jinja import JinjaTemplateEngine
from litestar.response import Redirect
from litestar.template.config import TemplateConfig

from appliance.config import Settings, load_settings
from appliance.core import Appliance
from appliance.ratelimit import LoginThrottle
from web.api import API_CONTROLLERS
from web.api_definitions import DEFINITION_CONTROLLERS
from web.auth import LoginRequired, request_form, session_principal
from web.dashboard import DASHBOARD_CONTROLLERS, register_dashboard_helpers
from web.dashboard_definitions import DEFINITION_PAGES
from web.errors import EXCEPTION_HANDLERS
from web.ingest import ClientAddress, make_ingest_handlers
from web.live_view import LiveController as LiveViewController
from web.login import SessionController, login_required_handler, register_template_helpers
from web.security import security_headers

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


@get("/", include_in_schema=False, sync_to_thread=True)
def index(request: Request) -> Response:
    """The front door: a signed-in user goes straight to the site list."""
    try:
        signed_in = session_principal(request) is not None
    except NotAuthorizedException:
        signed_in = False
    if signed_in:
        return Redirect("/sites", status_code=303)
    return Response(
        "<!doctype html><title>Footfall</title><h1>Footfall</h1>"
        '<p>Web analytics appliance. <a href="/login?next=/sites">Log in</a>. API schema: <a href="/schema">/schema</a>.</p>',
        media_type=MediaType.HTML,
    )


def _ingest_operation(summary: str, example: dict) -> PathItem:
    return PathItem(
        post=Operation(
            tags=["ingest"],
            summary=summary,
            description=(
                "Accepts one JSON object or a JSON array (batch, answered per item). Answered only "
                "after the event is durable. 400/422 name the bad field; 404 unknown site; 413 body "
                "too large; 503 storage full. Ignored events (bots) get 202 and X-Footfall-Ignored."
            ),
            request_body=RequestBody(
                required=True,
                content={"application/json": OpenAPIMediaType(schema=Schema(type="object"), example=example)},
            ),
            responses={
                "200": OpenAPIResponse(description="Accepted and committed"),
                "202": OpenAPIResponse(description="Ignored (reason in X-Footfall-Ignored)"),
                "400": OpenAPIResponse(description="Malformed body"),
                "404": OpenAPIResponse(description="Unknown site"),
                "413": OpenAPIResponse(description="Body too large"),
                "422": OpenAPIResponse(description="Invalid field"),
                "503": OpenAPIResponse(description="Storage full"),
            },
        )
    )


def _document_ingest(app: Litestar) -> None:
    """ASGI handlers are invisible to OpenAPI generation: describe them by hand."""
    schema = app.openapi_schema
    paths = schema.paths if schema.paths is not None else {}
    paths["/api/v1/events"] = _ingest_operation(
        "Track an event (seed API)",
        {"event_type": "page_view", "user_id": "user123", "session_id": "session456",
         "timestamp": "2024-07-29T12:34:56Z",
         "metadata": {"page_url": "https://example.com", "referrer_url": "https://referrer.com",
                      "browser": "Chrome", "device": "Desktop"}},
    )
    paths["/api/v1/conversions"] = _ingest_operation(
        "Track a conversion (seed API)",
        {"conversion_type": "purchase", "user_id": "user123", "session_id": "session456",
         "timestamp": "2024-07-29T12:45:00Z",
         "metadata": {"product_id": "prod789", "amount": 99.99, "currency": "USD"}},
    )
    paths["/api/v1/collect"] = _ingest_operation(
        "Tracker endpoint (compact body, text/plain)",
        {"k": "pageview", "s": "example.com", "u": "https://example.com/pricing", "r": "https://news.ycombinator.com/", "w": 1280},
    )
    schema.paths = paths


def _template_helpers(engine) -> None:
    register_template_helpers(engine)
    register_dashboard_helpers(engine)


async def _log_server_error(exception: BaseException, scope) -> None:
    """Every unexpected exception (a 500) is logged with its traceback; expected HTTP errors
    (4xx, 503 storage full) are answered without noise."""
    from litestar.exceptions import HTTPException

    from appliance.accounts import AccountError
    from appliance.pipeline import InvalidInput
    from storage import StorageFullError

    if isinstance(exception, HTTPException | StorageFullError | InvalidInput | AccountError):
        return
    if getattr(exception, "field", None) is not None:  # domain errors answered with 4xx
        return
    log.error(
        "unhandled error on %s %s", scope.get("method", ""), scope.get("path", ""),
        exc_info=(type(exception), exception, exception.__traceback__),
    )


def create_app(settings: Settings) -> Litestar:
    appliance = Appliance(settings)

    @contextlib.asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        appliance.open()
        app.state.appliance = appliance
        try:
            _document_ingest(app)
        except Exception:  # documentation must never stop the server
            log.exception("could not add ingest endpoints to the OpenAPI schema")
        try:
            yield
        finally:
            appliance.close()

    auth = settings.auth
    # Everything but ingest goes through the security-headers middleware; the ingest
    # handlers stay bare on the hot path.
    site = Router(
        path="/",
        route_handlers=[*API_CONTROLLERS, *DEFINITION_CONTROLLERS, SessionController, *DASHBOARD_CONTROLLERS, *DEFINITION_PAGES, LiveViewController, tracker_script, index],
        middleware=[security_headers],
    )
    return Litestar(
        route_handlers=[*make_ingest_handlers(appliance), site],
        lifespan=[lifespan],
        dependencies={"form": Provide(request_form)},  # forms for the sync dashboard handlers
        after_exception=[_log_server_error],
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
            components=Components(
                security_schemes={"bearer": SecurityScheme(type="http", scheme="bearer")}
            ),
            security=[{"bearer": []}],
        ),
        debug=False,
    )


def make_app() -> Litestar:
    """granian's factory: settings come from the environment set by ``footfall serve``."""
    return create_app(load_settings())
