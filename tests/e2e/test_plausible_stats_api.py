"""Plausible's Stats API v1 under /api/plausible/v1: Plausible's parameters and answer shapes,
with the numbers of Footfall's own stats routes and of the traffic actually sent.

Traffic goes in through Plausible's own ingest body (``/api/event``), three visitors told
apart by ``X-Forwarded-For`` from the trusted loopback proxy and their browsers, all on one UTC
day (the site's time zone): every period is asked relative to that day (Plausible's ``date``),
so a run that crosses midnight still asks the traffic's day; were midnight to pass while the
traffic is being sent, it is sent again, to a new site, on the new day.
"""

from __future__ import annotations

import json
import time
import uuid
from datetime import date, timedelta

import httpx
import pytest

from tests.e2e.conftest import utc_today
from tests.servers import start_server

CHROME = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36"
FIREFOX = "Mozilla/5.0 (X11; Linux x86_64; rv:125.0) Gecko/20100101 Firefox/125.0"
# (visitor address, user agent, events: (name, path, referrer))
TRAFFIC = [
    ("5.9.0.1", FIREFOX, [("pageview", "/", "https://www.google.com/"), ("pageview", "/blog/one", ""),
                          ("Signup", "/blog/one", "")]),
    ("5.9.0.2", CHROME, [("pageview", "/blog/two", "https://news.ycombinator.com/")]),
    ("5.9.0.3", CHROME, [("pageview", "/", ""), ("pageview", "/pricing", "")]),
]
# then a custom event with revenue (a conversion to Footfall) from the third visitor
PURCHASE = ("5.9.0.3", CHROME, {"n": "Purchase", "u": "/pricing", "revenue": {"currency": "EUR", "amount": "12.50"}})
SENT = [name for _, _, events in TRAFFIC for name, _, _ in events] + ["Purchase"]
PAGEVIEWS = SENT.count("pageview")
# Plausible's `events`: every event sent (page views, custom events, those with revenue)
EVENTS = len(SENT)


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    handle = start_server(tmp_path_factory.mktemp("plausible-api") / "data", env={"FOOTFALL_SERVER_TRUSTED_PROXIES": "127.0.0.1"})
    yield handle
    handle.stop()


def _site_with_traffic(server) -> str:
    domain = f"stats-{uuid.uuid4().hex[:8]}.test"
    created = httpx.post(f"{server.url}/api/v1/sites", json={"domain": domain, "plausible_site_id": f"old-{domain}"},
                         headers=server.auth())
    assert created.status_code == 201, created.text
    for address, agent, events in TRAFFIC:
        for name, path, referrer in events:
            answer = httpx.post(f"{server.url}/api/event", headers={"user-agent": agent, "x-forwarded-for": address},
                                content=json.dumps({"n": name, "u": f"https://{domain}{path}", "d": domain, "r": referrer or None}))
            assert (answer.status_code, answer.text) == (202, "ok")
    address, agent, body = PURCHASE
    answer = httpx.post(f"{server.url}/api/event", headers={"user-agent": agent, "x-forwarded-for": address},
                        content=json.dumps({**body, "u": f"https://{domain}{body['u']}", "d": domain}))
    assert (answer.status_code, answer.text) == (202, "ok")
    for goal in ({"name": "Pricing", "kind": "page", "page": "/pricing"}, {"name": "Signup", "kind": "event", "event": "Signup"}):
        made = httpx.post(f"{server.url}/api/v1/goals", params={"site": domain}, json=goal, headers=server.auth())
        assert made.status_code == 201, made.text
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:  # committed once the live view has all of them
        live = httpx.get(f"{server.url}/api/v1/live", params={"site": domain, "limit": 100}, headers=server.auth()).json()
        if len(live["data"]) == len(SENT):
            break
        time.sleep(0.05)
    return domain


@pytest.fixture(scope="module")
def sent(server) -> tuple[str, date]:
    """A site with the traffic, and the UTC day the server received all of it on."""
    for _attempt in range(2):  # a second sending cannot cross midnight again
        day = utc_today()
        domain = _site_with_traffic(server)
        if utc_today() == day:
            break
    return domain, day


@pytest.fixture(scope="module")
def site(sent) -> str:
    return sent[0]


@pytest.fixture(scope="module")
def day(sent) -> str:
    return sent[1].isoformat()


def api(server, endpoint: str, **params) -> httpx.Response:
    return httpx.get(f"{server.url}/api/plausible/v1/stats/{endpoint}", params=params, headers=server.auth())


def results(server, endpoint: str, **params):
    answer = api(server, endpoint, **params)
    assert answer.status_code == 200, answer.text
    return answer.json()["results"]


def test_aggregate_matches_what_was_sent_and_footfalls_own_route(server, site, day):
    metrics = "visitors,visits,pageviews,views_per_visit,bounce_rate,visit_duration,events"
    got = results(server, "aggregate", site_id=site, period="day", date=day, metrics=metrics)
    assert list(got) == metrics.split(",") and all(set(entry) == {"value"} for entry in got.values())
    values = {name: entry["value"] for name, entry in got.items()}
    assert (values["visitors"], values["visits"], values["pageviews"], values["events"]) == (3, 3, PAGEVIEWS, EVENTS)
    assert values["views_per_visit"] == round(5 / 3, 2)
    own = httpx.get(f"{server.url}/api/v1/stats/aggregate", params={"site": site, "start_date": day, "end_date": day},
                    headers=server.auth()).json()["data"]
    for name in ("visitors", "visits", "pageviews", "bounce_rate", "visit_duration"):
        assert values[name] == own[name], name
    # Footfall's own `events` keeps its meaning: custom events without revenue (Signup)
    assert own["events"] == SENT.count("Signup") and values["events"] == own["pageviews"] + own["events"] + 1
    # the Plausible site id names the site too; compare=previous_period adds change
    compared = results(server, "aggregate", site_id=f"old-{site}", period="7d", date=day, metrics="visitors", compare="previous_period")
    assert compared == {"visitors": {"value": 3, "change": None}}


def test_filters_and_conversion_rate(server, site, day):
    firefox = results(server, "aggregate", site_id=site, period="day", date=day, metrics="visitors,pageviews", filters="visit:browser==Firefox")
    assert firefox == {"visitors": {"value": 1}, "pageviews": {"value": 2}}
    blog = results(server, "aggregate", site_id=site, period="day", date=day, metrics="pageviews", filters="event:page==/blog*")
    assert blog == {"pageviews": {"value": 2}}
    both = results(server, "aggregate", site_id=site, period="30d", date=day, metrics="visitors",
                   filters="visit:browser==Chrome;event:page==/blog*")
    assert both == {"visitors": {"value": 1}}
    rate = results(server, "aggregate", site_id=site, period="day", date=day, metrics="visitors,conversion_rate", filters="event:name==Signup")
    assert rate == {"visitors": {"value": 1}, "conversion_rate": {"value": round(100 / 3, 1)}}


def test_events_are_all_events_and_under_a_goal_its_total_conversions(server, site, day):
    def events(**params) -> int:
        return results(server, "aggregate", site_id=site, period="day", date=day, metrics="events", **params)["events"]["value"]

    assert events() == EVENTS
    assert events(filters="event:goal==Pricing") == 1  # the page view of /pricing
    assert events(filters="event:goal==Signup") == SENT.count("Signup")
    assert events(filters="event:name==Signup") == SENT.count("Signup")
    assert events(filters="event:name==Purchase") == 1
    assert events(filters="event:page==/blog*") == 3  # two page views and the Signup on /blog/one
    assert events(filters="visit:browser==Chrome") == 4  # 3 page views and the purchase
    # per bucket: the same totals, per day and per hour
    days = results(server, "timeseries", site_id=site, period="7d", date=day, metrics="events")
    assert [row["events"] for row in days] == [0] * 6 + [EVENTS]
    goal_days = results(server, "timeseries", site_id=site, period="7d", date=day, metrics="events", filters="event:goal==Pricing")
    assert [row["events"] for row in goal_days] == [0] * 6 + [1]
    hours = results(server, "timeseries", site_id=site, period="day", date=day, metrics="pageviews,events")
    assert sum(row["pageviews"] for row in hours) == PAGEVIEWS
    assert sum(row["events"] for row in hours) == EVENTS


def test_timeseries(server, site, day):
    rows = results(server, "timeseries", site_id=site, period="7d", date=day, metrics="visitors,pageviews")
    assert len(rows) == 7 and rows[-1] == {"date": day, "visitors": 3, "pageviews": 5}
    assert all(row["visitors"] == 0 for row in rows[:-1])
    first = (date.fromisoformat(day) - timedelta(days=2)).isoformat()
    custom = results(server, "timeseries", site_id=site, period="custom", date=f"{first},{day}")
    assert [row["date"] for row in custom][-1] == day and len(custom) == 3 and custom[-1]["visitors"] == 3
    months = results(server, "timeseries", site_id=site, period="12mo", date=day, interval="month")
    assert len(months) == 12 and months[-1]["visitors"] == 3


def test_breakdowns(server, site, day):
    sources = results(server, "breakdown", site_id=site, period="day", date=day, property="visit:source", metrics="visitors,pageviews")
    assert sorted(sources, key=lambda row: row["source"]) == [
        {"source": "Direct / None", "visitors": 1, "pageviews": 2},
        {"source": "Google", "visitors": 1, "pageviews": 2},
        {"source": "Hacker News", "visitors": 1, "pageviews": 1},
    ]
    pages = results(server, "breakdown", site_id=site, period="day", date=day, property="event:page", limit=2)
    second = results(server, "breakdown", site_id=site, period="day", date=day, property="event:page", limit=2, page=2)
    assert [row["page"] for row in pages] == ["/", "/blog/one"] and pages[0]["visitors"] == 2
    assert [row["page"] for row in second] == ["/blog/two", "/pricing"]
    browsers = results(server, "breakdown", site_id=site, period="day", date=day, property="visit:browser", filters="event:page==/")
    assert sorted((row["browser"], row["visitors"]) for row in browsers) == [("Chrome", 1), ("Firefox", 1)]
    names = results(server, "breakdown", site_id=site, period="day", date=day, property="event:name", metrics="visitors,events")
    assert names == [{"name": "pageview", "visitors": 3, "events": PAGEVIEWS}, {"name": "Purchase", "visitors": 1, "events": 1},
                     {"name": "Signup", "visitors": 1, "events": 1}]
    assert sum(row["events"] for row in names) == EVENTS
    entries = results(server, "breakdown", site_id=site, period="day", date=day, property="visit:entry_page", metrics="visits")
    assert sorted((row["entry_page"], row["visits"]) for row in entries) == [("/", 2), ("/blog/two", 1)]
    # Plausible's `events` in any breakdown: the events of every kind in each group
    page_events = results(server, "breakdown", site_id=site, period="day", date=day, property="event:page", metrics="events")
    assert {row["page"]: row["events"] for row in page_events} == {"/": 2, "/blog/one": 2, "/blog/two": 1, "/pricing": 2}
    source_events = results(server, "breakdown", site_id=site, period="day", date=day, property="visit:source", metrics="visitors,events")
    assert {row["source"]: row["events"] for row in source_events} == {"Google": 3, "Hacker News": 1, "Direct / None": 3}
    entry_events = results(server, "breakdown", site_id=site, period="day", date=day, property="visit:entry_page", metrics="events")
    assert sum(row["events"] for row in entry_events) == EVENTS



def test_goal_breakdown(server, site, day):
    """event:goal: per goal its converting visitors, completions (`events`) and conversion rate
    (converting visitors / all 3 visitors), once the goals' back-fill has counted the traffic."""
    expected = [{"goal": "Pricing", "visitors": 1, "events": 1, "conversion_rate": 33.3},
                {"goal": "Signup", "visitors": 1, "events": SENT.count("Signup"), "conversion_rate": 33.3}]
    deadline = time.monotonic() + 30
    while True:  # the goals were defined after the traffic: their back-fill runs in the background
        goals = results(server, "breakdown", site_id=site, period="day", date=day, property="event:goal",
                        metrics="visitors,events,conversion_rate")
        if goals == expected or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert goals == expected
    filtered = results(server, "breakdown", site_id=site, period="day", date=day, property="event:goal", filters="visit:browser==Chrome")
    assert filtered == [{"goal": "Pricing", "visitors": 1}, {"goal": "Signup", "visitors": 0}]
    refused = api(server, "breakdown", site_id=site, period="day", date=day, property="event:goal", metrics="pageviews")
    assert refused.status_code == 400 and refused.json()["error"]["field"] == "metrics"


@pytest.mark.parametrize(("params", "field"), [
    ({"metrics": "visitors,time_on_page"}, "metrics"),
    ({"period": "forever"}, "period"),
    ({"period": "custom", "date": "2026-01-01"}, "date"),
    ({"period": "custom", "date": "2026-02-01,2026-01-01"}, "date"),
    ({"filters": "visit:city==Berlin"}, "filters"),
    ({"compare": "year_over_year"}, "compare"),
    ({"metrics": "conversion_rate"}, "metrics"),
])
def test_unsupported_parameters_are_400_naming_the_parameter(server, site, params, field):
    answer = api(server, "aggregate", site_id=site, **params)
    assert answer.status_code == 400, answer.text
    assert answer.json()["error"]["field"] == field


def test_realtime_visitors(server, site, day):
    answer = api(server, "realtime/visitors", site_id=site)
    assert answer.status_code == 200 and answer.json() == 3
    # the same routes under a base URL for clients that append /api/v1/stats/... themselves
    same = httpx.get(f"{server.url}/plausible/api/v1/stats/aggregate", params={"site_id": site, "period": "day", "date": day},
                     headers=server.auth())
    assert same.json() == {"results": {"visitors": {"value": 3}}}


def test_breakdown_errors_and_authentication(server, site):
    for params, field in (({"property": "visit:city"}, "property"), ({}, "property"),
                          ({"property": "event:page", "metrics": "exits"}, "metrics")):
        answer = api(server, "breakdown", site_id=site, **params)
        assert answer.status_code == 400 and answer.json()["error"]["field"] == field, answer.text
    anonymous = httpx.get(f"{server.url}/api/plausible/v1/stats/aggregate", params={"site_id": site})
    assert anonymous.status_code in (401, 403)
    unknown = api(server, "aggregate", site_id="nowhere.test")
    assert unknown.status_code == 404
