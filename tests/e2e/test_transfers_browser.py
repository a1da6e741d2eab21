"""The Import & export page in headless Chromium: an export runs as a job whose progress the
page polls (htmx) until the download link appears, and an uploaded access log is imported
with its report shown. Screenshots go to ``test-artifacts/dashboard/``."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
from playwright.sync_api import expect

from tests.e2e.test_dashboard_browser import log_in, open_page, shoot
from tests.servers import start_server

LOG = Path(__file__).resolve().parents[1] / "fixtures" / "imports" / "nginx-combined.log"


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    handle = start_server(tmp_path_factory.mktemp("transfers-browser") / "data", env={"FOOTFALL_DEMO_DAYS": "2"})
    # the fixture log has fixed dates: keep them inside the retention period for years
    with httpx.Client(base_url=handle.url, headers=handle.auth()) as api:
        assert api.patch("/api/v1/sites/localhost", json={"retention_days": 3650}).status_code == 200
    yield handle
    handle.stop()


def test_export_and_import_jobs_show_progress_and_results(server, browser):
    page = open_page(browser)
    log_in(page, server.url, "admin", server.password)
    page.goto(f"{server.url}/sites/localhost")
    page.get_by_role("link", name="Import & export").click()
    page.wait_for_url("**/sites/localhost/transfers")
    page.get_by_label("Format").select_option("csv")
    page.get_by_role("button", name="Start the export").click()
    link = page.locator("#transfer-jobs a[download]")
    expect(link).to_have_text("localhost-events-" + page.get_by_label("From").input_value() + "-"
                              + page.get_by_label("To").input_value() + ".csv")
    with page.expect_download() as download:
        link.click()
    assert Path(download.value.path()).read_text().startswith("v,t,kind,visitor,id,")
    page.get_by_label("Kind").select_option("access-log")
    page.get_by_label("File").set_input_files(str(LOG))
    page.get_by_label("Dry run").check()
    page.get_by_role("button", name="Import").click()
    result = page.locator('[data-job="import-1"]')
    expect(result).to_contain_text("would import 5 events")
    expect(result).to_contain_text("skipped 1 (bot)")
    shoot(page, "20-import-export.png")
    assert not page.errors, page.errors
