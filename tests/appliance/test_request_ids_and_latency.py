"""Fresh request ids are unique 32-hex-digit tokens; a caller's sensible id is kept; request
latencies are counted per method, route and status class."""

from __future__ import annotations

import re

from appliance.operations.logs import new_request_id
from appliance.operations.metrics import Metrics


def test_fresh_ids_are_unique_hex_and_offered_ones_kept():
    fresh = [new_request_id() for _ in range(1000)] + [new_request_id("a b")]
    assert all(re.fullmatch(r"[0-9a-f]{32}", identifier) for identifier in fresh)
    assert len(set(fresh)) == len(fresh)
    assert new_request_id("trace-42") == "trace-42"


def test_request_latency_is_counted_per_label_set():
    metrics = Metrics()
    for status in (202, 202, 204, 503):
        metrics.observe_request("POST", "/api/v1/events", status, 0.002)
    metrics.observe_request("GET", "/api/v1/events", 405, 0.001)
    count = metrics.registry.get_sample_value
    labels = {"method": "POST", "route": "/api/v1/events"}
    assert count("footfall_http_request_seconds_count", {**labels, "status": "2xx"}) == 3
    assert count("footfall_http_request_seconds_count", {**labels, "status": "5xx"}) == 1
    assert count("footfall_http_request_seconds_count",
                 {"method": "GET", "route": "/api/v1/events", "status": "4xx"}) == 1
