"""Visit properties over HTTP (issue 12, points 1 and 4), against a real server.

Source, referrer, channel and UTM tags are properties of the *visit*, set by its first event:
a server-side caller sends the referrer only with a visit's first page view, and the later
page views of the visit still come from that source. The entry page is the visit's first
page view (or, without any page view, the page of its first event); the exit page likewise
its last. Visitors are told apart by ``user_id``, visits by ``session_id``; every timestamp
lies in the past hour, so the data is today's (counters, and scans of the event log).
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest

GOOGLE = "https://www.google.com/"
FACEBOOK = "https://www.facebook.com/"
BLOG = "https://someblog.example/post/42"
# (referrer of the first page view, visitors)
ORIGINS = (("", 20), (GOOGLE, 20), (FACEBOOK, 10), (BLOG, 10))
VIEWS_PER_VISIT = 5


@pytest.fixture(scope="module")
def client(server):
    with server.client(headers=server.auth()) as http:
        yield http


def _site(client, prefix: str) -> str:
    domain = f"{prefix}-{uuid.uuid4().hex[:10]}.test"
    response = client.post("/api/v1/sites", json={"domain": domain})
    assert response.status_code == 201, response.text
    return domain


def _send(client, path: str, body: dict) -> None:
    response = client.post(path, json=body)
    assert response.status_code == 200, response.text


def _stamp(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _params(site: str, **extra) -> dict[str, str]:
    now = datetime.now(UTC)
    return {
        "site": site,
        "start_date": (now - timedelta(days=1)).date().isoformat(),
        "end_date": now.date().isoformat(),
        **extra,
    }


def _get(client, path: str, params: dict) -> dict:
    response = client.get(path, params=params)
    assert response.status_code == 200, response.text
    return response.json()["data"]


@pytest.fixture(scope="module")
def sources_site(client) -> str:
    """60 visits of 5 page views; the referrer only on each visit's first page view."""
    site = _site(client, "sources")
    start = datetime.now(UTC) - timedelta(minutes=50)
    visitor = 0
    for referrer, visitors in ORIGINS:
        for _ in range(visitors):
            visitor += 1
            first = start + timedelta(seconds=visitor * 7)
            for view in range(VIEWS_PER_VISIT):
                metadata = {"page_url": f"https://{site}/page-{view}"}
                if view == 0 and referrer:
                    metadata["referrer_url"] = referrer
                body = {
                    "event_type": "page_view",
                    "user_id": f"v{visitor}",
                    "session_id": f"s{visitor}",
                    "timestamp": _stamp(first + timedelta(minutes=view)),
                    "site": site,
                    "metadata": metadata,
                }
                _send(client, "/api/v1/events", body)
    return site


def test_traffic_sources_count_each_visitor_once(client, sources_site):
    data = _get(client, "/api/v1/reports/traffic", _params(sources_site))
    assert data["total_visitors"] == 60
    assert data["total_page_views"] == 300
    assert data["traffic_sources"] == {"direct": 20, "search": 20, "social": 10, "referral": 10}


def test_source_breakdown_adds_up_to_the_visitors(client, sources_site):
    for filters in (None, "page==/*"):  # the counted path, then the scan path
        params = _params(sources_site, property="source", limit="20")
        if filters:
            params["filters"] = filters
        rows = {row["value"]: row for row in _get(client, "/api/v1/stats/breakdown", params)["results"]}
        assert {value: row["visitors"] for value, row in rows.items()} == {"": 20, "Google": 20, "Facebook": 10, "someblog.example": 10}, filters
        assert {value: row["pageviews"] for value, row in rows.items()} == {"": 100, "Google": 100, "Facebook": 50, "someblog.example": 50}, filters
        # (the "" row, direct traffic, has no visit counts: an empty entry value is no visit row)
        assert {value: row["visits"] for value, row in rows.items() if value} == {"Google": 20, "Facebook": 10, "someblog.example": 10}, filters


@pytest.mark.parametrize(
    ("filters", "visitors"),
    [("source==Google", 20), ("channel==Organic Social", 10), ("referrer==someblog.example", 10), ("source==", 20)],
)
def test_a_source_filter_selects_whole_visits(client, sources_site, filters, visitors):
    data = _get(client, "/api/v1/stats/aggregate", _params(sources_site, filters=filters))
    assert data["visitors"] == visitors
    assert data["visits"] == visitors
    assert data["pageviews"] == visitors * VIEWS_PER_VISIT
    assert data["views_per_visit"] == VIEWS_PER_VISIT
    traffic = _get(client, "/api/v1/reports/traffic", _params(sources_site, filters=filters))
    assert sum(traffic["traffic_sources"].values()) == visitors


def test_a_later_referrer_does_not_change_the_visit(client):
    """A new external referrer inside an open visit neither starts a visit nor moves it."""
    site = _site(client, "later")
    start = datetime.now(UTC) - timedelta(minutes=40)
    for view, referrer in enumerate((GOOGLE, "", FACEBOOK, "")):
        metadata = {"page_url": f"https://{site}/p{view}"}
        if referrer:
            metadata["referrer_url"] = referrer
        _send(client, "/api/v1/events", {
            "event_type": "page_view", "user_id": "one", "session_id": "only", "site": site,
            "timestamp": _stamp(start + timedelta(minutes=view)), "metadata": metadata,
        })
    data = _get(client, "/api/v1/stats/aggregate", _params(site))
    assert (data["visits"], data["pageviews"]) == (1, 4)
    for filters in (None, "page==/*"):
        params = _params(site, property="source")
        if filters:
            params["filters"] = filters
        rows = _get(client, "/api/v1/stats/breakdown", params)["results"]
        assert [(row["value"], row["pageviews"], row["visits"]) for row in rows] == [("Google", 4, 1)], filters
    social = _get(client, "/api/v1/stats/aggregate", _params(site, filters="source==Facebook"))
    assert (social["visits"], social["pageviews"]) == (0, 0)


@pytest.fixture(scope="module")
def entry_site(client) -> str:
    """36 visits: 34 start with a page view of /pricing; one with a click on /pricing logged
    two seconds before its page view arrives; one is a server-side conversion alone. Every
    visit with page views ends on /docs."""
    site = _site(client, "entry")
    start = datetime.now(UTC) - timedelta(minutes=45)

    def event(visit: int, seconds: float, path: str, kind: str = "page_view") -> None:
        common = {"user_id": f"v{visit}", "session_id": f"s{visit}", "site": site,
                  "timestamp": _stamp(start + timedelta(seconds=visit * 11 + seconds))}
        metadata = {"page_url": f"https://{site}{path}"}
        if kind == "conversion":
            _send(client, "/api/v1/conversions", {"conversion_type": "purchase", **common, "metadata": metadata})
        else:
            _send(client, "/api/v1/events", {"event_type": kind, **common, "metadata": metadata})

    for visit in range(34):
        event(visit, 0, "/pricing")
        event(visit, 60, "/docs")
    event(34, 0, "/pricing", "Click")
    event(34, 2, "/pricing")
    event(34, 60, "/docs")
    event(35, 0, "/pricing", "conversion")
    return site


def test_entry_page_of_a_visit_that_starts_without_a_page_view(client, entry_site):
    for filters in (None, "event==*"):  # the counted path, then the scan path
        params = _params(entry_site, limit="20")
        if filters:
            params["filters"] = filters
        entries = {row["value"]: row["visits"] for row in _get(client, "/api/v1/stats/entry-pages", params)}
        assert entries == {"/pricing": 36}, filters
        exits = {row["value"]: row["exits"] for row in _get(client, "/api/v1/stats/exit-pages", params)}
        assert exits == {"/docs": 35, "/pricing": 1}, filters
    pricing = _get(client, "/api/v1/stats/aggregate", _params(entry_site, filters="entry_page==/pricing"))
    assert pricing["visits"] == 36


def test_an_entry_page_segment_keeps_every_visit(client, entry_site):
    response = client.post(
        "/api/v1/segments", params={"site": entry_site},
        json={"name": "Pricing entries", "filters": [["is", "entry_page", ["/pricing"]]]},
    )
    assert response.status_code == 201, response.text
    segment = response.json()["data"]["id"]
    data = _get(client, "/api/v1/stats/aggregate", _params(entry_site, filters=f"segment=={segment}"))
    assert data["visits"] == 36


def test_the_tracker_path_keeps_the_visits_source(server, client):
    """The tracker sends document.referrer with every page view: internal after the first.
    New UTM tags inside the open visit do not change its source either."""
    site = _site(client, "tracker")
    pages = (
        ("/", "https://www.google.com/"),
        ("/a", f"https://{site}/"),
        ("/b?utm_source=newsletter&utm_medium=email", f"https://{site}/a"),
    )
    with server.client() as tracker:
        for page, referrer in pages:
            body = f'{{"k":"pageview","s":"{site}","u":"https://{site}{page}","r":"{referrer}"}}'
            response = tracker.post("/api/v1/collect", content=body, headers={"content-type": "text/plain"})
            assert response.status_code == 202, response.text
    for filters in (None, "page==/*"):
        params = _params(site)
        if filters:
            params["filters"] = filters
        traffic = _get(client, "/api/v1/reports/traffic", params)
        assert traffic["traffic_sources"] == {"direct": 0, "referral": 0, "search": 1, "social": 0}, filters
        sources = [(row["value"], row["pageviews"], row["visits"]) for row in traffic["dimensions"]["source"]]
        assert sources == [("Google", 3, 1)], filters
        utm = _get(client, "/api/v1/stats/breakdown", {**params, "property": "utm_source"})["results"]
        assert utm == [], filters
