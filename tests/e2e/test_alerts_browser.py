"""The Alerts page in real headless Chromium: create a "live visitors" rule in the form, press
"Check now" with visitors on the site, see it firing with its history row, and its message
arrive at a loopback ``json://`` sink once. Screenshots go to ``test-artifacts/alerts/``
(``caret="initial"``, as tests/e2e/test_reports_browser.py explains)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import httpx
import pytest
from playwright.sync_api import expect

from tests.e2e.test_dashboard_browser import log_in, open_page
from tests.servers import BROWSER_UA, ROOT, start_server
from tests.sinks import HttpSink

SITE = "alerts-ui.test"
SHOTS = ROOT / "test-artifacts" / "alerts"


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    # the minute checker off: only "Check now" checks, so the test sees exactly one change
    handle = start_server(tmp_path_factory.mktemp("alerts-browser") / "data",
                          env={"FOOTFALL_DEMO": "false", "FOOTFALL_ALERTS_CHECK_INTERVAL_SECONDS": "0"})
    stamp = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    batch = [{"event_type": "page_view", "site": SITE, "user_id": uuid.uuid4().hex, "timestamp": stamp,
              "metadata": {"page_url": f"http://{SITE}/sale"}} for _ in range(3)]
    with httpx.Client(base_url=handle.url, headers=handle.auth()) as api:
        assert api.post("/api/v1/sites", json={"domain": SITE, "name": "Alerts UI"}).status_code == 201
    answer = httpx.post(f"{handle.url}/api/v1/events", json=batch, headers={"user-agent": BROWSER_UA})
    assert answer.status_code == 200 and answer.json()["accepted"] == 3, answer.text
    yield handle
    handle.stop()


def test_create_a_rule_check_now_and_see_it_fire(server, browser):
    SHOTS.mkdir(parents=True, exist_ok=True)
    sink = HttpSink()
    page = open_page(browser)
    try:
        log_in(page, server.url, "admin", server.password)
        page.goto(f"{server.url}/sites/{SITE}/alerts")
        expect(page.get_by_text("No alert rules yet.")).to_be_visible()
        page.screenshot(path=SHOTS / "01-empty.png", full_page=True, caret="initial")
        form = page.locator("#alert-form")
        form.get_by_label("Name", exact=True).fill("Crowd on the sale")
        form.get_by_label("Kind", exact=True).select_option("live_visitors")
        form.locator('[name="live_visitors.threshold"]').fill("2")
        form.get_by_label("Send to").fill(f"json://127.0.0.1:{sink.port}/alerts/s3cret")
        form.get_by_label("Cool-down").fill("30")
        page.screenshot(path=SHOTS / "02-form.png", full_page=True, caret="initial")
        form.get_by_role("button", name="Create alert rule").click()
        expect(page.get_by_role("status")).to_contain_text("Saved the alert rule")
        rule = page.locator('tr[data-rule="Crowd on the sale"]')
        expect(rule).to_contain_text("threshold=2")
        expect(rule).to_contain_text("cool-down 30 min")
        expect(rule).not_to_contain_text("s3cret")  # destinations are shown without their secrets
        expect(rule.locator(".firing")).to_have_count(0)

        page.get_by_role("button", name="Check now").click()
        expect(page.get_by_role("status")).to_contain_text("Checked the rules now: 1 change(s)")
        expect(rule.locator(".firing")).to_have_text("Firing")
        history = page.locator("table.alert-history tr[data-state='firing']")
        expect(history).to_have_count(1)
        expect(history).to_contain_text("Crowd on the sale")
        expect(history).to_contain_text("sent")
        [message] = sink.wait_for(1)
        assert message.path == "/alerts/s3cret"
        page.screenshot(path=SHOTS / "03-firing.png", full_page=True, caret="initial")

        page.get_by_role("button", name="Check now").click()  # still firing: no new change, no message
        expect(page.get_by_role("status")).to_contain_text("Checked the rules now: 0 change(s)")
        expect(history).to_have_count(1)
        assert len(sink.received) == 1
        page.set_viewport_size({"width": 390, "height": 844})
        page.screenshot(path=SHOTS / "04-phone.png", full_page=True, caret="initial")
        assert page.errors == []
    finally:
        sink.close()
        page.context.close()
    assert sorted(p.name for p in SHOTS.glob("0*.png")) == ["01-empty.png", "02-form.png", "03-firing.png",
                                                             "04-phone.png"]
