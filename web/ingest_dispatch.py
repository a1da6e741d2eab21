"""The served app's front door: tracker requests go straight to their ingest handlers.

The three ingest routes (``/api/v1/events``, ``/api/v1/conversions``, ``/api/v1/collect``)
are raw ASGI handlers that answer every method and every error themselves
(:class:`web.ingest.IngestEndpoint`). Through Litestar each request still pays for its router
(path normalisation, the host check, routing, scope state) and the exception middleware:
about a sixth of the event loop's Python time per single event, measured with py-spy under
wrk. :class:`IngestFrontDoor` sends a request whose path is exactly an ingest route to that
route's handler, wrapped in the app-wide middleware every route has (the request id and
latency of :func:`web.observability.request_context`), and everything else (and the lifespan) to the
Litestar app, which still lists the ingest routes (OpenAPI, the route table) and serves them
in-process (tests' clients). An exception escaping a handler (a bug) is logged with its
traceback and answered as Litestar would: 500 with our error body and the request id.

Only ``footfall serve``'s app (:func:`web.app.make_app`) is wrapped.
"""

from __future__ import annotations

import logging

import msgspec
from litestar import Litestar
from litestar.handlers import ASGIRouteHandler
from litestar.types import ASGIApp, Message, Receive, Scope, Send

from appliance.operations.logs import request_id
from appliance.tracker_first import TRACKER_FIRST
from web.errors import error_body

log = logging.getLogger(__name__)

INGEST_ROUTE_NAMES = ("ingest_events", "ingest_conversions", "ingest_collect")
_HEADERS = [(b"content-type", b"application/json")]


def _guarded(handler: ASGIApp) -> ASGIApp:
    """``handler`` with Litestar's last resort: an escaping exception is logged and, unless
    the answer already started, answered 500."""

    async def guarded(scope: Scope, receive: Receive, send: Send) -> None:
        started = False

        async def tracking_send(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await handler(scope, receive, tracking_send)
        except Exception:
            log.exception("unhandled error on %s %s", scope.get("method", ""), scope.get("path", ""))
            if started:
                raise
            body = msgspec.json.encode(error_body(None, "Internal Server Error", request_id=request_id.get() or None))
            await send({"type": "http.response.start", "status": 500, "headers": _HEADERS})
            await send({"type": "http.response.body", "body": body})

    return guarded


def _with_app_middleware(app: Litestar, handler: ASGIApp) -> ASGIApp:
    """``handler`` inside the app-wide middleware, outermost first, as Litestar stacks it.
    They are plain ``wrap(app) -> app`` functions (``request_context``'s kind)."""
    for middleware in reversed(app.middleware):
        if not callable(middleware) or isinstance(middleware, type):
            raise TypeError(f"app-wide middleware {middleware!r} is not a plain ASGI wrapper")
        handler = middleware(handler)
    return handler


class IngestFrontDoor:
    """An ASGI app: exact ingest paths to their handlers, the rest to ``app``."""

    def __init__(self, app: Litestar) -> None:
        self.app = app
        self.routes: dict[str, ASGIApp] = {}
        found = set()
        for route in app.routes:
            handler = getattr(route, "route_handler", None)  # an ASGI route has exactly one
            if isinstance(handler, ASGIRouteHandler) and handler.name in INGEST_ROUTE_NAMES:
                self.routes[route.path] = _with_app_middleware(app, _guarded(handler.fn))
                found.add(handler.name)
        if missing := set(INGEST_ROUTE_NAMES) - found:
            raise RuntimeError(f"ingest routes not found in the app: {sorted(missing)}")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and not scope.get("root_path"):
            handler = self.routes.get(scope["path"])
            if handler is not None:
                scope["path_template"] = scope["path"]  # the latency metric's route label
                TRACKER_FIRST.enter()  # the folds step aside until it is answered
                try:
                    await handler(scope, receive, send)
                finally:
                    TRACKER_FIRST.leave()
                return
        await self.app(scope, receive, send)
