"""The front door in headless Chromium: the styled login page, the site list after login, a
404 page, and a new site's onboarding page receiving its first event live (sent with httpx
while the page waits). Light and dark screenshots go to ``test-artifacts/frontdoor/``
(``after-*.png``; the ``before-*.png`` next to them were taken on the code before).
"""

from __future__ import annotations

import uuid

import httpx
import pytest
from playwright.sync_api import Browser, Page, expect

from tests.servers import BROWSER_UA, ROOT, start_server

SHOTS = ROOT / "test-artifacts" / "frontdoor"
SHOTS.mkdir(parents=True, exist_ok=True)
TIMEOUT_MS = 15_000
SCHEMES = ("light", "dark")


@pytest.fixture(scope="module")
def door(tmp_path_factory):
    handle = start_server(tmp_path_factory.mktemp("front-door") / "data", env={"FOOTFALL_DEMO_DAYS": "7"})
    handle.empty_sites = []
    with httpx.Client(base_url=handle.url, headers=handle.auth()) as api:
        for scheme in SCHEMES:
            domain = f"new-{scheme}-{uuid.uuid4().hex[:6]}.test"
            assert api.post("/api/v1/sites", json={"domain": domain, "name": f"New site ({scheme})"}).status_code == 201
            handle.empty_sites.append(domain)
    yield handle
    handle.stop()


def open_page(browser: Browser, scheme: str = "light", **options) -> Page:
    context = browser.new_context(user_agent=BROWSER_UA, viewport={"width": 1280, "height": 860},
                                  color_scheme=scheme, **options)
    context.set_default_timeout(TIMEOUT_MS)
    page = context.new_page()
    page.errors = []  # type: ignore[attr-defined]
    page.on("pageerror", lambda error: page.errors.append(str(error)))
    # a failed load is judged by its response below: the 404 page itself is expected
    page.on("console", lambda message: message.type == "error" and "Failed to load resource" not in message.text
            and page.errors.append(message.text))
    # every missing resource counts, the favicon too (a page expected to 404 is checked apart)
    page.on("response", lambda response: response.status == 404 and response.request.resource_type != "document"
            and page.errors.append(f"404 {response.url}"))
    return page


def shoot(page: Page, name: str) -> None:
    page.screenshot(path=SHOTS / name, full_page=True)


def log_in(page: Page, url: str, password: str, scheme: str) -> None:
    page.goto(f"{url}/")
    page.wait_for_url("**/login")  # the front door sends a visitor to the login page
    expect(page.get_by_role("heading", name="Log in to Footfall")).to_be_visible()
    page.get_by_label("Username").fill("admin")
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Log in").click()
    page.wait_for_url("**/sites")  # and the login lands on the site list


@pytest.mark.parametrize("scheme", SCHEMES)
def test_login_page_is_styled_and_lands_on_the_site_list(door, browser, scheme):
    page = open_page(browser, scheme)
    page.goto(f"{door.url}/login")
    card = page.locator(".auth-card")
    expect(card).to_be_visible()
    # the dashboard's stylesheet applies: a card with rounded corners, the theme's background
    assert card.evaluate("e => getComputedStyle(e).borderRadius") == "10px"
    background = page.evaluate("() => getComputedStyle(document.body).backgroundColor")
    assert background == ("rgb(246, 247, 249)" if scheme == "light" else "rgb(15, 17, 21)")
    icon = page.evaluate("() => document.querySelector('link[rel=icon]').href")
    assert icon.endswith("/static/favicon.svg")
    shoot(page, f"after-login-{scheme}.png")

    log_in(page, door.url, door.password, scheme)
    expect(page.get_by_role("heading", name="Sites")).to_be_visible()
    expect(page.locator(".site-card", has_text=door.empty_sites[0]).get_by_role("link", name="Set up tracking")).to_be_visible()
    shoot(page, f"after-sites-{scheme}.png")
    page.goto(f"{door.url}/")
    page.wait_for_url("**/sites")
    page.goto(f"{door.url}/account")
    expect(page.get_by_role("heading", name="Your account")).to_be_visible()
    shoot(page, f"after-account-{scheme}.png")
    assert page.errors == [], page.errors  # no CSP violation, no missing favicon
    page.context.close()


@pytest.mark.parametrize("scheme", SCHEMES)
def test_a_missing_page_is_a_styled_404_with_a_way_home(door, browser, scheme):
    page = open_page(browser, scheme)
    answer = page.goto(f"{door.url}/no-such-page")
    assert answer.status == 404 and answer.headers["content-type"].startswith("text/html")
    expect(page.get_by_role("heading", name="Page not found")).to_be_visible()
    expect(page.locator(".error-status")).to_have_text("404")
    shoot(page, f"after-404-{scheme}.png")
    page.get_by_role("link", name="Go to the front page").click()
    page.wait_for_url("**/login")
    assert page.errors == [], page.errors
    page.context.close()


@pytest.mark.parametrize("scheme", SCHEMES)
def test_onboarding_page_sees_the_first_event_arrive(door, browser, scheme):
    site = door.empty_sites[SCHEMES.index(scheme)]
    page = open_page(browser, scheme, permissions=["clipboard-read", "clipboard-write"])
    page.add_init_script("document.addEventListener('htmx:sseOpen', () => { window.footfallSseOpen = true; });")
    log_in(page, door.url, door.password, scheme)
    page.goto(f"{door.url}/sites/{site}")
    expect(page.get_by_role("heading", name="Add the snippet to your site")).to_be_visible()
    expect(page.locator("#tracking-snippet")).to_contain_text(f'data-site="{site}"')
    page.get_by_role("button", name="Copy snippet").click()
    expect(page.locator(".copy-status")).to_have_text("Copied.")
    copied = page.evaluate("() => navigator.clipboard.readText()")
    assert copied == f'<script defer src="{door.url}/js/footfall.js" data-site="{site}"></script>'
    status = page.locator("#verify-status")
    expect(status).to_contain_text("Waiting for the first event")
    expect(page.get_by_role("link", name="Open the dashboard")).to_be_hidden()
    page.wait_for_function("() => window.footfallSseOpen === true")
    shoot(page, f"after-onboarding-waiting-{scheme}.png")

    sent = httpx.post(f"{door.url}/api/v1/events", headers={"user-agent": BROWSER_UA}, json={
        "event_type": "page_view", "site": site, "user_id": uuid.uuid4().hex,
        "metadata": {"page_url": f"https://{site}/hello-footfall"}})
    assert sent.status_code == 200, sent.text
    expect(status).to_contain_text("Your first event arrived at", timeout=5000)
    expect(status).to_contain_text("page view on /hello-footfall")
    expect(page.locator("#verify-events tr", has_text="/hello-footfall")).to_be_visible()
    shoot(page, f"after-onboarding-arrived-{scheme}.png")

    page.get_by_role("link", name="Open the dashboard").click()
    page.wait_for_url(f"**/sites/{site}")
    expect(page.locator("#widget-top")).to_be_visible()
    expect(page.locator("#tracking-snippet")).to_have_count(0)
    assert page.errors == [], page.errors
    page.context.close()


def test_screenshots_were_written():
    names = {path.name for path in SHOTS.glob("after-*.png")}
    for scheme in SCHEMES:
        assert {f"after-login-{scheme}.png", f"after-sites-{scheme}.png", f"after-404-{scheme}.png",
                f"after-onboarding-arrived-{scheme}.png"} <= names
