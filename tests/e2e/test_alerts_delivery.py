"""Alerts against the real server: a rule made through the API fires, its message arrives at
a loopback ``json://`` HTTP sink exactly once, it is not repeated within its cool-down, and a
"resolved" message arrives when the condition clears.

The server runs with the background check off and ``[alerts] allow_test_clock`` on, so the
test drives the checker's clock through ``POST …/alerts/check {"now": …}`` instead of
waiting; events carry timestamps two hours back, on that driven clock's time line.
"""

from __future__ import annotations

import re
import time
import uuid
from datetime import UTC, datetime

import httpx
import pytest

from tests.servers import BROWSER_UA, start_server
from tests.sinks import HttpSink

SITE = "localhost"
PASSWORD = "alerts-password-123"
BASE = float(int(time.time()) - 7200)  # two hours ago: a time line the test drives


@pytest.fixture(scope="module")
def sink():
    server = HttpSink()
    yield server
    server.close()


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    handle = start_server(
        tmp_path_factory.mktemp("alerts") / "data",
        env={"FOOTFALL_ALERTS_ALLOW_TEST_CLOCK": "true", "FOOTFALL_ALERTS_CHECK_INTERVAL_SECONDS": "0"},
    )
    yield handle
    handle.stop()


def api(server, method: str, path: str, headers=None, **kwargs) -> httpx.Response:
    return httpx.request(method, f"{server.url}/api/v1/sites/{SITE}/alerts{path}",
                         headers=headers or server.auth(), timeout=30, **kwargs)


def visitors(server, at: float, count: int) -> None:
    stamp = datetime.fromtimestamp(at, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    batch = [
        {"event_type": "page_view", "site": SITE, "user_id": uuid.uuid4().hex, "timestamp": stamp,
         "metadata": {"page_url": f"http://{SITE}/sale"}}
        for _ in range(count)
    ]
    answer = httpx.post(f"{server.url}/api/v1/events", json=batch, headers={"user-agent": BROWSER_UA})
    assert answer.status_code == 200 and answer.json()["accepted"] == count, answer.text


def check(server, now: float) -> list[dict]:
    answer = api(server, "POST", "/check", json={"now": now})
    assert answer.status_code == 200, answer.text
    return answer.json()["data"]


def test_an_alert_arrives_once_keeps_its_cool_down_and_resolves(server, sink):
    created = api(server, "POST", "/", json={
        "name": "Crowd", "kind": "live_visitors", "parameters": {"threshold": 2},
        "destinations": [f"json://127.0.0.1:{sink.port}/alerts/s3cret"], "cooldown_minutes": 60,
    })
    assert created.status_code == 201, created.text
    rule = created.json()["data"]
    assert rule["destinations"] == [f"json://127.0.0.1:{sink.port}/…"]  # the token is not shown
    assert rule["parameters"] == {"threshold": 2, "window_minutes": 5}

    visitors(server, BASE, 3)
    assert [change["state"] for change in check(server, BASE + 60)] == ["firing"]
    [first] = sink.wait_for(1)
    assert first.path == "/alerts/s3cret"
    assert first.body["title"] == "Footfall alert firing: Crowd (localhost)"
    assert "3 visitors in the last 5 minutes" in first.body["message"]

    assert check(server, BASE + 120) == []  # still firing: not repeated
    assert check(server, BASE + 180) == []
    [resolved] = check(server, BASE + 900)
    assert resolved["state"] == "resolved" and resolved["notified"]
    assert sink.wait_for(2)[1].body["title"] == "Footfall alert resolved: Crowd (localhost)"

    visitors(server, BASE + 1200, 4)  # again, 20 minutes after the first message
    [again] = check(server, BASE + 1260)
    assert (again["state"], again["notified"]) == ("firing", False)  # within the cool-down
    check(server, BASE + 2100)

    history = api(server, "GET", "/history").json()["data"]
    assert [(alert["state"], alert["notified"]) for alert in history] == [
        ("resolved", False), ("firing", False), ("resolved", True), ("firing", True),
    ]
    assert history[-1]["deliveries"] == [{"destination": 0, "ok": True, "attempts": 1, "error": ""}]
    assert len(sink.received) == 2  # exactly the firing and the resolved message
    assert "Traceback" not in server.log()


def test_viewers_read_history_but_only_analysts_and_admins_change_rules(server, sink):
    tokens = {}
    for role in ("viewer", "analyst"):
        name = f"{role}-{uuid.uuid4().hex[:6]}"
        made = httpx.post(f"{server.url}/api/v1/users", headers=server.auth(),
                          json={"username": name, "password": PASSWORD, "role": role, "sites": [SITE]})
        assert made.status_code == 201, made.text
        login = httpx.post(f"{server.url}/api/v1/authenticate", json={"username": name, "password": PASSWORD})
        tokens[role] = {"Authorization": f"Bearer {login.json()['token']}"}
    body = {"name": "Quiet", "kind": "no_events", "destinations": [f"json://127.0.0.1:{sink.port}/"]}

    assert api(server, "GET", "/history", headers=tokens["viewer"]).status_code == 200
    assert api(server, "GET", "/", headers=tokens["viewer"]).status_code == 200
    assert api(server, "POST", "/", headers=tokens["viewer"], json=body).status_code == 403
    made = api(server, "POST", "/", headers=tokens["analyst"], json=body)
    assert made.status_code == 201, made.text
    rule_id = made.json()["data"]["id"]
    assert api(server, "DELETE", f"/{rule_id}", headers=tokens["viewer"]).status_code == 403
    assert api(server, "DELETE", f"/{rule_id}", headers=tokens["analyst"]).status_code == 200


def test_bad_rules_are_refused_naming_the_field(server):
    cases = [
        ({"name": "x", "kind": "weather", "destinations": ["json://127.0.0.1/"]}, "kind"),
        ({"name": "x", "kind": "live_visitors", "destinations": ["json://127.0.0.1/"]}, "parameters.threshold"),
        ({"name": "x", "kind": "live_visitors", "parameters": {"threshold": 1}, "destinations": []}, "destinations"),
        ({"name": "", "kind": "live_visitors", "parameters": {"threshold": 1},
          "destinations": ["json://127.0.0.1/"]}, "name"),
    ]
    for body, field in cases:
        answer = api(server, "POST", "/", json=body)
        assert answer.status_code == 422, answer.text
        assert answer.json()["error"]["field"] == field, answer.text
    kinds = {kind["name"] for kind in api(server, "GET", "/kinds").json()["data"]}
    assert kinds >= {"traffic_change", "no_events", "goal_threshold", "live_visitors"}


def test_the_alerts_page_shows_rules_and_history_and_creates_a_rule(server, sink):
    with httpx.Client(base_url=server.url, timeout=30) as browser:
        login = browser.get("/login")
        form_csrf = re.search(r'name="csrf" value="([^"]+)"', login.text).group(1)
        answer = browser.post("/login", data={"username": "admin", "password": server.password, "csrf": form_csrf})
        assert answer.status_code == 303, answer.text
        page = browser.get(f"/sites/{SITE}/alerts")
        assert page.status_code == 200, page.text
        assert 'data-state="firing"' in page.text and 'data-state="resolved"' in page.text
        csrf = re.search(r'name="csrf-token" content="([^"]+)"', page.text).group(1)

        refused = browser.post(f"/sites/{SITE}/alerts", headers={"X-CSRF-Token": csrf},
                               data={"name": "Busy", "kind": "live_visitors", "destinations": f"json://127.0.0.1:{sink.port}/"})
        assert refused.status_code == 422 and "parameters.threshold: required" in refused.text
        made = browser.post(f"/sites/{SITE}/alerts", headers={"X-CSRF-Token": csrf}, data={
            "name": "Busy", "kind": "live_visitors", "live_visitors.threshold": "50",
            "destinations": f"json://127.0.0.1:{sink.port}/page", "cooldown_minutes": "30",
        })
        assert made.status_code == 303, made.text
        shown = browser.get(made.headers["location"]).text
        assert 'data-rule="Busy"' in shown and "threshold=50" in shown and f"json://127.0.0.1:{sink.port}/…" in shown
        busy_id = re.search(r'/alerts\?edit=(\d+)#alert-form" aria-label="Edit alert rule Busy"', shown).group(1)
        form = browser.get(f"/sites/{SITE}/alerts?edit={busy_id}").text
        assert 'value="50"' in form and "Change the alert rule" in form
        changed = browser.post(f"/sites/{SITE}/alerts/{busy_id}", headers={"X-CSRF-Token": csrf}, data={
            "name": "Busy", "kind": "live_visitors", "live_visitors.threshold": "80", "destinations": "",
            "cooldown_minutes": "45", "enabled_shown": "1",
        })
        assert changed.status_code == 303, changed.text
        checked = browser.post(f"/sites/{SITE}/alerts/check", headers={"X-CSRF-Token": csrf})
        assert checked.status_code == 303 and "checked=" in checked.headers["location"], checked.text
        assert "Checked the rules now" in browser.get(checked.headers["location"]).text
    rules = {rule["name"]: rule for rule in api(server, "GET", "/").json()["data"]}
    assert rules["Busy"]["parameters"] == {"threshold": 80, "window_minutes": 5}
    assert rules["Busy"]["cooldown_minutes"] == 45 and rules["Busy"]["enabled"] is False
    assert rules["Busy"]["destinations"] == [f"json://127.0.0.1:{sink.port}/…"]  # kept
