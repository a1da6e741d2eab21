"""The served app's front door (web.ingest_dispatch): exact ingest paths go to their raw
handlers inside the app-wide middleware (request id, latency per route), a handler's bug is
answered 500 like Litestar answers it, everything else reaches the Litestar app. The real
ingest handlers behind it are exercised by the e2e tests (``footfall serve`` uses it)."""

from __future__ import annotations

import io
import json
import logging

import pytest
from litestar import Litestar, get
from litestar.handlers import asgi
from litestar.testing import TestClient
from litestar.types import Receive, Scope, Send

from appliance.operations.logs import configure_logging
from appliance.operations.metrics import Metrics
from web.ingest_dispatch import IngestFrontDoor
from web.observability import request_context

SEEN: list[str] = []


async def _accept(scope: Scope, receive: Receive, send: Send) -> None:
    SEEN.append(scope["path"])
    await send({"type": "http.response.start", "status": 202, "headers": []})
    await send({"type": "http.response.body", "body": b""})


async def _broken(scope: Scope, receive: Receive, send: Send) -> None:
    raise RuntimeError("a bug in the handler")


@get("/api/v1/other", sync_to_thread=False)
def other() -> dict[str, str]:
    return {"through": "litestar"}


def _app(metrics: Metrics, **extra) -> Litestar:
    handlers = [
        asgi("/api/v1/events", name="ingest_events", copy_scope=False)(_accept),
        asgi("/api/v1/conversions", name="ingest_conversions", copy_scope=False)(_broken),
        asgi("/api/v1/collect", name="ingest_collect", copy_scope=False)(_accept),
        other,
    ]
    return Litestar(route_handlers=handlers, middleware=[request_context(metrics)], logging_config=None, **extra)


def test_ingest_paths_skip_the_router_inside_the_app_wide_middleware():
    metrics = Metrics()
    door = IngestFrontDoor(_app(metrics))
    assert sorted(door.routes) == ["/api/v1/collect", "/api/v1/conversions", "/api/v1/events"]
    SEEN.clear()
    with TestClient(door) as client:
        answer = client.post("/api/v1/events", content=b"{}", headers={"X-Request-ID": "door-1"})
        assert answer.status_code == 202 and answer.headers["x-request-id"] == "door-1"
        assert client.post("/api/v1/collect", content=b"{}").status_code == 202
        assert client.get("/api/v1/other").json() == {"through": "litestar"}
        assert client.post("/api/v1/events/", content=b"{}").status_code == 202  # not exact: the router's
    assert SEEN == ["/api/v1/events", "/api/v1/collect", "/api/v1/events"]
    counted = metrics.registry.get_sample_value(
        "footfall_http_request_seconds_count", {"method": "POST", "route": "/api/v1/events", "status": "2xx"})
    assert counted == 2  # the front door's request and the router's


def test_a_handler_bug_is_logged_and_answered_500_with_the_request_id():
    stream = io.StringIO()
    handler = configure_logging("json", "info", stream=stream)
    metrics = Metrics()
    try:
        with TestClient(IngestFrontDoor(_app(metrics))) as client:
            answer = client.post("/api/v1/conversions", content=b"{}", headers={"X-Request-ID": "door-500"})
    finally:
        logging.getLogger().removeHandler(handler)
    assert answer.status_code == 500 and answer.headers["x-request-id"] == "door-500"
    assert answer.json() == {"status": "error", "error": {"field": None, "message": "Internal Server Error",
                                                          "request_id": "door-500"}}
    errors = [line for line in map(json.loads, stream.getvalue().splitlines()) if line["level"] == "ERROR"]
    assert len(errors) == 1 and errors[0]["request_id"] == "door-500"
    assert "RuntimeError: a bug in the handler" in errors[0]["traceback"]
    assert metrics.registry.get_sample_value(
        "footfall_http_request_seconds_count", {"method": "POST", "route": "/api/v1/conversions", "status": "5xx"}) == 1


def test_an_app_without_the_ingest_routes_is_refused():
    with pytest.raises(RuntimeError, match="ingest routes not found"):
        IngestFrontDoor(Litestar(route_handlers=[other]))


def test_the_folds_know_a_tracker_request_is_in_flight_until_it_is_answered():
    # appliance.tracker_first: the folds step aside while the count is above 0
    from appliance.tracker_first import TRACKER_FIRST

    counted: list[int] = []

    async def counting(scope: Scope, receive: Receive, send: Send) -> None:
        counted.append(TRACKER_FIRST.in_flight)
        await _accept(scope, receive, send)

    handlers = [
        asgi("/api/v1/events", name="ingest_events", copy_scope=False)(counting),
        asgi("/api/v1/conversions", name="ingest_conversions", copy_scope=False)(_broken),
        asgi("/api/v1/collect", name="ingest_collect", copy_scope=False)(_accept),
        other,
    ]
    door = IngestFrontDoor(Litestar(route_handlers=handlers, middleware=[request_context(Metrics())], logging_config=None))
    before = TRACKER_FIRST.in_flight
    with TestClient(door) as client:
        assert client.post("/api/v1/events", content=b"{}").status_code == 202
        assert client.post("/api/v1/conversions", content=b"{}").status_code == 500  # a handler's bug
        assert client.get("/api/v1/other").status_code == 200
    assert counted == [before + 1] and TRACKER_FIRST.in_flight == before
