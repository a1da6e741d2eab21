"""Metrics, liveness, readiness and request ids on a real server (JSON logs, a separate metrics
listener): ``/metrics`` is Prometheus text that prometheus-client's own parser reads, and its
figures follow what the test sent."""

from __future__ import annotations

import json
import re

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.e2e.conftest import utc_days_since, utc_today
from tests.servers import BROWSER_UA, free_port, start_server


@pytest.fixture(scope="module")
def observed(tmp_path_factory):
    metrics_port = free_port()
    handle = start_server(tmp_path_factory.mktemp("observed") / "data", env={
        "FOOTFALL_OBSERVABILITY_LOG_FORMAT": "json",
        "FOOTFALL_OBSERVABILITY_METRICS_BIND": f"127.0.0.1:{metrics_port}",
    })
    yield handle, metrics_port
    handle.kill()


def samples(text: str) -> dict[tuple[str, tuple], float]:
    found = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return found


def scrape(handle) -> dict[tuple[str, tuple], float]:
    answer = httpx.get(f"{handle.url}/metrics", headers=handle.auth())
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-type"].startswith("text/plain")
    return samples(answer.text)


def test_metrics_follow_ingest_and_queries(observed):
    handle, metrics_port = observed
    before = scrape(handle)
    accepted_before = before[("footfall_ingest_events_accepted_total", ())]
    first_day = utc_today()  # before sending: the stats read below covers the page views' day
    with httpx.Client(base_url=handle.url, headers={"user-agent": BROWSER_UA}) as client:
        batch = [{"event_type": "page_view", "site": "localhost", "session_id": f"m{n}",
                  "metadata": {"page_url": f"http://localhost/m{n}"}} for n in range(7)]
        assert client.post("/api/v1/events", json=batch).status_code == 200
        ignored = client.post("/api/v1/events", headers={"user-agent": "curl/8.0"}, json=batch[0])
        assert ignored.status_code == 202
        reason = ignored.headers["x-footfall-ignored"]
        stats = client.get("/api/v1/stats/aggregate", params={"site": "localhost", **utc_days_since(first_day)},
                           headers=handle.auth())
        assert stats.status_code == 200, stats.text
    after = scrape(handle)
    assert after[("footfall_ingest_events_accepted_total", ())] == accepted_before + 7
    assert after[("footfall_ingest_events_ignored_total", (("reason", reason),))] >= 1
    assert after[("footfall_commit_seconds_count", ())] >= 1
    assert after[("footfall_commit_batch_events_sum", ())] >= 7
    route = (("method", "GET"), ("route", "/api/v1/stats/aggregate"), ("status", "2xx"))
    assert after[("footfall_http_request_seconds_count", route)] >= 1
    assert after[("footfall_open_visits", ())] >= 1  # one visitor (one address and browser)
    assert after[("footfall_live_buffer_events", ())] >= 7
    assert after[("footfall_lmdb_map_used_bytes", ())] > 0
    assert 0 < after[("footfall_lmdb_map_used_ratio", ())] < 1
    assert ("footfall_aggregation_lag_seconds", ()) in after and ("footfall_string_table_entries", ()) in after
    # the budgeted caches: the stats read folded the page views into sketches, written back
    assert after[("footfall_sketch_cache_entries", ())] >= 1 and after[("footfall_sketch_cache_bytes", ())] > 0
    assert ("footfall_column_cache_bytes", ()) in after
    assert ("footfall_report_memo_answers_total", (("result", "kept"),)) in after
    assert ("footfall_report_memo_bytes", ()) in after
    # the separate listener: the same registry, no credential
    separate = httpx.get(f"http://127.0.0.1:{metrics_port}/metrics")
    assert separate.status_code == 200
    assert samples(separate.text)[("footfall_ingest_events_accepted_total", ())] == accepted_before + 7


def test_metrics_are_for_admins_only(observed):
    handle, _ = observed
    assert httpx.get(f"{handle.url}/metrics").status_code == 401


def test_liveness_and_readiness_are_separate_and_public(observed):
    handle, _ = observed
    live = httpx.get(f"{handle.url}/api/v1/health/live")
    assert live.status_code == 200 and live.json() == {"status": "alive"}
    ready = httpx.get(f"{handle.url}/ready")
    assert ready.status_code == 200
    assert ready.json() == {"status": "ok", "checks": {"storage_writable": "ok", "last_commit": "ok"},
                            "last_error": None}


def test_request_ids_in_and_out_and_in_json_log_lines(observed):
    handle, _ = observed
    given = httpx.get(f"{handle.url}/api/v1/stats/aggregate", headers={"X-Request-ID": "trace-42"})
    assert given.status_code == 401 and given.headers["x-request-id"] == "trace-42"
    made = httpx.get(f"{handle.url}/api/v1/health/live")
    assert re.fullmatch(r"[0-9a-f]{32}", made.headers["x-request-id"])
    hostile = httpx.get(f"{handle.url}/api/v1/health/live", headers={"X-Request-ID": "a b\tc"})
    assert re.fullmatch(r"[0-9a-f]{32}", hostile.headers["x-request-id"])  # not echoed into logs
    ingest = httpx.post(f"{handle.url}/api/v1/events", json={}, headers={"X-Request-ID": "ingest-7"})
    assert ingest.headers["x-request-id"] == "ingest-7"
    # JSON log lines: every line our loggers write to the server log parses
    lines = [line for line in handle.log().splitlines() if line.startswith('{"time"')]
    assert lines, handle.log()
    assert all({"time", "level", "logger", "message", "request_id"} <= set(json.loads(line)) for line in lines)
