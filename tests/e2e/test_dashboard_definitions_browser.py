"""Goals, funnels, segments and the shared link in real headless Chromium.

Three visitors (three browser contexts with different user agents, so three visitor ids) open
a tracked test page served from another origin; two click "Sign up", one also "Buy". Then an
admin creates a goal and a funnel through the dashboard's forms, reads the funnel chart's step
counts (3, 2, 1), saves a segment and sees the top line change (3 → 2 visitors), compares it
with everyone, and a fresh browser context without a login opens the shared link. Screenshots
on desktop and on a 390 px phone go to ``test-artifacts/dashboard/``.
"""

from __future__ import annotations

import re
import time
import uuid

import httpx
import pytest
from playwright.sync_api import Browser, Page, expect

from tests.e2e.test_dashboard_browser import (
    TIMEOUT_MS,
    log_in,
    open_page,
    shoot,
    widgets_loaded,
)
from tests.e2e.test_tracker_browser import PageServer
from tests.servers import BROWSER_UA, start_server

PHONE = {"viewport": {"width": 390, "height": 844}, "device_scale_factor": 2, "is_mobile": True, "has_touch": True}


@pytest.fixture(scope="module")
def shop(tmp_path_factory):
    handle = start_server(tmp_path_factory.mktemp("definitions-browser") / "data", env={"FOOTFALL_DEMO": "false"})
    handle.site = f"shop-{uuid.uuid4().hex[:6]}.test"
    with httpx.Client(base_url=handle.url, headers=handle.auth()) as api:
        assert api.post("/api/v1/sites", json={"domain": handle.site, "name": "Shop"}).status_code == 201
    yield handle
    handle.stop()


def visit(browser: Browser, pages: PageServer, footfall_url: str, number: int, clicks: list[str]) -> None:
    """One visitor: a page view through the real tracker, then the buttons named in ``clicks``."""
    user_agent = BROWSER_UA.replace("Chrome/124.0.0.0", f"Chrome/124.0.0.{number}")
    context = browser.new_context(user_agent=user_agent)
    context.set_default_timeout(TIMEOUT_MS)
    page = context.new_page()
    collected = f"{footfall_url}/api/v1/collect"
    with page.expect_response(lambda r: r.url == collected) as sent:
        page.goto(f"{pages.url}/basic/landing")
    assert sent.value.status == 202 and "x-footfall-ignored" not in sent.value.all_headers()
    for name in clicks:
        with page.expect_response(lambda r: r.url == collected) as sent:
            page.get_by_role("button", name=name).click()
        assert sent.value.status == 202
    context.close()


def reload_until(page: Page, locator, text: str, attempts: int = 50) -> None:
    """Goals are back-filled in the background: reload until the number shows."""
    for _ in range(attempts):
        if locator.count() and locator.inner_text().strip() == text:
            return
        time.sleep(0.2)
        page.reload()
    expect(locator).to_have_text(text)


def top_visitors(page: Page) -> str:
    widgets_loaded(page)
    return page.locator('[data-metric="visitors"]').inner_text().strip()


def test_goal_funnel_segment_and_shared_link_through_the_forms(shop, browser):
    site = shop.site
    pages = PageServer(shop.url, site)
    try:
        visit(browser, pages, shop.url, 1, ["Sign up (pro)", "Buy (19.99 EUR)"])
        visit(browser, pages, shop.url, 2, ["Sign up (pro)"])
        visit(browser, pages, shop.url, 3, [])
    finally:
        pages.close()

    page = open_page(browser)
    page.on("dialog", lambda dialog: dialog.accept())
    log_in(page, shop.url, "admin", shop.password)
    page.goto(f"{shop.url}/sites/{site}")
    assert top_visitors(page) == "3"

    # a goal, through the form
    page.get_by_role("navigation", name="Site").get_by_role("link", name="Goals").click()
    page.wait_for_url(f"**/sites/{site}/goals**")
    form = page.locator("#goal-form")
    form.get_by_label("Name", exact=True).fill("Purchase")
    form.get_by_label("Kind").select_option("conversion")
    form.get_by_label("Page pattern").fill("purchase")
    form.get_by_role("button", name="Create goal").click()
    expect(page.get_by_role("status")).to_contain_text("Saved goal “Purchase”")
    row = page.locator('tr[data-goal="Purchase"]')
    reload_until(page, row.locator('[data-column="conversions"]'), "1")
    expect(row.locator('[data-column="conversion_rate"]')).to_have_text("33%")
    expect(row).to_contain_text("19.99 EUR")
    shoot(page, "12-goals.png")

    # a funnel of three steps (page, event, goal), through the form
    page.get_by_role("navigation", name="Site").get_by_role("link", name="Funnels").click()
    page.wait_for_url(f"**/sites/{site}/funnels**")
    form = page.locator("#funnel-form")
    form.get_by_label("Name", exact=True).fill("Landing to purchase")
    form.get_by_label("Step 1 kind").select_option("page")
    form.get_by_label("Step 1", exact=True).fill("/basic/*")
    form.get_by_label("Step 2 kind").select_option("event")
    form.get_by_label("Step 2", exact=True).fill("Signup")
    expect(form.get_by_label("Step 3", exact=True)).to_be_hidden()  # spare steps wait for "Add a step"
    form.get_by_role("button", name="Add a step").click()
    form.get_by_label("Step 3 kind").select_option("goal")
    form.get_by_label("Step 3", exact=True).fill("Purchase")
    shoot(page, "13-funnel-form.png")
    form.get_by_role("button", name="Create funnel").click()
    page.wait_for_url(re.compile(r".*/funnels/\d+.*"))
    steps = page.locator("table.funnel-steps tbody tr")
    expect(steps).to_have_count(3)
    counts = [steps.nth(i).locator('[data-column="visitors"]').inner_text() for i in range(3)]
    assert counts == ["3", "2", "1"]
    bars = page.locator(".chart-wide svg g.bar-group")
    expect(bars).to_have_count(3)
    expect(bars.nth(1).locator("title")).to_have_text(re.compile(r"Step 2 · event: Signup: 2 visitors \(67% of step 1"))
    expect(page.locator('[data-metric="conversion"]')).to_have_text("33%")
    bars.nth(2).hover()
    shoot(page, "14-funnel-report.png")
    funnel_url = page.url

    # a segment, through the form: the dashboard opens through it and the numbers change
    page.get_by_role("navigation", name="Site").get_by_role("link", name="Segments").click()
    page.wait_for_url(f"**/sites/{site}/segments**")
    form = page.locator("#segment-form")
    form.get_by_label("Name", exact=True).fill("Signed up")
    form.get_by_label("Condition 1", exact=True).select_option("did_event")
    form.get_by_label("Condition 1 value").fill("Signup")
    form.get_by_role("button", name="Create segment").click()
    page.wait_for_url(re.compile(r".*segment=\d+.*"))
    assert top_visitors(page) == "2"
    expect(page.locator(".chip-segment")).to_contain_text("Segment Signed up")
    shoot(page, "15-dashboard-segment.png")
    page.get_by_role("link", name="Remove segment Signed up").click()
    page.wait_for_url(lambda url: "segment=" not in url)
    assert top_visitors(page) == "3"
    # the picker applies it again
    page.locator(".segment-menu summary").click()
    page.locator(".segment-menu").get_by_role("link", name="Signed up").click()
    page.wait_for_url(re.compile(r".*segment=\d+.*"))
    assert top_visitors(page) == "2"
    segment_id = re.search(r"segment=(\d+)", page.url).group(1)
    # the funnel report honours the segment in the URL
    page.goto(f"{funnel_url}{'&' if '?' in funnel_url else '?'}segment={segment_id}")
    counts = [page.locator("table.funnel-steps tbody tr").nth(i).locator('[data-column="visitors"]').inner_text()
              for i in range(3)]
    assert counts == ["2", "2", "1"]

    # side by side with everyone
    page.goto(f"{shop.url}/sites/{site}/segments")
    page.get_by_role("link", name="Compare with everyone").click()
    visitors = page.locator('tr[data-metric="visitors"] td')
    expect(visitors.nth(0)).to_have_text("2")
    expect(visitors.nth(1)).to_have_text("3")
    shoot(page, "16-segment-compare.png")
    assert page.errors == [], page.errors

    # the shared link, made on the settings page (shown once)
    page.get_by_role("navigation", name="Site").get_by_role("link", name="Settings").click()
    page.get_by_role("button", name="Create a shared link").click()
    shared_url = page.get_by_role("textbox", name="Shared link").input_value()
    assert re.fullmatch(rf"{re.escape(shop.url)}/sites/{re.escape(site)}\?auth=ffs_[\w-]+", shared_url)
    expect(page.get_by_role("button", name="Replace the shared link")).to_be_visible()
    shoot(page, "23-settings-shared-link.png")

    # the phone
    phone = open_page(browser, **PHONE)
    log_in(phone, shop.url, "admin", shop.password)
    phone.goto(f"{shop.url}/sites/{site}?segment={segment_id}")
    widgets_loaded(phone)
    shoot(phone, "17-phone-dashboard-segment.png")
    phone.goto(funnel_url)
    expect(phone.locator(".chart-narrow svg")).to_be_visible()
    shoot(phone, "18-phone-funnel.png")
    phone.goto(f"{shop.url}/sites/{site}/funnels")
    shoot(phone, "19-phone-funnels-form.png")
    phone.goto(f"{shop.url}/sites/{site}/goals")
    shoot(phone, "20-phone-goals.png")
    assert phone.errors == [], phone.errors
    phone.context.close()
    page.context.close()

    # the shared link, in a fresh context with no login
    visitor = open_page(browser)
    visitor.goto(shared_url)
    assert top_visitors(visitor) == "3"
    nav = visitor.get_by_role("navigation", name="Main")
    expect(nav.get_by_role("link", name="Log in")).to_be_visible()
    expect(nav.get_by_role("link", name="Sites")).to_have_count(0)
    expect(visitor.get_by_role("link", name="Settings")).to_have_count(0)
    expect(visitor.locator("form[method=post]")).to_have_count(0)
    shoot(visitor, "21-shared-link.png")
    # moving around keeps the link: the period picker, then the funnel report
    visitor.locator(".period-menu summary").click()
    visitor.get_by_role("link", name="Last 7 days").click()
    visitor.wait_for_url("**period=7d**")
    assert top_visitors(visitor) == "3"
    visitor.get_by_role("navigation", name="Site").get_by_role("link", name="Funnels").click()
    visitor.get_by_role("link", name="Landing to purchase").click()
    expect(visitor.locator(".chart-wide svg g.bar-group")).to_have_count(3)
    expect(visitor.locator("form[method=post]")).to_have_count(0)
    shoot(visitor, "22-shared-link-funnel.png")
    assert visitor.errors == [], visitor.errors
    visitor.context.close()
