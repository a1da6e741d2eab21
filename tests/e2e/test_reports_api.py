"""Reports, stats and authentication over HTTP against the real server.

A module fixture sends a known scenario to a private site on the shared server (visitors
told apart by ``user_id``, spread over six weeks with historical timestamps); every expected
number is computed here from the list of events sent. One test starts a server that trusts
the loopback proxy, so visitors can be told apart by (client IP, user agent).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

import pytest

CHROME = (
    "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/124.0.0.0 Safari/537.36"
)
FIREFOX = "Mozilla/5.0 (X11; Linux x86_64; rv:125.0) Gecko/20100101 Firefox/125.0"
SAFARI = (
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) "
    "Version/17.4 Safari/605.1.15"
)
GOOGLE = "https://www.google.com/"
FACEBOOK = "https://www.facebook.com/"
BLOG = "https://someblog.example/post/42"


@dataclass(frozen=True)
class Sent:
    user: str
    day: int  # days after the scenario's first day
    hour: int
    kind: str  # "page_view", "event" or "conversion"
    name: str = ""
    path: str = "/"
    referrer: str = ""
    amount: float | None = None


SCENARIO: tuple[Sent, ...] = (
    Sent("u1", 0, 10, "page_view", path="/", referrer=GOOGLE),
    Sent("u1", 0, 11, "page_view", path="/pricing", referrer=GOOGLE),
    Sent("u2", 1, 9, "page_view", path="/", referrer=FACEBOOK),
    Sent("u2", 1, 9, "conversion", name="purchase", amount=99.99),
    Sent("u3", 8, 14, "page_view", path="/blog", referrer=BLOG),
    Sent("u3", 8, 14, "event", name="download"),
    Sent("u3", 8, 15, "event", name="download"),
    Sent("u4", 8, 15, "page_view", path="/"),
    Sent("u4", 8, 16, "event", name="download"),
    Sent("u5", 35, 8, "page_view", path="/pricing"),
    Sent("u5", 35, 8, "conversion", name="purchase", amount=20),
    Sent("u6", 35, 23, "page_view", path="/"),
    Sent("u6", 35, 23, "event", name="newsletter"),
    Sent("u7", 40, 0, "page_view", path="/docs"),
    Sent("u1", 40, 12, "page_view", path="/", referrer=GOOGLE),
    Sent("u1", 40, 12, "conversion", name="signup"),
)
SPAN = 41  # days the scenario covers


@dataclass(frozen=True)
class Scenario:
    site: str
    first: date

    @property
    def last(self) -> date:
        return self.first + timedelta(days=SPAN - 1)

    def params(self, **extra) -> dict[str, str]:
        return {
            "site": self.site,
            "start_date": self.first.isoformat(),
            "end_date": self.last.isoformat(),
            **extra,
        }

    def day_of(self, sent: Sent) -> date:
        return self.first + timedelta(days=sent.day)


def _recent() -> tuple[str, str]:
    """Today and yesterday: ranges for "now" events start yesterday (safe over midnight)."""
    now = datetime.now(UTC)
    return now.date().isoformat(), (now - timedelta(days=1)).date().isoformat()


def _new_site(server, prefix: str) -> str:
    domain = f"{prefix}-{uuid.uuid4().hex[:10]}.test"
    with server.client() as client:
        response = client.post("/api/v1/sites", json={"domain": domain}, headers=server.auth())
    assert response.status_code == 201, response.text
    return domain


def _body(site: str, moment: datetime, sent: Sent) -> tuple[str, dict]:
    stamp = moment.strftime("%Y-%m-%dT%H:%M:%SZ")
    metadata = {"page_url": f"https://{site}{sent.path}"}
    if sent.referrer:
        metadata["referrer_url"] = sent.referrer
    common = {"user_id": sent.user, "session_id": f"s-{sent.user}", "timestamp": stamp, "site": site}
    if sent.kind == "conversion":
        if sent.amount is not None:
            metadata.update(amount=sent.amount, currency="USD")
        return "/api/v1/conversions", {"conversion_type": sent.name, **common, "metadata": metadata}
    event_type = "page_view" if sent.kind == "page_view" else sent.name
    return "/api/v1/events", {"event_type": event_type, **common, "metadata": metadata}


@pytest.fixture(scope="module")
def client(server):
    with server.client(headers=server.auth()) as http:
        yield http


@pytest.fixture(scope="module")
def scenario(server, client) -> Scenario:
    site = _new_site(server, "reports")
    first = datetime.now(UTC).date() - timedelta(days=60)
    result = Scenario(site=site, first=first)
    for sent in SCENARIO:
        day = result.day_of(sent)
        moment = datetime(day.year, day.month, day.day, sent.hour, 15, tzinfo=UTC)
        path, body = _body(site, moment, sent)
        response = client.post(path, json=body)
        assert response.status_code == 200, response.text
    return result


def _get(client, path: str, params: dict) -> dict:
    response = client.get(path, params=params)
    assert response.status_code == 200, response.text
    answer = response.json()
    assert answer["status"] == "success"
    return answer


def _pick(rows: list[dict], *keys: str) -> list[dict]:
    """The named keys of each row: stats rows may carry more metrics than these tests check."""
    return [{key: row[key] for key in keys} for row in rows]


def _page_views(events=SCENARIO) -> list[Sent]:
    return [sent for sent in events if sent.kind == "page_view"]


def _visitors(events=SCENARIO) -> int:
    return len({sent.user for sent in events})


# -- the seed's traffic report ------------------------------------------------------------
def test_traffic_report_matches_seed_shape_and_numbers(client, scenario):
    answer = _get(client, "/api/v1/reports/traffic", scenario.params())
    assert set(answer) == {"status", "data"}
    data = answer["data"]
    assert set(data) == {"total_visitors", "total_page_views", "traffic_sources", "timeseries", "dimensions"}
    assert data["total_visitors"] == _visitors() == 7
    assert data["total_page_views"] == len(_page_views()) == 9
    # google -> search, facebook -> social, another site -> referral, none -> direct
    assert data["traffic_sources"] == {"direct": 4, "referral": 1, "search": 1, "social": 1}
    assert set(data["dimensions"]) == {
        "page", "source", "channel", "referrer", "browser", "os", "device", "country",
    }
    channels = {row["value"]: row["visitors"] for row in data["dimensions"]["channel"]}
    assert channels == {"Direct": 4, "Organic Search": 1, "Organic Social": 1, "Referral": 1}
    referrers = {row["value"] for row in data["dimensions"]["referrer"]}
    assert {"google.com", "facebook.com", "someblog.example"} <= {r.removeprefix("www.") for r in referrers}
    assert sum(row["pageviews"] for row in data["timeseries"]) == 9
    assert len(data["timeseries"]) == SPAN


def test_traffic_report_period_limits_the_counts(client, scenario):
    # only the first two days: u1 (2 views from google) and u2 (1 view from facebook)
    first_two = {"site": scenario.site, "start_date": scenario.first.isoformat(),
                 "end_date": (scenario.first + timedelta(days=1)).isoformat()}
    data = _get(client, "/api/v1/reports/traffic", first_two)["data"]
    assert data["total_visitors"] == 2
    assert data["total_page_views"] == 3
    assert data["traffic_sources"] == {"direct": 0, "referral": 0, "search": 1, "social": 1}
    # a period with nothing in it
    empty = {"site": scenario.site, "start_date": (scenario.first - timedelta(days=10)).isoformat(),
             "end_date": (scenario.first - timedelta(days=1)).isoformat()}
    data = _get(client, "/api/v1/reports/traffic", empty)["data"]
    assert data["total_visitors"] == 0 and data["total_page_views"] == 0
    assert data["traffic_sources"] == {"direct": 0, "referral": 0, "search": 0, "social": 0}


def test_traffic_report_counts_a_visitor_once_over_the_period(client, scenario):
    # u1 visits on the first and the last day: a union, not a sum of daily visitors
    data = _get(client, "/api/v1/reports/traffic", scenario.params())["data"]
    daily = sum(row["visitors"] for row in data["timeseries"])
    assert daily == 8
    assert data["total_visitors"] == 7


# -- the seed's conversion report -----------------------------------------------------------
def test_conversion_report_matches_seed_shape_and_numbers(client, scenario):
    answer = _get(client, "/api/v1/reports/conversions", scenario.params())
    assert set(answer) == {"status", "data"}
    data = answer["data"]
    assert set(data) == {"total_conversions", "conversion_rate", "conversion_types", "goals"}
    conversions = [sent for sent in SCENARIO if sent.kind == "conversion"]
    assert data["total_conversions"] == len(conversions) == 3
    assert data["conversion_types"] == {"purchase": 2, "signup": 1}
    converting = len({sent.user for sent in conversions})
    assert data["conversion_rate"] == round(converting / _visitors() * 100, 2) == 42.86
    goals = {row["name"]: row for row in data["goals"]}
    assert set(goals) == {"purchase", "signup"}
    assert _pick([goals["purchase"]], "name", "conversions", "visitors", "conversion_rate", "revenue_minor")[0] == {
        "name": "purchase",
        "conversions": 2,
        "visitors": 2,
        "conversion_rate": round(2 / 7 * 100, 2),
        "revenue_minor": {"USD": 9999 + 2000},
    }
    assert goals["signup"]["conversions"] == 1
    assert goals["signup"]["visitors"] == 1
    assert goals["signup"]["conversion_rate"] == 14.29
    assert goals["signup"]["revenue_minor"] == {}
    assert [row["name"] for row in data["goals"]] == ["purchase", "signup"]


def test_conversion_report_of_an_empty_period(client, scenario):
    empty = {"site": scenario.site, "start_date": (scenario.first - timedelta(days=5)).isoformat(),
             "end_date": (scenario.first - timedelta(days=1)).isoformat()}
    data = _get(client, "/api/v1/reports/conversions", empty)["data"]
    assert data == {"total_conversions": 0, "conversion_rate": 0.0, "conversion_types": {}, "goals": []}


# -- time series -------------------------------------------------------------------------------
def _expected_series(scenario: Scenario, interval: str) -> list[dict]:
    def group(day: date) -> date:
        if interval == "week":
            return day - timedelta(days=day.weekday())
        if interval == "month":
            return day.replace(day=1)
        return day

    starts: list[date] = []
    for offset in range(SPAN):
        start = group(scenario.first + timedelta(days=offset))
        if start not in starts:
            starts.append(start)
    rows = []
    for start in starts:
        inside = [sent for sent in SCENARIO if group(scenario.day_of(sent)) == start]
        rows.append({
            "date": start.isoformat(),
            "visitors": len({sent.user for sent in inside}),
            "pageviews": len(_page_views(inside)),
        })
    return rows


@pytest.mark.parametrize("interval", ["day", "week", "month"])
def test_timeseries_by_interval(client, scenario, interval):
    series = _get(client, "/api/v1/stats/timeseries", scenario.params(interval=interval))["data"]
    assert _pick(series, "date", "visitors", "pageviews") == _expected_series(scenario, interval)
    assert sum(row["pageviews"] for row in series) == 9
    # the traffic report carries the same series
    report = _get(client, "/api/v1/reports/traffic", scenario.params(interval=interval))["data"]
    assert report["timeseries"] == series


def test_timeseries_by_hour(client, scenario):
    for offset in (0, 35, 40):
        day = (scenario.first + timedelta(days=offset)).isoformat()
        series = _get(
            client, "/api/v1/stats/timeseries",
            {"site": scenario.site, "start_date": day, "end_date": day, "interval": "hour"},
        )["data"]
        assert len(series) == 24
        assert [row["date"] for row in series] == [f"{day}T{hour:02d}:00:00+00:00" for hour in range(24)]
        expected_views = [0] * 24
        expected_visitors: list[set[str]] = [set() for _ in range(24)]
        for sent in SCENARIO:
            if sent.day == offset:
                expected_visitors[sent.hour].add(sent.user)
                if sent.kind == "page_view":
                    expected_views[sent.hour] += 1
        assert [row["pageviews"] for row in series] == expected_views
        assert [row["visitors"] for row in series] == [len(users) for users in expected_visitors]


def test_bad_report_parameters(client, scenario):
    bad = [
        ({"interval": "year"}, 422, "interval"),
        ({"start_date": scenario.last.isoformat(), "end_date": scenario.first.isoformat()}, 422, "end_date"),
        ({"start_date": "last tuesday"}, 400, "start_date"),
    ]
    for extra, status, field in bad:
        response = client.get("/api/v1/reports/traffic", params={**scenario.params(), **extra})
        assert response.status_code == status, (extra, response.text)
        assert response.json()["status"] == "error"
        assert response.json()["error"]["field"] == field
    unknown = client.get("/api/v1/reports/traffic", params={"site": "never-added.test"})
    assert unknown.status_code == 404
    assert unknown.json()["status"] == "error"


def test_period_names_a_range_as_the_dashboard_does(client, scenario):
    """``period`` (the dashboard's and saved reports' names) up to today; the scenario ended
    20 days ago, so the last 7 days are empty and the last 12 months hold all of it."""
    def visitors(**params) -> int:
        return _get(client, "/api/v1/stats/aggregate", {"site": scenario.site, **params})["data"]["visitors"]

    in_the_last_30_days = len({sent.user for sent in SCENARIO if sent.day >= SPAN - 10})
    assert (visitors(period="7d"), visitors(period="30d"), visitors(period="12mo")) == (0, in_the_last_30_days, 7)
    assert visitors(period="custom", start_date=scenario.first.isoformat(), end_date=scenario.last.isoformat()) == 7
    series = _get(client, "/api/v1/stats/timeseries", {"site": scenario.site, "period": "7d"})["data"]
    assert len(series) == 7
    # relative to another day (Plausible's date): the scenario's last day, and the 30 days to it
    last = scenario.last.isoformat()
    assert visitors(period="day", date=last) == len({sent.user for sent in SCENARIO if sent.day == SPAN - 1})
    assert visitors(period="30d", date=last) == len({sent.user for sent in SCENARIO if sent.day >= SPAN - 30})
    assert visitors(period="custom", date=f"{scenario.first},{last}") == 7


def test_unknown_and_conflicting_parameters_are_refused(client, scenario):
    """A parameter a route does not take is named in a 400, not ignored (a Plausible client's
    ``metrics`` here got the default answer before); so is a period with dates of its own."""
    bad = [
        ("/api/v1/stats/aggregate", {"metrics": "visitors"}, 400, "metrics"),
        ("/api/v1/stats/breakdown", {"property": "page", "with_imported": "true"}, 400, "with_imported"),
        ("/api/v1/stats/breakdown", {"property": "page", "date": "2026-01-01"}, 400, "date"),  # date without period
        ("/api/v1/stats/aggregate", {"period": "day", "date": "yesterday"}, 400, "date"),
        ("/api/v1/reports/traffic", {"period": "7d", "start_date": scenario.first.isoformat()}, 400, "start_date"),
        ("/api/v1/stats/aggregate", {"period": "fortnight"}, 422, "period"),
        ("/api/v1/stats/aggregate", {"period": "custom"}, 422, "start_date"),
    ]
    for path, extra, status, field in bad:
        response = client.get(path, params={"site": scenario.site, **extra})
        assert response.status_code == status, (path, extra, response.text)
        assert response.json()["error"]["field"] == field
    message = client.get("/api/v1/stats/aggregate", params={"site": scenario.site, "metrics": "x"}).json()["error"]["message"]
    assert "compare" in message and "period" in message  # what the route does take
    assert "/api/plausible/v1/stats" in message  # where a Plausible client's metrics= is taken
    every_own = client.get("/api/v1/stats/breakdown", params=scenario.params(property="page", limit="3", format="json"))
    assert every_own.status_code == 200, every_own.text
    busted = client.get("/api/v1/stats/aggregate", params=scenario.params(_="1733443200000"))  # a cache-buster
    assert busted.status_code == 200, busted.text
    assert busted.json() == client.get("/api/v1/stats/aggregate", params=scenario.params()).json()


# -- stats --------------------------------------------------------------------------------------
def test_aggregate(client, scenario):
    data = _get(client, "/api/v1/stats/aggregate", scenario.params())["data"]
    assert {key: data[key] for key in ("visitors", "pageviews", "events", "conversions")} == {
        "visitors": 7,
        "pageviews": 9,
        "events": sum(1 for sent in SCENARIO if sent.kind == "event"),
        "conversions": 3,
    }


def test_breakdown_by_page(client, scenario):
    data = _get(client, "/api/v1/stats/breakdown", scenario.params(property="page"))["data"]
    assert data["dimension"] == "page"
    assert _pick(data["results"], "value", "visitors", "pageviews") == [
        {"value": "/", "visitors": 4, "pageviews": 5},
        {"value": "/pricing", "visitors": 2, "pageviews": 2},
        {"value": "/blog", "visitors": 1, "pageviews": 1},
        {"value": "/docs", "visitors": 1, "pageviews": 1},
    ]
    assert data["rest"] == {"values": 0, "pageviews": 0}
    limited = _get(client, "/api/v1/stats/breakdown", scenario.params(property="page", limit="2"))["data"]
    assert [row["value"] for row in limited["results"]] == ["/", "/pricing"]
    assert limited["rest"] == {"values": 2, "pageviews": 2}


@pytest.mark.parametrize(
    ("prop", "expected"),
    [
        ("browser", {"Chrome": (7, 9)}),
        ("os", {"Linux": (7, 9)}),
        ("channel", {"Direct": (4, 4), "Organic Search": (1, 3), "Organic Social": (1, 1), "Referral": (1, 1)}),
        ("country", {}),  # loopback clients have no country, and an empty value is not a row
    ],
)
def test_breakdown_by_dimension(client, scenario, prop, expected):
    data = _get(client, "/api/v1/stats/breakdown", scenario.params(property=prop))["data"]
    assert {row["value"]: (row["visitors"], row["pageviews"]) for row in data["results"]} == expected


def test_breakdown_unknown_property(client, scenario):
    response = client.get("/api/v1/stats/breakdown", params=scenario.params(property="shoe_size"))
    assert response.status_code == 422
    assert response.json()["error"]["field"] == "property"


def test_custom_events(client, scenario):
    data = _get(client, "/api/v1/stats/events", scenario.params())["data"]
    assert _pick(data, "name", "events", "visitors") == [
        {"name": "download", "events": 3, "visitors": 2},
        {"name": "newsletter", "events": 1, "visitors": 1},
    ]


# -- visitors are (client IP, user agent) pairs --------------------------------------------------
def test_visitors_are_ip_and_user_agent_pairs(own_server):
    handle = own_server(env={"FOOTFALL_SERVER_TRUSTED_PROXIES": "127.0.0.1"})
    site = _new_site(handle, "proxy")
    hits = [
        ("8.8.8.8", CHROME, "/"),
        ("8.8.8.8", CHROME, "/about"),
        ("8.8.8.8", FIREFOX, "/"),
        ("5.9.0.1", CHROME, "/"),
        ("81.2.69.142", SAFARI, "/"),
        # the proxy's own hop on the right is skipped; the client is the right-most other one
        ("1.2.3.4, 5.9.0.1, 127.0.0.1", CHROME, "/again"),
    ]
    with handle.client() as client:
        for forwarded, agent, path in hits:
            response = client.post(
                "/api/v1/events",
                json={"event_type": "page_view", "site": site, "metadata": {"page_url": f"https://{site}{path}"}},
                headers={"user-agent": agent, "x-forwarded-for": forwarded},
            )
            assert response.status_code == 200, response.text
        converted = client.post(
            "/api/v1/conversions",
            json={"conversion_type": "purchase", "site": site},
            headers={"user-agent": SAFARI, "x-forwarded-for": "81.2.69.142"},
        )
        assert converted.status_code == 200, converted.text
        today, yesterday = _recent()
        params = {"site": site, "start_date": yesterday, "end_date": today}
        client.headers.update(handle.auth())
        traffic = _get(client, "/api/v1/reports/traffic", params)["data"]
        assert traffic["total_visitors"] == 4
        assert traffic["total_page_views"] == 6
        assert traffic["traffic_sources"]["direct"] == 4
        conversions = _get(client, "/api/v1/reports/conversions", params)["data"]
        assert conversions["conversion_rate"] == 25.0
        countries = _get(client, "/api/v1/stats/breakdown", {**params, "property": "country"})["data"]
        assert {row["value"]: (row["visitors"], row["pageviews"]) for row in countries["results"]} == {
            "US": (2, 3), "DE": (1, 2), "GB": (1, 1),
        }
        browsers = _get(client, "/api/v1/stats/breakdown", {**params, "property": "browser"})["data"]
        assert {row["value"]: row["visitors"] for row in browsers["results"]} == {
            "Chrome": 2, "Firefox": 1, "Safari": 1,
        }


def test_untrusted_forwarded_for_is_ignored(server):
    site = _new_site(server, "noproxy")
    with server.client() as client:
        for forwarded in ("8.8.8.8", "5.9.0.1", "81.2.69.142"):
            response = client.post(
                "/api/v1/events",
                json={"event_type": "page_view", "site": site, "metadata": {"page_url": f"https://{site}/"}},
                headers={"x-forwarded-for": forwarded},
            )
            assert response.status_code == 200, response.text
        today, yesterday = _recent()
        client.headers.update(server.auth())
        data = _get(client, "/api/v1/stats/aggregate", {"site": site, "start_date": yesterday, "end_date": today})["data"]
    assert data["visitors"] == 1
    assert data["pageviews"] == 3


def test_user_id_makes_a_visitor_per_user(server):
    site = _new_site(server, "userid")
    with server.client() as client:
        for user in ("alice", "bob", "carol", "alice"):
            response = client.post(
                "/api/v1/events",
                json={"event_type": "page_view", "user_id": user, "site": site,
                      "metadata": {"page_url": f"https://{site}/"}},
            )
            assert response.status_code == 200, response.text
        today, yesterday = _recent()
        client.headers.update(server.auth())
        data = _get(client, "/api/v1/stats/aggregate", {"site": site, "start_date": yesterday, "end_date": today})["data"]
    assert data["visitors"] == 3
    assert data["pageviews"] == 4


# -- authentication and roles ----------------------------------------------------------------------
REPORT_PATHS = [
    "/api/v1/reports/traffic",
    "/api/v1/reports/conversions",
    "/api/v1/stats/aggregate",
    "/api/v1/stats/timeseries",
    "/api/v1/stats/breakdown",
    "/api/v1/stats/events",
    "/api/v1/live",
]


@pytest.mark.parametrize("path", REPORT_PATHS)
@pytest.mark.parametrize(
    "authorization", [None, "Bearer ff_not-a-real-token", "Basic YWRtaW46YWRtaW4=", "Bearer"]
)
def test_reports_require_a_valid_token(server, scenario, path, authorization):
    headers = {} if authorization is None else {"authorization": authorization}
    with server.client(headers=headers) as anonymous:
        response = anonymous.get(path, params={"site": scenario.site})
    assert response.status_code == 401, response.text
    assert response.json()["status"] == "error"
    assert response.headers.get("content-type", "").startswith("application/json")


def test_authenticate_with_wrong_password(server):
    with server.client() as client:
        for body in (
            {"username": "admin", "password": "definitely-not-it"},
            {"username": "nobody-here", "password": "definitely-not-it"},
        ):
            response = client.post("/api/v1/authenticate", json=body)
            assert response.status_code == 401, response.text
            answer = response.json()
            assert answer["status"] == "error"
            assert answer["error"]["message"]
            assert "token" not in answer
        malformed = client.post("/api/v1/authenticate", json={"username": "admin"})
        assert malformed.status_code == 400
        assert malformed.json()["status"] == "error"


def test_authenticate_answers_seed_shape(server):
    with server.client() as client:
        response = client.post("/api/v1/authenticate", json={"username": "admin", "password": server.password})
    assert response.status_code == 200, response.text
    answer = response.json()
    assert answer["status"] == "success"
    assert answer["token"].startswith("ff_")


def test_users_are_created_by_admins_only(server, scenario):
    name = f"analyst-{uuid.uuid4().hex[:8]}"
    password = "analyst-password-123"
    with server.client() as client:
        created = client.post(
            "/api/v1/users",
            json={"username": name, "email": f"{name}@example.com", "password": password,
                  "role": "analyst", "sites": [scenario.site]},
            headers=server.auth(),
        )
        assert created.status_code == 201, created.text
        assert created.json()["status"] == "success"
        assert created.json()["user_id"].startswith("user")
        duplicate = client.post(
            "/api/v1/users", json={"username": name, "password": password, "role": "analyst"},
            headers=server.auth(),
        )
        assert duplicate.status_code == 422
        assert duplicate.json()["error"]["field"] == "username"

        login = client.post("/api/v1/authenticate", json={"username": name, "password": password})
        assert login.status_code == 200, login.text
        analyst = {"authorization": f"Bearer {login.json()['token']}"}

        # an analyst reads the sites granted to them...
        report = client.get("/api/v1/reports/traffic", params=scenario.params(), headers=analyst)
        assert report.status_code == 200, report.text
        assert report.json()["data"]["total_visitors"] == 7
        # ...but not other sites
        other = client.get("/api/v1/reports/traffic", params={"site": "localhost"}, headers=analyst)
        assert other.status_code == 403
        assert other.json()["status"] == "error"
        # and cannot create users
        forbidden = client.post(
            "/api/v1/users",
            json={"username": f"x-{uuid.uuid4().hex[:8]}", "password": password, "role": "admin"},
            headers=analyst,
        )
        assert forbidden.status_code == 403, forbidden.text
        assert forbidden.json()["status"] == "error"
        anonymous = client.post(
            "/api/v1/users", json={"username": f"y-{uuid.uuid4().hex[:8]}", "password": password}
        )
        assert anonymous.status_code == 401
        # the analyst did not get created twice nor did the refused users appear
        listed = client.get("/api/v1/users", headers=server.auth()).json()["data"]
        names = [user["username"] for user in listed]
        assert names.count(name) == 1
        assert not any(n.startswith(("x-", "y-")) for n in names)


def test_create_user_validates_fields(server):
    with server.client(headers=server.auth()) as client:
        for body, field in (
            ({"username": "ok-name", "password": "short", "role": "viewer"}, "password"),
            ({"username": "bad name!", "password": "long-enough-pass", "role": "viewer"}, "username"),
            ({"username": f"r-{uuid.uuid4().hex[:6]}", "password": "long-enough-pass", "role": "owner"}, "role"),
        ):
            response = client.post("/api/v1/users", json=body)
            assert response.status_code == 422, response.text
            assert response.json()["error"]["field"] == field


# -- the API description ----------------------------------------------------------------------------
def test_openapi_lists_the_seed_endpoints(server):
    with server.client() as client:
        response = client.get("/schema/openapi.json")
    assert response.status_code == 200, response.text
    paths = response.json()["paths"]
    for path, method in (
        ("/api/v1/events", "post"),
        ("/api/v1/conversions", "post"),
        ("/api/v1/reports/traffic", "get"),
        ("/api/v1/reports/conversions", "get"),
        ("/api/v1/users", "post"),
        ("/api/v1/authenticate", "post"),
    ):
        assert path in paths, path
        assert method in paths[path], (path, sorted(paths[path]))
