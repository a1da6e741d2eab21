"""A bug answered 500: our error body with the request id, and one log line (JSON here) with
that id and the traceback; an expected 503 one line with its reason. The app is built from the real parts: the request middleware,
the exception handlers and the after-exception logger of ``web.app``."""

from __future__ import annotations

import io
import json
import logging

from litestar import Litestar, get
from litestar.testing import TestClient

from appliance.errors import QueryTimeout
from appliance.operations.logs import configure_logging
from appliance.operations.metrics import Metrics
from web.app import _log_server_error
from web.errors import EXCEPTION_HANDLERS
from web.observability import request_context


@get("/api/v1/boom", sync_to_thread=True)
def boom() -> None:
    raise RuntimeError("the unexplained one")


@get("/api/v1/slow", sync_to_thread=True)
def slow() -> None:
    raise QueryTimeout(1.0)


def test_a_500_names_its_request_id_and_its_traceback_is_logged_with_it():
    stream = io.StringIO()
    handler = configure_logging("json", "info", stream=stream)
    metrics = Metrics()
    app = Litestar(route_handlers=[boom, slow], exception_handlers=EXCEPTION_HANDLERS,
                   after_exception=[_log_server_error], middleware=[request_context(metrics)],
                   logging_config=None, debug=False)
    try:
        with TestClient(app, raise_server_exceptions=False) as client:
            answer = client.get("/api/v1/boom", headers={"X-Request-ID": "req-500"})
            timed_out = client.get("/api/v1/slow", headers={"X-Request-ID": "req-503"})
    finally:
        logging.getLogger().removeHandler(handler)
    assert answer.status_code == 500
    assert answer.headers["x-request-id"] == "req-500"
    assert answer.json() == {"status": "error", "error": {"field": None, "message": "Internal Server Error",
                                                          "request_id": "req-500"}}
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    errors = [line for line in lines if line["level"] == "ERROR"]
    assert len(errors) == 1, lines
    assert errors[0]["request_id"] == "req-500"
    assert "RuntimeError: the unexplained one" in errors[0]["traceback"]
    assert "GET /api/v1/boom" in errors[0]["message"]
    assert timed_out.status_code == 503 and timed_out.json()["error"]["field"] == "query"
    warnings = [line for line in lines if line["level"] == "WARNING"]
    assert [line["request_id"] for line in warnings] == ["req-503"]
    assert "answered 503 on GET /api/v1/slow" in warnings[0]["message"] and "traceback" not in warnings[0]
    counted = metrics.registry.get_sample_value(
        "footfall_http_request_seconds_count", {"method": "GET", "route": "/api/v1/boom", "status": "5xx"})
    assert counted == 1
