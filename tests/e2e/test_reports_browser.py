"""Reports in real headless Chromium: save the dashboard's view in one click, build a report
in the builder with its live preview, save it, open its PDF, schedule it to a local SMTP sink
and press "Send now" — the e-mail arrives with the PDF. Screenshots go to pytest's tmp dir
(``reports-shots``), taken with ``caret="initial"``: Playwright's default hides the caret by
leaving ``style=""`` on inputs, which htmx then copies across a boosted navigation and the
Content Security Policy (rightly) refuses."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import httpx
import pytest
from playwright.sync_api import expect

from tests.e2e.test_dashboard_browser import log_in, open_page
from tests.servers import start_server
from tests.smtp_sink import SmtpSink

SITE = "reports-ui.test"


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    handle = start_server(tmp_path_factory.mktemp("reports-browser") / "data", env={"FOOTFALL_DEMO": "false"})
    now = datetime.now(UTC) - timedelta(minutes=2)
    events = [{"event_type": "page_view", "user_id": f"u{i}", "session_id": f"s{i}", "site": SITE,
               "timestamp": (now + timedelta(seconds=i)).isoformat().replace("+00:00", "Z"),
               "metadata": {"page_url": f"https://{SITE}{'/pricing' if i % 2 else '/'}"}} for i in range(6)]
    with httpx.Client(base_url=handle.url, headers=handle.auth()) as api:
        assert api.post("/api/v1/sites", json={"domain": SITE, "name": "Reports UI"}).status_code == 201
        assert api.post("/api/v1/events", json=events).status_code == 200
    handle.shots = tmp_path_factory.mktemp("reports-shots")
    yield handle
    handle.stop()


def test_build_save_export_and_schedule_a_report(server, browser):
    sink = SmtpSink()
    page = open_page(browser)
    shots = server.shots
    try:
        log_in(page, server.url, "admin", server.password)
        page.goto(f"{server.url}/sites/{SITE}?period=7d")
        page.get_by_role("button", name="Save as report").click()
        page.wait_for_url(f"**/sites/{SITE}/reports/*")
        expect(page.get_by_role("status")).to_have_text("Report saved.")
        expect(page.locator('[data-metric="visitors"] strong')).to_have_text("6")
        page.screenshot(path=shots / "01-saved-view.png", full_page=True, caret="initial")

        page.get_by_role("link", name="Reports", exact=True).click()  # a boosted (htmx) navigation
        page.wait_for_url(f"**/sites/{SITE}/reports")
        builder = page.locator("#builder")
        builder.get_by_label("Title").fill("Pricing visitors")
        builder.get_by_label("Page views").check()
        builder.get_by_label("Breakdown by").select_option("page")
        preview = page.locator("#report-preview")
        expect(preview.locator('[data-metric="pageviews"] strong')).to_have_text("6")
        expect(preview.locator("table.report-breakdown")).to_contain_text("/pricing")
        builder.get_by_label("Filter 1 value").fill("/pricing")
        builder.locator("#report-period").select_option("30d")  # a change event: the preview follows
        expect(preview.locator('[data-metric="visitors"] strong')).to_have_text("3")
        page.screenshot(path=shots / "02-builder-preview.png", full_page=True, caret="initial")
        builder.get_by_role("button", name="Save report").click()
        page.wait_for_url(f"**/sites/{SITE}/reports/*")
        expect(page.get_by_role("heading", name="Pricing visitors", exact=True)).to_be_visible()
        expect(page.locator('[data-metric="visitors"] strong').first).to_have_text("3")
        with page.expect_download() as download:
            page.get_by_role("link", name="PDF").click()
        assert download.value.suggested_filename.endswith(".pdf")
        assert download.value.path().read_bytes()[:4] == b"%PDF"

        schedule = page.locator("#schedule")
        schedule.get_by_label("Send").select_option("daily")
        schedule.get_by_label("To (one apprise URL per line").fill(sink.url())
        schedule.get_by_role("button", name="Schedule").click()
        expect(page.get_by_role("status")).to_have_text("Schedule saved.")
        expect(schedule).to_contain_text("Daily at 08:00")
        page.screenshot(path=shots / "03-scheduled.png", full_page=True, caret="initial")

        page.goto(f"{server.url}/sites/{SITE}/schedules")
        page.get_by_role("button", name="Send now").click()
        expect(page.get_by_role("status")).to_contain_text("Queued")
        [message] = sink.wait_for(1)
        assert message["Subject"].startswith("Pricing visitors: ")
        assert any(part.get_filename().endswith(".pdf") for part in message.iter_attachments())
        for _ in range(100):  # the scheduler records "sent" just after the SMTP answer
            page.reload()
            if "sent" in page.locator(".schedule-status").inner_text():
                break
        expect(page.locator(".schedule-status")).to_contain_text("sent")
        expect(page.locator(".schedule-status")).to_contain_text("(test)")
        page.screenshot(path=shots / "04-schedules.png", full_page=True, caret="initial")
        # edit it on the schedules page: weekly on Thursday; the destination left empty is kept
        page.get_by_text("Edit", exact=True).click()
        editor = page.locator("form[data-schedule-edit]")
        editor.get_by_label("Send").select_option("weekly")
        editor.get_by_label("weekly on").select_option("3")
        editor.get_by_label("CSV").check()
        page.screenshot(path=shots / "05-schedule-edit.png", full_page=True, caret="initial")
        editor.get_by_role("button", name="Save changes").click()
        expect(page.get_by_role("status")).to_have_text("Schedule changed.")
        row = page.locator("tr[data-schedule]")
        expect(row).to_contain_text("Weekly on Thursday at 08:00")
        expect(row).to_contain_text("PDF, CSV")
        expect(row).to_contain_text(f"mailto://127.0.0.1:{sink.port}")  # kept
        assert page.errors == []
    finally:
        sink.stop()
        page.context.close()
