"""The dashboard's Export menu in real headless Chromium (Debian's, driven by Playwright): a
signed-in viewer downloads the whole dashboard as PDF and the top-pages widget as CSV, and
the files hold the numbers the API gives for the same period. Screenshots of the open menu go
to the test's temporary directory.
"""

from __future__ import annotations

import csv
import io

import httpx
import pytest
from playwright.sync_api import Browser, expect
from pypdf import PdfReader

from tests.e2e.test_dashboard_browser import log_in, open_page, widgets_loaded
from tests.servers import start_server

SITE = "localhost"
PASSWORD = "a long enough password"


@pytest.fixture(scope="module")
def seeded(tmp_path_factory):
    handle = start_server(tmp_path_factory.mktemp("exports-browser") / "data", env={"FOOTFALL_DEMO_DAYS": "3"})
    with httpx.Client(base_url=handle.url, headers=handle.auth()) as api:
        answer = api.post("/api/v1/users", json={"username": "vera", "password": PASSWORD, "role": "viewer", "sites": [SITE]})
        assert answer.status_code == 201, answer.text
    yield handle
    handle.stop()


def api_get(handle, path: str, **params) -> dict:
    with httpx.Client(base_url=handle.url, headers=handle.auth()) as api:
        return api.get(path, params={"site": SITE, **params}).json()["data"]


def test_export_menu_downloads_pdf_and_csv(seeded, browser: Browser, tmp_path):
    page = open_page(browser, accept_downloads=True)
    log_in(page, seeded.url, "vera", PASSWORD)
    page.goto(f"{seeded.url}/sites/{SITE}?period=30d")
    widgets_loaded(page)

    menu = page.locator(".controls .export-menu")
    menu.locator("summary").click()
    expect(menu.get_by_role("link", name="PDF")).to_be_visible()
    page.screenshot(path=tmp_path / "export-menu.png")
    with page.expect_download() as pdf_download:
        menu.get_by_role("link", name="PDF").click()
    pdf_path = tmp_path / pdf_download.value.suggested_filename
    pdf_download.value.save_as(pdf_path)
    assert pdf_path.suffix == ".pdf"
    reader = PdfReader(pdf_path)
    text = "\n".join(p.extract_text() for p in reader.pages)
    totals = api_get(seeded, "/api/v1/stats/aggregate")
    assert f"Dashboard of {SITE}" in text and str(totals["visitors"]) in text and str(totals["pageviews"]) in text

    widget = page.locator("#widget-pages .export-menu")
    widget.locator("summary").click()
    page.screenshot(path=tmp_path / "widget-export-menu.png")
    with page.expect_download() as csv_download:
        widget.get_by_role("link", name="CSV").click()
    csv_path = tmp_path / csv_download.value.suggested_filename
    csv_download.value.save_as(csv_path)
    rows = list(csv.DictReader(io.StringIO(csv_path.read_text(encoding="utf-8"), newline="")))
    top = api_get(seeded, "/api/v1/stats/breakdown", property="page", limit=9)["results"]
    assert [(row["page"], int(row["visitors"])) for row in rows] == [(row["value"], row["visitors"]) for row in top]
    assert not page.errors, page.errors
