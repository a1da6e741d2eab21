"""Ingest over HTTP against the real server: seed bodies, batches, the tracker endpoint, bots,
historical timestamps, CORS, the live view and revenue in minor units.

Every test here writes to one private site on the session-shared server, so counts are read as
differences (before/after) and never depend on what other modules sent.
"""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta

import pytest

from tests.servers import BROWSER_UA

BOT_UA = "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)"


def _new_site(server, prefix: str, **extra) -> str:
    domain = f"{prefix}-{uuid.uuid4().hex[:10]}.test"
    with server.client() as client:
        response = client.post(
            "/api/v1/sites", json={"domain": domain, **extra}, headers=server.auth()
        )
    assert response.status_code == 201, response.text
    assert response.json()["data"]["domain"] == domain
    return domain


@pytest.fixture(scope="module")
def site(server) -> str:
    return _new_site(server, "ingest")


@pytest.fixture(scope="module")
def client(server):
    with server.client() as http:
        yield http


def _today() -> str:
    return datetime.now(UTC).date().isoformat()


def _yesterday() -> str:
    """Ranges for "now" events start yesterday, so a test running over midnight still passes."""
    return (datetime.now(UTC) - timedelta(days=1)).date().isoformat()


def aggregate(client, server, site: str, start: str | None = None, end: str | None = None) -> dict:
    start = start or _yesterday()
    end = end or _today()
    response = client.get(
        "/api/v1/stats/aggregate",
        params={"site": site, "start_date": start, "end_date": end},
        headers=server.auth(),
    )
    assert response.status_code == 200, response.text
    return response.json()["data"]


def health(client) -> dict:
    response = client.get("/api/v1/health")
    assert response.status_code == 200, response.text
    return response.json()


def page_view(site: str, path: str = "/", **extra) -> dict:
    metadata = {"page_url": f"https://{site}{path}", **extra.pop("metadata", {})}
    return {"event_type": "page_view", "site": site, "metadata": metadata, **extra}


def iso(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def delta(before: dict, after: dict) -> dict:
    return {key: after[key] - before[key] for key in ("pageviews", "events", "conversions")}


# -- the seed's bodies and answers -------------------------------------------------------
def test_seed_event_body_answers_seed_shape(server, client, site):
    before = aggregate(client, server, site)
    body = {
        "event_type": "page_view",
        "user_id": "user123",
        "session_id": "session456",
        "timestamp": iso(datetime.now(UTC) - timedelta(seconds=5)),
        "site": site,
        "metadata": {
            "page_url": f"https://{site}/",
            "referrer_url": "https://referrer.com",
            "browser": "Chrome",
            "device": "Desktop",
        },
    }
    response = client.post("/api/v1/events", json=body)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("application/json")
    answer = response.json()
    assert set(answer) == {"status", "event_id"}
    assert answer["status"] == "success"
    assert answer["event_id"].startswith("evt_") and len(answer["event_id"]) > 4
    assert delta(before, aggregate(client, server, site)) == {"pageviews": 1, "events": 0, "conversions": 0}


def test_seed_conversion_body_answers_seed_shape(server, client, site):
    before = aggregate(client, server, site)
    body = {
        "conversion_type": "seed-purchase",
        "user_id": "user123",
        "session_id": "session456",
        "timestamp": iso(datetime.now(UTC) - timedelta(seconds=5)),
        "site": site,
        "metadata": {"product_id": "prod789", "amount": 99.99, "currency": "USD"},
    }
    response = client.post("/api/v1/conversions", json=body)
    assert response.status_code == 200, response.text
    answer = response.json()
    assert set(answer) == {"status", "conversion_id"}
    assert answer["status"] == "success"
    assert answer["conversion_id"].startswith("cnv_")
    assert delta(before, aggregate(client, server, site)) == {"pageviews": 0, "events": 0, "conversions": 1}


def test_custom_event_is_counted_as_event(server, client, site):
    before = aggregate(client, server, site)
    response = client.post(
        "/api/v1/events",
        json={"event_type": "signup_click", "site": site, "metadata": {"page_url": f"https://{site}/join"}},
    )
    assert response.status_code == 200, response.text
    assert delta(before, aggregate(client, server, site)) == {"pageviews": 0, "events": 1, "conversions": 0}


def test_site_comes_from_field_or_page_url_host(server, client, site):
    before = aggregate(client, server, site)
    # the "site" field names the site
    by_field = client.post("/api/v1/events", json=page_view(site, "/by-field"))
    assert by_field.status_code == 200, by_field.text
    # no "site": the host of metadata.page_url names it (www. is the same site)
    for host in (site, f"www.{site}"):
        response = client.post(
            "/api/v1/events",
            json={"event_type": "page_view", "metadata": {"page_url": f"https://{host}/by-host"}},
        )
        assert response.status_code == 200, response.text
        assert response.json()["status"] == "success"
    conversion = client.post(
        "/api/v1/conversions",
        json={"conversion_type": "host-goal", "metadata": {"page_url": f"https://{site}/thanks"}},
    )
    assert conversion.status_code == 200, conversion.text
    assert delta(before, aggregate(client, server, site)) == {"pageviews": 3, "events": 0, "conversions": 1}


# -- batches ------------------------------------------------------------------------------
def test_batch_is_answered_per_item(server, client):
    guarded = _new_site(server, "batch")
    # a second site whose allowed_hostnames make items on other hosts "ignored"
    with server.client() as admin:
        restricted = f"restricted-{uuid.uuid4().hex[:10]}.test"
        created = admin.post(
            "/api/v1/sites",
            json={"domain": restricted, "allowed_hostnames": [restricted]},
            headers=server.auth(),
        )
        assert created.status_code == 201, created.text
    before = aggregate(client, server, guarded)
    accepted_before = health(client)["events_accepted"]
    items = [
        page_view(guarded, "/one"),
        {"event_type": 5, "site": guarded},
        {"event_type": "download", "site": guarded, "metadata": {"page_url": f"https://{guarded}/files"}},
        {"event_type": "page_view", "site": restricted, "metadata": {"page_url": "https://elsewhere.test/"}},
        {"event_type": "page_view", "site": "no-such-site.test"},
        page_view(guarded, "/two"),
    ]
    response = client.post("/api/v1/events", json=items)
    assert response.status_code == 200, response.text
    answer = response.json()
    assert answer["status"] == "partial"
    assert answer["accepted"] == 3
    results = answer["results"]
    assert [r["status"] for r in results] == ["success", "error", "success", "ignored", "error", "success"]
    for index in (0, 2, 5):
        assert results[index]["event_id"].startswith("evt_")
    assert len({results[i]["event_id"] for i in (0, 2, 5)}) == 3
    assert results[1]["error"]["field"] == "[1].event_type"
    assert results[3]["reason"] == "hostname_not_allowed"
    assert results[4]["error"]["field"] == "[4].site"
    assert "event_id" not in results[1] and "event_id" not in results[3]
    assert delta(before, aggregate(client, server, guarded)) == {"pageviews": 2, "events": 1, "conversions": 0}
    assert health(client)["events_accepted"] - accepted_before == 3

    # conversions in a batch answer conversion ids
    conversions = client.post(
        "/api/v1/conversions",
        json=[
            {"conversion_type": "trial", "site": guarded},
            {"conversion_type": "trial", "site": guarded, "metadata": {"amount": "x"}},
        ],
    )
    assert conversions.status_code == 200, conversions.text
    first, second = conversions.json()["results"]
    assert first["status"] == "success" and first["conversion_id"].startswith("cnv_")
    assert second["status"] == "error" and second["error"]["field"] == "[1].metadata.amount"

    # a bot's batch: every item ignored, nothing stored, each counted as a bot drop
    bot_before = health(client)
    bots = client.post(
        "/api/v1/events",
        json=[page_view(guarded, "/b1"), page_view(guarded, "/b2")],
        headers={"user-agent": BOT_UA},
    )
    assert bots.status_code == 200, bots.text
    assert bots.json()["status"] == "ignored"  # not an error (web/ingest.py answered "error")
    assert bots.json()["accepted"] == 0
    assert [r["status"] for r in bots.json()["results"]] == ["ignored", "ignored"]
    assert {r["reason"] for r in bots.json()["results"]} == {"bot"}
    bot_after = health(client)
    assert bot_after["drops"].get("bot", 0) - bot_before["drops"].get("bot", 0) == 2
    assert bot_after["events_accepted"] == bot_before["events_accepted"]
    assert delta(before, aggregate(client, server, guarded)) == {"pageviews": 2, "events": 1, "conversions": 1}


# -- the tracker endpoint ------------------------------------------------------------------
def test_collect_text_plain_is_accepted_and_counted(server, client, site):
    before = aggregate(client, server, site)
    body = {
        "k": "pageview",
        "s": site,
        "u": f"http://{site}/tracked",
        "r": "https://news.ycombinator.com/",
        "w": 1280,
    }
    # A visitor of its own: an open visit of the module's shared client would lend this page
    # view its own source (source and referrer are properties of the visit).
    fresh_visitor = BROWSER_UA.replace("Chrome/124.0.0.0", "Chrome/124.0.0.77")
    response = client.post(
        "/api/v1/collect", content=json.dumps(body), headers={"content-type": "text/plain", "user-agent": fresh_visitor}
    )
    assert response.status_code == 202, response.text
    assert response.content == b""
    assert "x-footfall-ignored" not in response.headers
    assert delta(before, aggregate(client, server, site)) == {"pageviews": 1, "events": 0, "conversions": 0}
    today, yesterday = _today(), _yesterday()
    pages = client.get(
        "/api/v1/stats/breakdown",
        params={"site": site, "property": "page", "start_date": yesterday, "end_date": today, "limit": 100},
        headers=server.auth(),
    ).json()["data"]["results"]
    assert any(row["value"] == "/tracked" and row["pageviews"] == 1 for row in pages)
    referrers = client.get(
        "/api/v1/stats/breakdown",
        params={"site": site, "property": "referrer", "start_date": yesterday, "end_date": today},
        headers=server.auth(),
    ).json()["data"]["results"]
    assert "news.ycombinator.com" in {row["value"] for row in referrers}
    screens = client.get(
        "/api/v1/stats/breakdown",
        params={"site": site, "property": "screen", "start_date": yesterday, "end_date": today},
        headers=server.auth(),
    ).json()["data"]["results"]
    assert "Laptop" in {row["value"] for row in screens}


def test_collect_custom_event_and_conversion(server, client, site):
    before = aggregate(client, server, site)
    for body in (
        {"k": "event", "s": site, "u": f"https://{site}/x", "n": "video_play"},
        {"k": "conversion", "s": site, "u": f"https://{site}/x", "n": "collect-buy", "a": 5, "c": "EUR"},
        {"k": "engagement", "s": site, "u": f"https://{site}/x", "e": 1500, "d": 80},
    ):
        response = client.post("/api/v1/collect", content=json.dumps(body), headers={"content-type": "text/plain"})
        assert response.status_code == 202, response.text
    assert delta(before, aggregate(client, server, site)) == {"pageviews": 0, "events": 1, "conversions": 1}


# -- bots -----------------------------------------------------------------------------------
def test_bots_are_answered_202_ignored_and_counted(server, client, site):
    before = aggregate(client, server, site)
    health_before = health(client)
    bot_headers = {"user-agent": BOT_UA}
    event = client.post("/api/v1/events", json=page_view(site, "/bot"), headers=bot_headers)
    assert event.status_code == 202, event.text
    assert event.headers["x-footfall-ignored"] == "bot"
    assert event.json() == {"status": "ignored", "reason": "bot"}
    collect = client.post(
        "/api/v1/collect",
        content=json.dumps({"k": "pageview", "s": site, "u": f"https://{site}/bot"}),
        headers={**bot_headers, "content-type": "text/plain"},
    )
    assert collect.status_code == 202
    assert collect.headers["x-footfall-ignored"] == "bot"
    conversion = client.post(
        "/api/v1/conversions", json={"conversion_type": "bot-buy", "site": site}, headers=bot_headers
    )
    assert conversion.status_code == 202
    assert conversion.headers["x-footfall-ignored"] == "bot"
    # curl and python clients are not browsers either
    for agent in ("curl/8.5.0", "python-httpx/0.27.0"):
        scripted = client.post("/api/v1/events", json=page_view(site, "/script"), headers={"user-agent": agent})
        assert scripted.status_code == 202, (agent, scripted.text)
        assert scripted.headers["x-footfall-ignored"] == "bot"
    health_after = health(client)
    assert health_after["drops"]["bot"] - health_before["drops"].get("bot", 0) == 5
    assert health_after["events_accepted"] == health_before["events_accepted"]
    assert aggregate(client, server, site) == before


# -- time ------------------------------------------------------------------------------------
def _timeseries(client, server, site: str, start: str, end: str, interval: str = "day") -> list[dict]:
    response = client.get(
        "/api/v1/stats/timeseries",
        params={"site": site, "start_date": start, "end_date": end, "interval": interval},
        headers=server.auth(),
    )
    assert response.status_code == 200, response.text
    return response.json()["data"]


def test_historical_timestamps_land_on_their_day(server, client):
    site = _new_site(server, "history")
    now = datetime.now(UTC)
    ten_days = (now - timedelta(days=10)).replace(hour=12, minute=0, second=0, microsecond=0)
    hundred_days = (now - timedelta(days=100)).replace(hour=7, minute=30, second=0, microsecond=0)
    near_retention = now - timedelta(days=395)
    # 01:30 at UTC+02:00 is 23:30 UTC the day before
    offset_day = (now - timedelta(days=20)).date()
    offset_stamp = f"{offset_day.isoformat()}T01:30:00+02:00"
    for stamp in (iso(ten_days), iso(hundred_days), iso(near_retention), offset_stamp):
        response = client.post("/api/v1/events", json=page_view(site, "/old", timestamp=stamp))
        assert response.status_code == 200, (stamp, response.text)
    expected = {
        ten_days.date().isoformat(): 1,
        hundred_days.date().isoformat(): 1,
        near_retention.date().isoformat(): 1,
        (offset_day - timedelta(days=1)).isoformat(): 1,
    }
    series = _timeseries(client, server, site, (now - timedelta(days=399)).date().isoformat(), _today())
    assert len(series) == 400
    counted = {row["date"]: row["pageviews"] for row in series if row["pageviews"]}
    assert counted == expected
    visitors = {row["date"]: row["visitors"] for row in series if row["visitors"]}
    assert visitors == expected
    # the hour series puts the event in its UTC hour
    day = ten_days.date().isoformat()
    hours = _timeseries(client, server, site, day, day, "hour")
    assert len(hours) == 24
    assert [row["pageviews"] for row in hours] == [1 if i == 12 else 0 for i in range(24)]
    assert hours[12]["date"] == f"{day}T12:00:00+00:00"
    # naive timestamps are UTC
    naive = (now - timedelta(days=3)).replace(hour=5, minute=0, second=0, microsecond=0)
    response = client.post(
        "/api/v1/events", json=page_view(site, "/naive", timestamp=naive.strftime("%Y-%m-%dT%H:%M:%S"))
    )
    assert response.status_code == 200, response.text
    hours = _timeseries(client, server, site, naive.date().isoformat(), naive.date().isoformat(), "hour")
    assert hours[5]["pageviews"] == 1


def test_days_are_the_sites_local_days(server, client):
    site = _new_site(server, "tokyo", timezone="Asia/Tokyo")  # UTC+9, no DST
    moment = (datetime.now(UTC) - timedelta(days=5)).replace(hour=20, minute=10, second=0, microsecond=0)
    response = client.post("/api/v1/events", json=page_view(site, "/jst", timestamp=iso(moment)))
    assert response.status_code == 200, response.text
    local_day = (moment + timedelta(hours=9)).date()  # 20:10 UTC is 05:10 the next day in Tokyo
    start, end = (local_day - timedelta(days=2)).isoformat(), (local_day + timedelta(days=2)).isoformat()
    series = _timeseries(client, server, site, start, end)
    assert {row["date"]: row["pageviews"] for row in series if row["pageviews"]} == {local_day.isoformat(): 1}
    hours = _timeseries(client, server, site, local_day.isoformat(), local_day.isoformat(), "hour")
    assert len(hours) == 24
    assert (hours[5]["date"], hours[5]["visitors"], hours[5]["pageviews"]) == (
        f"{local_day.isoformat()}T05:00:00+09:00", 1, 1,
    )
    assert sum(row["pageviews"] for row in hours) == 1


def test_missing_timestamp_means_server_time(server, client):
    site = _new_site(server, "now")
    first_day = _today()
    started = datetime.now(UTC).timestamp()
    response = client.post("/api/v1/events", json=page_view(site, "/now"))
    assert response.status_code == 200, response.text
    finished = datetime.now(UTC).timestamp()
    last_day = _today()
    series = _timeseries(client, server, site, first_day, last_day)
    assert sum(row["pageviews"] for row in series) == 1
    if first_day == last_day:
        assert [(row["date"], row["visitors"], row["pageviews"]) for row in series] == [(first_day, 1, 1)]
    live = client.get("/api/v1/live", params={"site": site}, headers=server.auth()).json()["data"]
    assert len(live) == 1
    assert started - 1 <= live[0]["timestamp"] <= finished + 1


# -- CORS -------------------------------------------------------------------------------------
@pytest.mark.parametrize("path", ["/api/v1/events", "/api/v1/conversions", "/api/v1/collect"])
def test_preflight_answers_cors_headers(client, path):
    response = client.options(
        path,
        headers={
            "origin": "https://shop.example",
            "access-control-request-method": "POST",
            "access-control-request-headers": "content-type",
        },
    )
    assert response.status_code in (200, 204), response.text
    assert response.headers["access-control-allow-origin"] == "*"
    assert "POST" in response.headers["access-control-allow-methods"]
    assert "content-type" in response.headers["access-control-allow-headers"].lower()


def test_ingest_answers_carry_cors_header(client, site):
    ok = client.post("/api/v1/events", json=page_view(site, "/cors"), headers={"origin": "https://a.example"})
    bad = client.post("/api/v1/events", content=b"{", headers={"origin": "https://a.example"})
    assert ok.status_code == 200 and bad.status_code == 400
    for response in (ok, bad):
        assert response.headers["access-control-allow-origin"] == "*"


# -- live -------------------------------------------------------------------------------------
def test_live_returns_latest_events_first_with_their_ids(server, client):
    site = _new_site(server, "live")
    ids = []
    for path in ("/first", "/second", "/third"):
        response = client.post("/api/v1/events", json=page_view(site, path))
        assert response.status_code == 200, response.text
        ids.append((response.json()["event_id"], path))
    conversion = client.post("/api/v1/conversions", json={"conversion_type": "live-buy", "site": site})
    assert conversion.status_code == 200
    response = client.get("/api/v1/live", params={"site": site}, headers=server.auth())
    assert response.status_code == 200, response.text
    answer = response.json()
    assert answer["status"] == "success"
    assert answer["current_visitors"] == 1
    items = answer["data"]
    assert len(items) == 4
    # most recent first: the conversion, then the page views in reverse order
    assert items[0]["kind"] == "conversion" and items[0]["name"] == "live-buy"
    assert items[0]["event_id"][4:] == conversion.json()["conversion_id"][4:]
    assert [(item["event_id"], item["path"]) for item in items[1:]] == ids[::-1]
    for item in items:
        assert "visitor_id" not in item and "client_ip" not in item
    limited = client.get("/api/v1/live", params={"site": site, "limit": 2}, headers=server.auth())
    assert [item["event_id"] for item in limited.json()["data"]][1] == ids[-1][0]
    assert client.get("/api/v1/live", params={"site": site}).status_code == 401


# -- revenue --------------------------------------------------------------------------------
def _goals(client, server, site: str) -> dict[str, dict]:
    today, yesterday = _today(), _yesterday()
    response = client.get(
        "/api/v1/reports/conversions",
        params={"site": site, "start_date": yesterday, "end_date": today},
        headers=server.auth(),
    )
    assert response.status_code == 200, response.text
    return {row["name"]: row for row in response.json()["data"]["goals"]}


def test_revenue_in_minor_units(server, client, site):
    sent = [
        ("rev-usd", 99.99, "USD"),
        ("rev-jpy", 1500, "JPY"),
        ("rev-jpy", 250.4, "jpy"),
        ("rev-mixed", 10, "USD"),
        ("rev-mixed", 5.5, "EUR"),
        ("rev-kwd", 1.25, "KWD"),
        ("rev-free", None, None),
    ]
    for name, amount, currency in sent:
        metadata = {} if amount is None else {"amount": amount, "currency": currency}
        response = client.post("/api/v1/conversions", json={"conversion_type": name, "site": site, "metadata": metadata})
        assert response.status_code == 200, response.text
    goals = _goals(client, server, site)
    assert goals["rev-usd"]["revenue_minor"] == {"USD": 9999}
    assert goals["rev-usd"]["conversions"] == 1
    assert goals["rev-jpy"]["revenue_minor"] == {"JPY": 1750}
    assert goals["rev-jpy"]["conversions"] == 2
    assert goals["rev-mixed"]["revenue_minor"] == {"USD": 1000, "EUR": 550}
    assert goals["rev-kwd"]["revenue_minor"] == {"KWD": 1250}
    assert goals["rev-free"]["revenue_minor"] == {}
    assert goals["rev-free"]["conversions"] == 1
    # a missing currency means USD
    response = client.post(
        "/api/v1/conversions", json={"conversion_type": "rev-default", "site": site, "metadata": {"amount": 1.5}}
    )
    assert response.status_code == 200
    assert _goals(client, server, site)["rev-default"]["revenue_minor"] == {"USD": 150}
