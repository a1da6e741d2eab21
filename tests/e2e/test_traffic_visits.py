"""Scripted visits through the real HTTP path: visits, bounces, durations, entry and exit
pages, channels, devices and countries come out exactly as defined in the README glossary.

The server trusts the loopback proxy, so each scripted visitor is a distinct client address
(``X-Forwarded-For``) and user agent, as real visitors are. Timestamps are historical (two
days ago) so every event lands on a known day regardless of when the test runs.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from tests.e2e.conftest import utc_days_since, utc_today
from tests.servers import start_server

CHROME_WINDOWS = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/124.0.0.0 Safari/537.36"
)
SAFARI_IPHONE = (
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 "
    "(KHTML, like Gecko) Version/17.4 Mobile/15E148 Safari/604.1"
)
FIREFOX_LINUX = "Mozilla/5.0 (X11; Linux x86_64; rv:125.0) Gecko/20100101 Firefox/125.0"

DAY = (datetime.now(UTC) - timedelta(days=2)).replace(hour=12, minute=0, second=0, microsecond=0)

# (visitor, client IP, user agent): the IPs are in blocks the offline database places.
ALICE = ("81.2.69.142", CHROME_WINDOWS)  # GB
BOB = ("8.8.8.8", SAFARI_IPHONE)  # US
CAROL = ("5.9.0.1", FIREFOX_LINUX)  # DE


@pytest.fixture(scope="module")
def proxied(tmp_path_factory):
    handle = start_server(
        tmp_path_factory.mktemp("visits") / "data", env={"FOOTFALL_SERVER_TRUSTED_PROXIES": "127.0.0.1"}
    )
    yield handle
    handle.kill()


def _site(server) -> str:
    domain = f"visits-{uuid.uuid4().hex[:8]}.test"
    response = httpx.post(f"{server.url}/api/v1/sites", json={"domain": domain}, headers=server.auth())
    assert response.status_code == 201, response.text
    return domain


def _view(server, site, who, minutes, path, referrer="", query=""):
    ip, agent = who
    body = {
        "event_type": "page_view",
        "site": site,
        "timestamp": (DAY + timedelta(minutes=minutes)).isoformat(),
        "metadata": {"page_url": f"https://{site}{path}{query}", "referrer_url": referrer},
    }
    response = httpx.post(
        f"{server.url}/api/v1/events", json=body, headers={"user-agent": agent, "x-forwarded-for": ip}
    )
    assert response.status_code == 200, response.text


def _event(server, site, who, minutes, name):
    ip, agent = who
    body = {
        "event_type": name,
        "site": site,
        "timestamp": (DAY + timedelta(minutes=minutes)).isoformat(),
        "metadata": {"page_url": f"https://{site}/"},
    }
    response = httpx.post(
        f"{server.url}/api/v1/events", json=body, headers={"user-agent": agent, "x-forwarded-for": ip}
    )
    assert response.status_code == 200, response.text


def _get(server, path, site, **params):
    day = DAY.date().isoformat()
    response = httpx.get(
        f"{server.url}{path}",
        params={"site": site, "start_date": day, "end_date": day, **params},
        headers=server.auth(),
    )
    assert response.status_code == 200, response.text
    return response.json()["data"]


def test_scripted_visits_give_exact_visit_metrics(proxied):
    site = _site(proxied)
    # Alice: three pages in 10 minutes from Google -> one visit, 600 s, exit /pricing
    _view(proxied, site, ALICE, 0, "/", referrer="https://www.google.com/")
    _view(proxied, site, ALICE, 4, "/features", referrer=f"https://{site}/")
    _view(proxied, site, ALICE, 10, "/pricing", referrer=f"https://{site}/features")
    # Alice again after a 45-minute gap -> a second visit (bounce, 0 s), direct
    _view(proxied, site, ALICE, 55, "/blog")
    # Bob: one page from Facebook, then a custom event -> not a bounce (interactive), 120 s
    _view(proxied, site, BOB, 5, "/blog", referrer="https://www.facebook.com/")
    _event(proxied, site, BOB, 7, "Signup")
    # Carol: a single page from a newsletter campaign -> bounce, channel Email
    _view(proxied, site, CAROL, 20, "/", query="?utm_source=newsletter&utm_medium=email")

    totals = _get(proxied, "/api/v1/stats/aggregate", site)
    assert totals["visitors"] == 3
    assert totals["visits"] == 4
    assert totals["pageviews"] == 6
    assert totals["bounce_rate"] == 50.0  # Alice's second visit and Carol's
    assert totals["visit_duration"] == round((600 + 0 + 120 + 0) / 4)
    assert totals["views_per_visit"] == 1.5

    entry = {row["value"]: row for row in _get(proxied, "/api/v1/stats/entry-pages", site)}
    assert {page: row["visits"] for page, row in entry.items()} == {"/": 2, "/blog": 2}
    assert entry["/"]["bounce_rate"] == 50.0 and entry["/"]["visit_duration"] == 300
    exits = {row["value"]: row for row in _get(proxied, "/api/v1/stats/exit-pages", site)}
    assert {page: row["exits"] for page, row in exits.items()} == {"/pricing": 1, "/blog": 2, "/": 1}
    assert exits["/blog"]["exit_rate"] == 100.0 and exits["/"]["exit_rate"] == 50.0

    channels = {r["value"]: r for r in _get(proxied, "/api/v1/stats/breakdown", site, property="channel")["results"]}
    # the channel is the visit's: Alice's internal navigation stays in her visit from Google
    assert channels["Organic Search"]["visits"] == 1 and channels["Organic Search"]["pageviews"] == 3
    assert channels["Organic Social"]["visits"] == 1 and channels["Organic Social"]["bounce_rate"] == 0.0
    assert channels["Email"]["visits"] == 1 and channels["Email"]["bounce_rate"] == 100.0
    # her second visit is Direct
    assert channels["Direct"]["visits"] == 1
    assert channels["Direct"]["pageviews"] == 1

    devices = {r["value"]: r["visitors"] for r in _get(proxied, "/api/v1/stats/breakdown", site, property="device")["results"]}
    assert devices == {"Desktop": 2, "Mobile": 1}
    browsers = {r["value"]: r["visitors"] for r in _get(proxied, "/api/v1/stats/breakdown", site, property="browser")["results"]}
    assert browsers == {"Chrome": 1, "Safari": 1, "Firefox": 1}
    countries = {r["value"]: r["visitors"] for r in _get(proxied, "/api/v1/stats/breakdown", site, property="country")["results"]}
    assert countries == {"GB": 1, "US": 1, "DE": 1}
    utm = {r["value"] for r in _get(proxied, "/api/v1/stats/breakdown", site, property="utm_source")["results"]}
    assert utm == {"newsletter"}


def test_a_visit_across_midnight_stays_one_visit(proxied):
    site = _site(proxied)
    midnight = DAY.replace(hour=0) + timedelta(days=1)
    minutes_before = (midnight - DAY).total_seconds() / 60
    _view(proxied, site, ALICE, minutes_before - 10, "/late")
    _view(proxied, site, ALICE, minutes_before + 5, "/early")
    first_day = _get(proxied, "/api/v1/stats/aggregate", site)
    # the visit belongs to the day it started on, with both page views' duration
    assert first_day["visits"] == 1
    assert first_day["visit_duration"] == 15 * 60
    assert first_day["bounce_rate"] == 0.0


def test_open_visits_survive_a_restart(tmp_path):
    server = start_server(tmp_path / "data", env={"FOOTFALL_SERVER_TRUSTED_PROXIES": "127.0.0.1"})
    try:
        site = _site(server)
        _view(server, site, BOB, 0, "/a")
        _view(server, site, BOB, 1, "/b")
        server.kill()  # SIGKILL: the open visit was persisted with its batch
        server = start_server(tmp_path / "data", env={"FOOTFALL_SERVER_TRUSTED_PROXIES": "127.0.0.1"}, port=server.port)
        _view(server, site, BOB, 3, "/c")
        totals = _get(server, "/api/v1/stats/aggregate", site)
        assert totals["visits"] == 1
        assert totals["pageviews"] == 3
        assert totals["visit_duration"] == 180
        assert totals["bounce_rate"] == 0.0
        exits = {row["value"]: row["exits"] for row in _get(server, "/api/v1/stats/exit-pages", site)}
        assert exits == {"/c": 1}
    finally:
        server.kill()


def test_time_on_page_from_engagement_pings(proxied):
    site = _site(proxied)
    first_day = utc_today()  # before sending: the server stamps the pings on receipt
    ip, agent = CAROL
    for engaged, depth in ((3000, 40), (5000, 80)):
        response = httpx.post(
            f"{proxied.url}/api/v1/collect",
            content=f'{{"k":"engagement","s":"{site}","u":"https://{site}/read","e":{engaged},"d":{depth}}}',
            headers={"user-agent": agent, "x-forwarded-for": ip, "content-type": "text/plain"},
        )
        assert response.status_code == 202, response.text
    response = httpx.get(
        f"{proxied.url}/api/v1/stats/time-on-page",
        params={"site": site, **utc_days_since(first_day)},
        headers=proxied.auth(),
    )
    rows = response.json()["data"]
    assert rows == [{"value": "/read", "engagements": 2, "time_on_page": 4.0, "scroll_depth": 60}]


def test_new_and_returning_visitors_with_the_opt_in_marker(proxied):
    site = _site(proxied)
    first_day = utc_today()  # before sending: the server stamps the page views on receipt
    for (ip, agent), marker in ((ALICE, 0), (BOB, 1), (CAROL, None)):
        body = f'{{"k":"pageview","s":"{site}","u":"https://{site}/"' + (f',"v":{marker}' if marker is not None else "") + "}"
        response = httpx.post(
            f"{proxied.url}/api/v1/collect",
            content=body,
            headers={"user-agent": agent, "x-forwarded-for": ip, "content-type": "text/plain"},
        )
        assert response.status_code == 202, response.text
    response = httpx.get(
        f"{proxied.url}/api/v1/stats/breakdown",
        params={"site": site, **utc_days_since(first_day), "property": "visitor_type"},
        headers=proxied.auth(),
    )
    rows = {row["value"]: row["visitors"] for row in response.json()["data"]["results"]}
    assert rows == {"New": 1, "Returning": 1}  # Carol's tracker did not opt in: not counted
