"""Filters, goals, funnels and segments over HTTP against the real server.

A module fixture sends visits with known paths and events to a private site (visitors told
apart by ``user_id``), two days ago; then defines goals (back-filled from the log), funnels and
segments through the API. Every expected number is worked out by hand in the comments next
to the scenario.
"""

from __future__ import annotations

import time
import uuid
from datetime import UTC, datetime, timedelta

import pytest

# (user, minute after the base time, kind, value, extra metadata)
#   kind "view": value is the path; "event": value is the event name; "buy": conversion "purchase"
VISITS = [
    ("a", 0, "view", "/", {}), ("a", 1, "view", "/pricing", {}), ("a", 2, "event", "signup", {"plan": "pro"}),
    ("a", 3, "buy", "purchase", {"amount": 49.99, "currency": "USD"}),                    # all four steps
    ("b", 0, "view", "/", {}), ("b", 1, "view", "/pricing", {}),                           # steps 1-2
    ("c", 0, "view", "/pricing", {}), ("c", 1, "view", "/", {}), ("c", 2, "event", "signup", {}),  # out of order: 1
    ("d", 0, "view", "/", {}), ("d", 1, "event", "signup", {}),
    ("d", 2, "buy", "purchase", {"amount": 20, "currency": "USD"}),                      # skips /pricing: 1
    ("e", 0, "view", "/", {}), ("e", 1, "view", "/pricing", {}), ("e", 2, "view", "/", {}),
    ("e", 3, "view", "/pricing", {}), ("e", 4, "event", "signup", {"plan": "free"}),    # repeated steps: 1-3
    ("f", 0, "view", "/blog", {}),                                                       # never enters
    ("g", 0, "view", "/", {}), ("g", 1, "view", "/pricing", {}),
    ("g", 41, "event", "signup", {"plan": "pro"}),                  # a second visit (gap > 30 min): 1-2 per visit
    ("h", 0, "view", "/", {}), ("h", 1, "view", "/pricing", {}), ("h", 2, "event", "signup", {"plan": "pro"}),
    ("h", 3, "buy", "purchase", {"amount": 10, "currency": "EUR"}),                      # all four steps
    ("i", 0, "view", "/", {}), ("i", 1, "view", "/blog", {}), ("i", 2, "view", "/pricing", {}),  # not "directly"
]
FUNNEL = [
    {"kind": "page", "value": "/"},
    {"kind": "page", "value": "/pricing"},
    {"kind": "event", "value": "signup"},
    {"kind": "event", "value": "purchase"},
]


@pytest.fixture(scope="module")
def scenario(server):
    site = f"funnels-{uuid.uuid4().hex[:10]}.test"
    base = (datetime.now(UTC) - timedelta(days=2)).replace(hour=10, minute=0, second=0, microsecond=0)
    with server.client() as client:
        assert client.post("/api/v1/sites", json={"domain": site}, headers=server.auth()).status_code == 201
        for user, minute, kind, value, extra in VISITS:
            stamp = (base + timedelta(minutes=minute)).strftime("%Y-%m-%dT%H:%M:%SZ")
            common = {"user_id": user, "timestamp": stamp, "site": site}
            if kind == "buy":
                body = {"conversion_type": value, **common, "metadata": {"page_url": f"https://{site}/checkout", **extra}}
                response = client.post("/api/v1/conversions", json=body)
            else:
                page = value if kind == "view" else "/app"
                body = {
                    "event_type": "page_view" if kind == "view" else value,
                    **common,
                    "metadata": {"page_url": f"https://{site}{page}", **extra},
                }
                response = client.post("/api/v1/events", json=body)
            assert response.status_code == 200, response.text
    return {"site": site, "start_date": (base.date() - timedelta(days=1)).isoformat(), "end_date": base.date().isoformat()}


def _get(server, path, **params):
    with server.client() as client:
        response = client.get(path, params=params, headers=server.auth())
    assert response.status_code == 200, response.text
    return response.json()["data"]


def _post(server, path, body, site, headers=None):
    with server.client() as client:
        return client.post(path, params={"site": site}, json=body, headers=headers or server.auth())


def _wait_backfilled(server, site, goal_id):
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        goal = _get(server, f"/api/v1/goals/{goal_id}", site=site)
        if goal["backfill"]["status"] == "complete":
            return goal
        time.sleep(0.1)
    raise AssertionError(f"goal {goal_id} was not back-filled: {goal}")


def test_filters_on_stats_and_reports(server, scenario):
    pricing = _get(server, "/api/v1/stats/aggregate", **scenario, filters="page==/pricing")
    assert pricing["visitors"] == 7  # a b c e g h i
    assert pricing["pageviews"] == 8  # e twice
    assert pricing["visits"] == 7
    json_filter = '[["is", "page", ["/pricing", "/blog"]], ["is_not", "event", ["signup"]]]'
    either = _get(server, "/api/v1/stats/aggregate", **scenario, filters=json_filter)
    assert either["visitors"] == 8 and either["pageviews"] == 10  # + f, + i's /blog
    blog = _get(server, "/api/v1/stats/breakdown", **scenario, property="page", filters="entry_page==/blog")
    assert [(row["value"], row["pageviews"], row["visits"]) for row in blog["results"]] == [("/blog", 1, 1)]
    wildcard = _get(server, "/api/v1/stats/aggregate", **scenario, filters="page==/pri*")
    assert wildcard["visitors"] == 7
    events = _get(server, "/api/v1/stats/events", **scenario, filters="prop:plan==pro")
    assert events == [{"name": "signup", "events": 3, "visitors": 3}]  # a g h
    traffic = _get(server, "/api/v1/reports/traffic", **scenario, filters="page~blog")
    assert traffic["total_visitors"] == 2 and traffic["total_page_views"] == 2
    conversions = _get(server, "/api/v1/reports/conversions", **scenario, filters="event==purchase")
    assert conversions["total_conversions"] == 3 and conversions["conversion_types"] == {"purchase": 3}
    with server.client() as client:
        bad = client.get("/api/v1/stats/aggregate", params={**scenario, "filters": "planet==mars"}, headers=server.auth())
    assert bad.status_code == 422 and bad.json()["error"]["field"] == "filters"


def test_goals_back_filled_with_conversion_rates_and_revenue(server, scenario):
    site = scenario["site"]
    made = {}
    for body in (
        {"name": "Pricing", "kind": "page", "page": "/pricing"},
        {"name": "Purchase", "kind": "conversion", "event": "purchase"},
        {"name": "Pro signup", "kind": "event", "event": "signup", "prop_key": "plan", "prop_value": "pro"},
    ):
        response = _post(server, "/api/v1/goals", body, site)
        assert response.status_code == 201, response.text
        made[body["name"]] = response.json()["data"]["id"]
    for goal_id in made.values():
        _wait_backfilled(server, site, goal_id)
    report = _get(server, "/api/v1/reports/conversions", **scenario)
    assert report["total_conversions"] == 3 and report["conversion_types"] == {"purchase": 3}
    rows = {row["name"]: row for row in report["goals"] if "goal_id" in row}
    assert (rows["Pricing"]["conversions"], rows["Pricing"]["visitors"], rows["Pricing"]["conversion_rate"]) == (8, 7, 77.78)
    assert (rows["Purchase"]["visitors"], rows["Purchase"]["conversion_rate"]) == (3, 33.33)
    assert rows["Purchase"]["revenue"] == {
        "USD": {"total_minor": 6999, "average_minor": 3500, "conversions": 2},
        "EUR": {"total_minor": 1000, "average_minor": 1000, "conversions": 1},
    }
    assert (rows["Pro signup"]["visitors"], rows["Pro signup"]["conversion_rate"]) == (3, 33.33)
    # the same through the filtered path (exact), and per dimension value
    filtered = _get(server, "/api/v1/reports/conversions", **scenario, filters="goal==Pricing")
    assert {row["name"]: row["visitors"] for row in filtered["goals"] if "goal_id" in row}["Pricing"] == 7
    stats = _get(server, f"/api/v1/goals/{made['Pricing']}/stats", **scenario, property="page")
    by_page = {row["value"]: row for row in stats["breakdown"]["results"]}
    assert (by_page["/"]["visitors"], by_page["/"]["converted_visitors"]) == (8, 7)  # a b c d e g h i; all but d
    assert sum(day["conversions"] for day in stats["timeseries"]) == 8
    # a goal counts at ingest too: a new /pricing view now
    with server.client() as client:
        body = {"event_type": "page_view", "user_id": "z", "site": site, "metadata": {"page_url": f"https://{site}/pricing"}}
        assert client.post("/api/v1/events", json=body).status_code == 200
    today = datetime.now(UTC).date().isoformat()
    now_rows = _get(server, "/api/v1/reports/conversions", site=site, start_date=scenario["start_date"], end_date=today)
    assert {row["name"]: row["conversions"] for row in now_rows["goals"] if "goal_id" in row}["Pricing"] == 9


def test_funnel_steps_dropoffs_and_times(server, scenario):
    site = scenario["site"]
    response = _post(server, "/api/v1/funnels", {"name": "Buy", "steps": FUNNEL}, site)
    assert response.status_code == 201, response.text
    report = _get(server, f"/api/v1/funnels/{response.json()['data']['id']}/report", **scenario)
    steps = report["steps"]
    assert [s["visitors"] for s in steps] == [8, 6, 3, 2]
    assert [s["dropoff"] for s in steps] == [0, 2, 3, 1]
    assert [s["dropoff_rate"] for s in steps] == [0.0, 25.0, 50.0, 33.33]
    assert report["entering_visitors"] == 8 and report["conversion_rate"] == 25.0
    assert steps[1]["median_seconds_from_previous"] == 60.0

    directly = [FUNNEL[0], {**FUNNEL[1], "follows": "directly"}]
    response = _post(server, "/api/v1/funnels", {"name": "Direct", "steps": directly}, site)
    report = _get(server, f"/api/v1/funnels/{response.json()['data']['id']}/report", **scenario)
    assert [s["visitors"] for s in report["steps"]] == [8, 5]  # i went through /blog

    window = {"name": "Across visits", "steps": FUNNEL[:3], "window_seconds": 3600}
    response = _post(server, "/api/v1/funnels", window, site)
    report = _get(server, f"/api/v1/funnels/{response.json()['data']['id']}/report", **scenario)
    assert [s["visitors"] for s in report["steps"]] == [8, 6, 4]  # g signs up 40 minutes later

    segmented = _get(server, f"/api/v1/funnels/{response.json()['data']['id']}/report", **scenario, filters="page==/blog")
    assert [s["visitors"] for s in segmented["steps"]] == [1, 1, 0]  # only i (f never enters)

    too_short = _post(server, "/api/v1/funnels", {"name": "x", "steps": FUNNEL[:1]}, site)
    assert too_short.status_code == 422


def test_segments_membership_comparison_and_privacy(server, scenario):
    site = scenario["site"]
    signed = _post(server, "/api/v1/segments", {"name": "Signed up", "conditions": [{"kind": "did_event", "value": "signup"}]}, site)
    assert signed.status_code == 201, signed.text
    signed_id = signed.json()["data"]["id"]
    through = _get(server, "/api/v1/stats/aggregate", **scenario, filters=f'[["is", "segment", ["{signed_id}"]]]')
    assert through["visitors"] == 6  # a c d e g h (g through its second visit)
    assert through["visits"] == 6

    deep = _post(server, "/api/v1/segments", {"name": "Deep", "conditions": [{"kind": "min_pageviews", "value": "3"}]}, site)
    deep_id = deep.json()["data"]["id"]
    assert _get(server, "/api/v1/stats/aggregate", **scenario, filters=f"segment=={deep_id}")["visitors"] == 2  # e i

    blog = _post(server, "/api/v1/segments", {"name": "Blog", "filters": [["is", "page", ["/blog"]]], "visibility": "private"}, site)
    blog_id = blog.json()["data"]["id"]
    pages = _get(server, "/api/v1/stats/breakdown", **scenario, property="page", filters=f"segment=={blog_id}")
    assert {row["value"]: row["pageviews"] for row in pages["results"]} == {"/blog": 2, "/": 1, "/pricing": 1}

    compared = _get(server, "/api/v1/segments/compare", **scenario, segments=f"{signed_id},everyone")
    assert [(c["segment"], c["results"]["visitors"]) for c in compared] == [(signed_id, 6), ("everyone", 9)]

    # a viewer reads site-wide segments, not someone's private one, and cannot define any
    with server.client() as client:
        username = f"viewer{uuid.uuid4().hex[:6]}"
        created = client.post(
            "/api/v1/users",
            json={"username": username, "password": "a long password 1", "role": "viewer", "sites": [site]},
            headers=server.auth(),
        )
        assert created.status_code == 201, created.text
        token = client.post("/api/v1/authenticate", json={"username": username, "password": "a long password 1"}).json()["token"]
        viewer = {"Authorization": f"Bearer {token}"}
        listed = client.get("/api/v1/segments", params={"site": site}, headers=viewer).json()["data"]
        assert {s["id"] for s in listed} == {signed_id, deep_id}
        assert client.get(f"/api/v1/segments/{blog_id}", params={"site": site}, headers=viewer).status_code == 404
        hidden = client.get("/api/v1/stats/aggregate", params={**scenario, "filters": f"segment=={blog_id}"}, headers=viewer)
        assert hidden.status_code == 404
        refused = client.post("/api/v1/segments", params={"site": site}, json={"name": "x", "conditions": []}, headers=viewer)
        assert refused.status_code == 403
        assert client.post("/api/v1/goals", params={"site": site}, json={"name": "x", "kind": "page", "page": "/"}, headers=viewer).status_code == 403


def test_definitions_are_in_the_openapi_schema(server):
    with server.client() as client:
        paths = client.get("/schema/openapi.json").json()["paths"]
    for path in ("/api/v1/goals", "/api/v1/funnels/{funnel_id}/report", "/api/v1/segments/compare"):
        assert path in paths, sorted(paths)
    parameters = {p["name"] for p in paths["/api/v1/stats/aggregate"]["get"]["parameters"]}
    assert "filters" in parameters


def test_materialised_segment_reports_progress_and_equals_the_scan(server, scenario):
    site = scenario["site"]
    definition = {"conditions": [{"kind": "did_event", "value": "signup"}]}
    kept = _post(server, "/api/v1/segments", {"name": "Signed up (kept)", "materialised": True, **definition}, site)
    assert kept.status_code == 201, kept.text
    kept_id = kept.json()["data"]["id"]
    assert kept.json()["data"]["materialisation"]["status"] in ("queued", "running", "complete")
    deadline = time.monotonic() + 60
    while (state := _get(server, f"/api/v1/segments/{kept_id}", site=site)["materialisation"])["status"] != "complete":
        assert time.monotonic() < deadline, state
        time.sleep(0.1)
    plain = _post(server, "/api/v1/segments", {"name": "Signed up (scan)", **definition}, site).json()["data"]["id"]
    through_kept = _get(server, "/api/v1/stats/aggregate", **scenario, filters=f"segment=={kept_id}")
    through_scan = _get(server, "/api/v1/stats/aggregate", **scenario, filters=f"segment=={plain}")
    assert through_kept == through_scan
    assert through_kept["visitors"] == 6  # a c d e g h
    series = {
        segment: _get(server, "/api/v1/stats/timeseries", **scenario, filters=f"segment=={segment}")
        for segment in (kept_id, plain)
    }
    assert series[kept_id] == series[plain]
    refused = _post(
        server, "/api/v1/segments",
        {"name": "x", "materialised": True, "conditions": [{"kind": "visitor_type", "value": "new"}]}, site,
    )
    assert refused.status_code == 422 and refused.json()["error"]["field"] == "materialised"
