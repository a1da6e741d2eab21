"""Observability routes and the request middleware: ``/metrics``, liveness, readiness, request ids.

- ``GET /metrics``: the appliance's Prometheus registry in the text format, for admins (an
  admin's API key as bearer token). ``[observability] metrics_bind`` also serves it, without
  authentication, on a listener of its own (prometheus-client's, a daemon thread).
- ``GET /api/v1/health/live``: liveness, answered on the event loop without touching storage:
  200 as long as the process answers requests at all.
- ``GET /ready``: readiness: the store takes a write (a tiny transaction) and the writer's
  last commit did not fail (and, on a standby, the last pulled batch was stored). 200 ``{"status": "ok"}``, else 503 ``{"status": "degraded"}``
  with the failing checks. The container's HEALTHCHECK (``footfall health``) asks this one.
- :func:`request_context`: every request gets an id (the caller's ``X-Request-ID`` when it
  is a sensible token, else a new one), answered in ``X-Request-ID``, written in every log
  line of the request (:mod:`appliance.operations.logs`) and in a 500's body; and its time is
  observed per route template in ``footfall_http_request_seconds``.
"""

from __future__ import annotations

import time
from typing import Any

import anyio
from litestar import Controller, Response, get
from litestar.openapi.datastructures import ResponseSpec
from litestar.status_codes import HTTP_200_OK, HTTP_503_SERVICE_UNAVAILABLE
from litestar.types import ASGIApp, Message, Receive, Scope, Send
from prometheus_client import start_http_server

from appliance.operations.logs import new_request_id, request_id
from appliance.operations.metrics import CONTENT_TYPE, Metrics
from appliance.runtime.appliance import Appliance
from appliance.turns import computing_request
from web.auth import can_manage_settings
from web.dependencies import ApplianceDep

REQUEST_ID_HEADER = b"x-request-id"
_UNMATCHED = "(unmatched)"


def request_context(metrics: Metrics):
    """ASGI middleware (app-wide, ingest included): request id and per-route latency."""

    def wrap(app: ASGIApp) -> ASGIApp:
        async def middleware(scope: Scope, receive: Receive, send: Send) -> None:
            if scope["type"] != "http":
                await app(scope, receive, send)
                return
            offered = None
            for name, value in scope.get("headers", ()):
                if name == REQUEST_ID_HEADER:
                    offered = value.decode("latin-1")
                    break
            identifier = new_request_id(offered)
            token = request_id.set(identifier)
            started = time.perf_counter()
            status = 500

            async def send_with_id(message: Message) -> None:
                nonlocal status
                if message["type"] == "http.response.start":
                    status = message["status"]
                    headers = [item for item in message.get("headers", ()) if item[0].lower() != REQUEST_ID_HEADER]
                    message = {**message, "headers": [*headers, (REQUEST_ID_HEADER, identifier.encode())]}
                await send(message)

            try:
                with computing_request():  # its settled reads take turns (appliance.turns)
                    await app(scope, receive, send_with_id)
            finally:
                route = scope.get("path_template") or _UNMATCHED
                metrics.observe_request(scope.get("method", ""), route, status, time.perf_counter() - started)
                request_id.reset(token)

        return middleware

    return wrap


def readiness(appliance: Appliance) -> dict[str, Any]:
    """Whether the appliance can take events now: the store accepts a write transaction and
    the last commit succeeded."""
    checks: dict[str, str] = {}
    try:
        appliance.store.write(lambda txn: txn.put(b"ready_probe", str(time.time()).encode(),
                                                  db=appliance.store.db(b"sequences")))
        checks["storage_writable"] = "ok"
    except Exception as error:  # any failure makes the server not ready; the reason is shown
        checks["storage_writable"] = f"{type(error).__name__}: {error}"
    last_error = appliance.writer.last_error
    checks["last_commit"] = "ok" if last_error is None else last_error
    if appliance.following:  # a standby whose store refuses the pulled batches (disk full)
        checks["standby_apply"] = appliance.replication_status().get("apply_error") or "ok"
    ready = all(value == "ok" for value in checks.values())
    return {"status": "ok" if ready else "degraded", "checks": checks, "last_error": last_error}


class ObservabilityController(Controller):
    tags = ["health"]

    @get("/metrics", guards=[can_manage_settings], sync_to_thread=True, media_type=CONTENT_TYPE,
         summary="Prometheus metrics in the text format (admin only)")
    def metrics(self, appliance: ApplianceDep) -> Response[bytes]:
        return Response(appliance.metrics.render(), media_type=CONTENT_TYPE)

    @get("/api/v1/health/live", summary="Liveness: 200 while the process answers (no auth, no storage)")
    async def live(self) -> dict[str, str]:
        return {"status": "alive"}

    @get(
        "/ready",
        summary="Readiness: storage writable and the last commit succeeded (no auth)",
        description="200 with `status` `ok`; 503 with `status` `degraded` and the failing `checks`.",
        responses={
            HTTP_503_SERVICE_UNAVAILABLE: ResponseSpec(
                data_container=dict[str, Any], generate_examples=False,
                description="Not ready: the same body, with `status` `degraded`",
            )
        },
    )
    async def ready(self, appliance: ApplianceDep) -> Response[dict[str, Any]]:
        # async only to choose the status code; the probe writes LMDB in a worker thread
        report = await anyio.to_thread.run_sync(readiness, appliance)
        return Response(report, status_code=HTTP_200_OK if report["status"] == "ok" else HTTP_503_SERVICE_UNAVAILABLE)


def start_metrics_listener(bind: str, metrics: Metrics):
    """Serve ``/metrics`` without authentication on ``bind`` ("host:port"); returns a
    callable that stops it."""
    host, _, port = bind.rpartition(":")
    server, thread = start_http_server(int(port), addr=host.strip("[]") or "127.0.0.1", registry=metrics.registry)

    def stop() -> None:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)

    return stop
