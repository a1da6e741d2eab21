"""The dashboard in real headless Chromium (Debian's package, driven by Playwright): log in,
open a seeded site, change the period, filter by a source and remove the filter, watch the
live view receive events sent from a second, tracked page, and check a viewer does not see
the admin pages. Screenshots of the main pages go to ``test-artifacts/dashboard/``.
"""

from __future__ import annotations

import time
import uuid
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Browser, Page, expect

from tests.e2e.conftest import utc_today
from tests.e2e.test_tracker_browser import PageServer
from tests.servers import BROWSER_UA, ROOT, start_server

SHOTS = ROOT / "test-artifacts" / "dashboard"
SHOTS.mkdir(parents=True, exist_ok=True)
PASSWORD = "a long enough password"
TIMEOUT_MS = 15_000


@pytest.fixture(scope="module")
def seeded(tmp_path_factory):
    handle = start_server(tmp_path_factory.mktemp("dashboard-browser") / "data", env={"FOOTFALL_DEMO_DAYS": "30"})
    live_site = f"live-{uuid.uuid4().hex[:6]}.test"
    with httpx.Client(base_url=handle.url, headers=handle.auth()) as api:
        assert api.post("/api/v1/sites", json={"domain": live_site, "name": "Live test"}).status_code == 201
        answer = api.post("/api/v1/users", json={"username": "vera", "password": PASSWORD, "role": "viewer",
                                                 "sites": ["localhost", live_site]})
        assert answer.status_code == 201, answer.text
    handle.live_site = live_site
    yield handle
    handle.stop()


def open_page(browser: Browser, **options) -> Page:
    context = browser.new_context(**{"user_agent": BROWSER_UA, "viewport": {"width": 1280, "height": 900}, **options})
    context.set_default_timeout(TIMEOUT_MS)
    page = context.new_page()
    page.errors = []  # type: ignore[attr-defined]
    page.on("pageerror", lambda error: page.errors.append(str(error)))
    page.on("console", lambda message: message.type == "error" and "404" not in message.text
            and page.errors.append(message.text))
    # a missing resource is named by its response (the console message does not say which)
    page.on("response", lambda response: response.status == 404 and not response.url.endswith("/favicon.ico")
            and page.errors.append(f"404 {response.url}"))
    return page


def log_in(page: Page, url: str, username: str, password: str, shot: str | None = None) -> None:
    page.goto(f"{url}/login?next=/sites")
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(password)
    if shot:
        page.screenshot(path=SHOTS / shot)
    page.get_by_role("button", name="Log in").click()
    page.wait_for_url("**/sites")


def widgets_loaded(page: Page) -> None:
    expect(page.locator("[aria-busy=true]")).to_have_count(0)
    expect(page.locator("#widget-chart svg")).to_be_visible()


def shoot(page: Page, name: str) -> None:
    page.screenshot(path=SHOTS / name, full_page=True)


def test_log_in_change_period_filter_by_a_source_and_remove_it(seeded, browser):
    page = open_page(browser)
    log_in(page, seeded.url, "admin", seeded.password, shot="01-login.png")
    expect(page.get_by_role("heading", name="Sites")).to_be_visible()
    expect(page.locator(".site-card svg.sparkline")).to_have_count(2)
    shoot(page, "02-sites.png")

    page.get_by_role("link", name="Demo site").click()
    page.wait_for_url("**/sites/localhost")
    widgets_loaded(page)
    visitors_30d = page.locator('[data-metric="visitors"]').inner_text()
    assert page.locator(".period-menu summary").inner_text().strip() == "Last 30 days"
    shoot(page, "03-dashboard.png")

    # hover values without a chart library: the label of a point shows on hover
    point = page.locator("#widget-chart g.point").nth(10)
    point.hover()
    expect(point.locator("g.tip")).to_be_visible()

    # change the period with the keyboard-reachable menu
    page.locator(".period-menu summary").click()
    page.get_by_role("link", name="Last 7 days").click()
    page.wait_for_url("**period=7d**")
    widgets_loaded(page)
    expect(page.locator(".period-menu summary")).to_have_text("Last 7 days")
    assert page.locator('[data-metric="visitors"]').inner_text() != visitors_30d

    # a tab loads on its own (htmx), and the URL keeps it
    sources = page.locator("#widget-sources")
    sources.get_by_role("link", name="Sources", exact=True).click()
    expect(page.locator("#widget-sources h2")).to_have_text("Sources")
    page.wait_for_url("**sources=source**")

    # click a source: the whole dashboard is filtered by it, shown as a removable chip
    filtered_on = utc_today()
    page.locator("#widget-sources").get_by_role("link", name="Google", exact=True).click()
    page.wait_for_url("**filter=source%3AGoogle**")
    widgets_loaded(page)
    chip = page.locator(".chip")
    expect(chip).to_contain_text("Source is Google")
    expect(page.locator("#widget-sources tbody tr")).to_have_count(1)  # only Google is left
    shoot(page, "04-dashboard-filtered.png")

    # the URL alone reproduces the view (a bookmark, another tab)
    bookmark = page.url
    other = open_page(browser)
    log_in(other, seeded.url, "admin", seeded.password)
    other.goto(bookmark)
    widgets_loaded(other)
    expect(other.locator(".chip")).to_contain_text("Source is Google")
    if utc_today() != filtered_on:  # period=7d moved on a day at midnight (UTC): both again, on the new day
        for tab in (page, other):
            tab.reload()
            widgets_loaded(tab)
    assert other.locator('[data-metric="visitors"]').inner_text() == page.locator('[data-metric="visitors"]').inner_text()
    other.context.close()

    # remove the filter
    page.get_by_role("link", name="Remove filter Source is Google").click()
    page.wait_for_url(lambda url: "filter=" not in url)
    widgets_loaded(page)
    expect(page.locator(".chip")).to_have_count(0)

    # details: the full breakdown, sortable
    page.locator("#widget-pages").get_by_role("link", name="Details").click()
    page.wait_for_url("**/details/page**")
    page.get_by_role("link", name="Page", exact=True).click()
    page.wait_for_url("**sort=label**")
    shoot(page, "05-details.png")
    assert page.errors == [], page.errors  # no CSP violation, no script error
    page.context.close()


def test_live_view_shows_events_from_a_tracked_page_within_a_second(seeded, browser):
    site = seeded.live_site
    pages = PageServer(seeded.url, site)
    try:
        live = open_page(browser)
        log_in(live, seeded.url, "admin", seeded.password)
        live.goto(f"{seeded.url}/sites/{site}/live")
        expect(live.locator("#current-visitors")).to_have_text("0")
        live.wait_for_timeout(300)  # the EventSource connects

        visitor = open_page(browser)
        with visitor.expect_response(lambda r: r.url.endswith("/api/v1/collect")) as sent:
            visitor.goto(f"{pages.url}/basic/from-the-test")
        headers = sent.value.all_headers()
        assert sent.value.status == 202 and "x-footfall-ignored" not in headers, headers  # the tracker's "committed"
        acknowledged = time.monotonic()
        row = live.locator("#live-events tr", has_text="/basic/from-the-test")
        expect(row).to_be_visible(timeout=2000)
        assert time.monotonic() - acknowledged < 1.0
        expect(live.locator("#current-visitors")).to_have_text("1")

        with visitor.expect_response(lambda r: r.url.endswith("/api/v1/collect")):
            visitor.get_by_role("button", name="Sign up (pro)").click()
        expect(live.locator("#live-events tr", has_text="Signup")).to_be_visible(timeout=2000)
        with visitor.expect_response(lambda r: r.url.endswith("/api/v1/collect")):
            visitor.get_by_role("button", name="Buy (19.99 EUR)").click()
        expect(live.locator("#live-events tr.kind-conversion")).to_contain_text("19.99 EUR", timeout=2000)
        live.wait_for_timeout(1200)  # the chart follows at most once a second
        # the events' minute is the chart's last point, or the one before it when a new minute
        # began since they were sent (its point then reads 0): one of the two counts them
        live.wait_for_function(
            """() => [...document.querySelectorAll('#live-chart g.point')].slice(-2)
                   .some(point => !/: 0$/.test(point.getAttribute('aria-label') || ''))""",
            timeout=5000,
        )
        shoot(live, "06-live.png")
        assert live.errors == [], live.errors
        visitor.context.close()
        live.context.close()
    finally:
        pages.close()


def test_a_viewer_does_not_see_admin_pages(seeded, browser):
    page = open_page(browser)
    log_in(page, seeded.url, "vera", PASSWORD)
    nav = page.get_by_role("navigation", name="Main")
    expect(nav.get_by_role("link", name="Sites")).to_be_visible()
    expect(nav.get_by_role("link", name="Users")).to_have_count(0)
    expect(nav.get_by_role("link", name="Plugins")).to_have_count(0)
    for path in ("/admin/users", "/admin/plugins"):
        answer = page.goto(f"{seeded.url}{path}")
        assert answer.status == 403
    answer = page.goto(f"{seeded.url}/sites/localhost/settings")
    assert answer.status == 200
    expect(page.get_by_role("button", name="Save")).to_have_count(0)
    page.context.close()


def test_screenshots_of_admin_pages_dark_mode_and_a_phone(seeded, browser):
    page = open_page(browser)
    log_in(page, seeded.url, "admin", seeded.password)
    for path, name in (("/admin/users", "07-users.png"), ("/admin/plugins", "08-plugins.png"),
                       ("/sites/localhost/settings", "09-settings.png")):
        assert page.goto(f"{seeded.url}{path}").status == 200
        shoot(page, name)
    page.context.close()

    dark = open_page(browser, color_scheme="dark")
    log_in(dark, seeded.url, "admin", seeded.password)
    dark.goto(f"{seeded.url}/sites/localhost?period=month")
    widgets_loaded(dark)
    shoot(dark, "10-dashboard-dark.png")
    dark.context.close()

    phone = open_page(browser, viewport={"width": 390, "height": 844}, is_mobile=True, has_touch=True)
    log_in(phone, seeded.url, "admin", seeded.password)
    phone.goto(f"{seeded.url}/sites/localhost")
    widgets_loaded(phone)
    width = phone.evaluate("() => document.documentElement.scrollWidth")
    shoot(phone, "11-dashboard-phone.png")
    assert width <= 390, f"the page scrolls sideways on a phone ({width} px)"
    shoot(phone, "11-dashboard-phone.png")
    # keyboard: the period menu opens from the keyboard and its links are reachable
    phone.locator(".period-menu summary").focus()
    phone.keyboard.press("Enter")
    expect(phone.get_by_role("link", name="Yesterday")).to_be_visible()
    phone.keyboard.press("Escape")
    expect(phone.get_by_role("link", name="Yesterday")).to_be_hidden()
    phone.context.close()


def test_a_throttled_login_says_how_long_to_wait(browser, tmp_path):
    """After too many wrong passwords the browser gets the login page again, not JSON."""
    handle = start_server(tmp_path / "data", env={"FOOTFALL_AUTH_LOGIN_BURST_PER_USERNAME": "1",
                                                  "FOOTFALL_AUTH_LOGIN_RATE_PER_USERNAME_PER_MINUTE": "6"})
    try:
        page = open_page(browser)
        page.goto(f"{handle.url}/login?next=/sites")
        for _ in range(2):
            page.get_by_label("Username").fill("admin")
            page.get_by_label("Password").fill("wrong-password-0")
            with page.expect_navigation() as navigation:
                page.get_by_role("button", name="Log in").click()
        answer = navigation.value
        assert answer.status == 429 and answer.headers["content-type"].startswith("text/html")
        wait = int(answer.headers["retry-after"])
        expect(page.get_by_role("alert")).to_have_text(f"Too many attempts; try again in {wait} seconds.")
        expect(page.get_by_label("Username")).to_have_value("admin")
        expect(page.get_by_role("button", name="Log in")).to_be_visible()
        page.context.close()
    finally:
        handle.stop()


def test_artifacts_were_written():
    names = {path.name for path in Path(SHOTS).glob("*.png")}
    assert {"01-login.png", "03-dashboard.png", "04-dashboard-filtered.png", "06-live.png"} <= names
