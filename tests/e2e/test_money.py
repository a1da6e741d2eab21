"""Money over HTTP: conversions in KWD (3 digits), JPY (none) and EUR (2) keep their amounts
from ingest to the conversions report, the goals report, the dashboard's conversions widget,
the Goals page, the live view and the live API; unknown currencies are refused naming the field.
"""

from __future__ import annotations

import contextlib
import html
import json
import re
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from tests.servers import BROWSER_UA, start_server

# (conversion type, amount, currency, minor units, shown)
SENT = [
    ("buy-kwd", 1.5, "KWD", 1500, "1.500 KWD"),
    ("buy-jpy", 3, "JPY", 3, "3 JPY"),
    ("buy-eur", 19.99, "EUR", 1999, "19.99 EUR"),
]


@pytest.fixture(scope="module")
def shop(tmp_path_factory):
    """A server with one site that took a conversion in each currency (JPY from the tracker)."""
    handle = start_server(tmp_path_factory.mktemp("money") / "data")
    domain = f"money-{uuid.uuid4().hex[:8]}.test"
    with httpx.Client(base_url=handle.url, headers={"user-agent": BROWSER_UA, **handle.auth()}, timeout=30) as api:
        assert api.post("/api/v1/sites", json={"domain": domain}).status_code == 201
        for name, amount, currency, _, _ in SENT:
            if currency == "JPY":  # the tracker's compact body, as footfall.convert() sends it
                body = {"k": "conversion", "s": domain, "u": f"https://{domain}/checkout", "n": name,
                        "a": amount, "c": currency}
                answer = api.post("/api/v1/collect", content=json.dumps(body), headers={"content-type": "text/plain"})
            else:
                answer = api.post("/api/v1/conversions", json={
                    "conversion_type": name, "site": domain,
                    "metadata": {"amount": amount, "currency": currency, "page_url": f"https://{domain}/checkout"}})
            assert answer.status_code in (200, 202), answer.text
            assert answer.headers.get("x-footfall-dropped") is None, answer.headers
    yield handle, domain
    handle.stop()


@contextlib.contextmanager
def _login(handle) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=handle.url, headers={"user-agent": BROWSER_UA}, timeout=30) as client:
        form = client.get("/login")
        token = re.search(r'name="csrf" value="([^"]+)"', form.text).group(1)
        answer = client.post(
            "/login", data={"username": "admin", "password": handle.password, "csrf": token, "next": "/sites"}
        )
        assert answer.status_code == 303, answer.text
        yield client


def _period() -> dict[str, str]:
    today = datetime.now(UTC).date()
    return {"start_date": (today - timedelta(days=1)).isoformat(), "end_date": (today + timedelta(days=1)).isoformat()}


def _conversions(handle, domain) -> dict:
    with handle.client(headers=handle.auth()) as api:
        answer = api.get("/api/v1/reports/conversions", params={"site": domain, **_period()})
    assert answer.status_code == 200, answer.text
    return answer.json()["data"]


def _text(page: str) -> str:
    return html.unescape(re.sub(r"<[^>]+>", " ", page))


def test_conversion_report_keeps_minor_units_per_currency(shop):
    handle, domain = shop
    rows = {row["name"]: row for row in _conversions(handle, domain)["goals"] if "revenue_minor" in row}
    for name, _, currency, minor, _ in SENT:
        assert rows[name]["revenue_minor"] == {currency: minor}, rows[name]


def test_dashboard_widget_and_live_view_show_each_currencys_digits(shop):
    handle, domain = shop
    with _login(handle) as dashboard:
        widget = dashboard.get(f"/sites/{domain}/widgets/conversions", params={"period": "7d"})
        assert widget.status_code == 200, widget.text
        live = dashboard.get(f"/sites/{domain}/live")
        assert live.status_code == 200, live.text
    for page in (_text(widget.text), _text(live.text)):
        for _, _, _, _, shown in SENT:
            assert shown in page, (shown, page)
        assert "15.00 KWD" not in page and "0.03 JPY" not in page


def test_live_api_answers_minor_units_and_currency(shop):
    handle, domain = shop
    with handle.client(headers=handle.auth()) as api:
        answer = api.get("/api/v1/live", params={"site": domain})
    assert answer.status_code == 200, answer.text
    got = {(item["name"], item["revenue"], item["currency"]) for item in answer.json()["data"] if item["kind"] == "conversion"}
    assert got == {(name, minor, currency) for name, _, currency, minor, _ in SENT}


def test_goals_report_and_page_show_each_currencys_digits(shop):
    handle, domain = shop
    with handle.client(headers=handle.auth()) as api:
        for name, _, _, _, _ in SENT:
            answer = api.post("/api/v1/goals", params={"site": domain},
                              json={"name": f"Goal {name}", "kind": "conversion", "event": name})
            assert answer.status_code == 201, answer.text
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            goals = api.get("/api/v1/goals", params={"site": domain}).json()["data"]
            if all(goal["backfill"]["status"] == "complete" for goal in goals):
                break
            time.sleep(0.1)
    rows = {row["name"]: row for row in _conversions(handle, domain)["goals"] if "goal_id" in row}
    for name, _, currency, minor, _ in SENT:
        row = rows[f"Goal {name}"]
        assert row["backfill"]["status"] == "complete"
        assert row["conversions"] == 1
        assert row["revenue"] == {currency: {"total_minor": minor, "average_minor": minor, "conversions": 1}}, row
    with _login(handle) as dashboard:
        widget = _text(dashboard.get(f"/sites/{domain}/widgets/conversions", params={"period": "7d"}).text)
        page = _text(dashboard.get(f"/sites/{domain}/goals", params={"period": "7d"}).text)
    for _, _, _, _, shown in SENT:
        assert shown in widget, (shown, widget)
        assert shown in page and f"avg {shown}" in page, (shown, page)


@pytest.mark.parametrize(
    ("path", "body", "field"),
    [
        ("/api/v1/conversions", {"conversion_type": "buy", "metadata": {"amount": 5, "currency": "ZZZ"}}, "metadata.currency"),
        ("/api/v1/conversions", {"conversion_type": "buy", "metadata": {"amount": 5, "currency": "ßßß"}}, "metadata.currency"),
        ("/api/v1/collect", {"k": "conversion", "n": "buy", "a": 5, "c": "ZZZ"}, "c"),
        ("/api/v1/conversions", {"conversion_type": "buy\x1fEUR", "metadata": {"amount": 5, "currency": "EUR"}},
         "conversion_type"),
    ],
)
def test_unknown_currency_or_a_separator_in_the_name_is_refused(shop, path, body, field):
    handle, domain = shop
    body = {**body, **({"s": domain, "u": f"https://{domain}/"} if "k" in body else {"site": domain})}
    before = _conversions(handle, domain)
    with handle.client() as api:
        answer = api.post(path, json=body)
    assert answer.status_code == 422, answer.text
    assert answer.json()["error"]["field"] == field
    assert _conversions(handle, domain) == before
