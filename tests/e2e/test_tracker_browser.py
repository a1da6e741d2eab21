"""The tracker in a real browser: Debian's chromium, driven by Playwright, against a real server.

Test pages (``tests/e2e/pages``) are served by a tiny HTTP server of their own on another
loopback port, so ``footfall.js`` runs cross-origin exactly as on a customer's site. Every
test opens a fresh browser context and polls the API (live buffer, stats, reports) until
what the browser sent has been committed, instead of sleeping.
"""

from __future__ import annotations

import http.server
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import BROWSER_UA, ROOT
from tests.e2e.conftest import CHROMIUM

if not CHROMIUM.exists():
    pytest.skip(
        "Debian's chromium is not installed at /usr/bin/chromium (scripts/test installs it)",
        allow_module_level=True,
    )

from playwright.sync_api import BrowserContext, Page, Request  # noqa: E402

PAGES = Path(__file__).parent / "pages"
ARTIFACTS = ROOT / "test-artifacts"
DEADLINE_S = 15.0


# -- helpers ------------------------------------------------------------------------------
def wait_for(probe: Callable[[], Any], what: str, timeout: float = DEADLINE_S) -> Any:
    """Call ``probe`` until it returns something truthy; fail with ``what`` at the deadline."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = probe()
        if last:
            return last
        time.sleep(0.05)
    pytest.fail(f"timed out after {timeout} s waiting for {what}; last probe: {last!r}")


class Footfall:
    """The API side of the tests: one isolated site on the shared server."""

    def __init__(self, server, site: str) -> None:
        self.server = server
        self.site = site
        self.client = server.client(headers=server.auth())

    def get(self, path: str, **params) -> Any:
        response = self.client.get(path, params={"site": self.site, **params})
        assert response.status_code == 200, response.text
        return response.json()

    def live(self) -> list[dict[str, Any]]:
        """Committed events of the site, oldest first."""
        return self.get("/api/v1/live", limit=5000)["data"][::-1]

    def live_where(self, **match) -> list[dict[str, Any]]:
        return [e for e in self.live() if all(e.get(k) == v for k, v in match.items())]

    def wait_live(self, count: int = 1, **match) -> list[dict[str, Any]]:
        """Wait until at least ``count`` live events match, then return all that match."""
        return wait_for(
            lambda: (found := self.live_where(**match)) and len(found) >= count and found,
            f"{count} live event(s) matching {match}",
        )


class PageServer:
    """Serves ``pages/<first path segment>.html`` for any path, with the real URLs filled in."""

    def __init__(self, footfall_url: str, site: str) -> None:
        replacements = {"{{footfall_url}}": footfall_url, "{{site}}": site}

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - the stdlib's name
                name = self.path.split("?")[0].strip("/").split("/")[0]
                page = PAGES / f"{name}.html"
                if not name.isidentifier() or not page.is_file():
                    self.send_error(404)
                    return
                html = page.read_text()
                for marker, value in replacements.items():
                    html = html.replace(marker, value)
                body = html.encode()
                self.send_response(200)
                self.send_header("Content-Type", "text/html; charset=utf-8")
                self.send_header("Content-Length", str(len(body)))
                self.send_header("Cache-Control", "no-store")
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args) -> None:
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(timeout=5)


def collect_requests(page: Page, footfall_url: str) -> list[Request]:
    """Record every request the page sends to the collect endpoint, in order."""
    sent: list[Request] = []
    collect = f"{footfall_url}/api/v1/collect"
    page.on("request", lambda request: request.url == collect and sent.append(request))
    return sent


def record_beacons(page: Page) -> Callable[[], list[dict[str, Any]]]:
    """Keep a copy of every beacon body the page sends (the call itself is passed through).

    Playwright does not expose the bodies of ``navigator.sendBeacon`` requests, and its
    request events arrive asynchronously; this records them synchronously, in order.
    """
    page.add_init_script(
        """(() => {
            const send = navigator.sendBeacon.bind(navigator);
            window.__beacons = [];
            navigator.sendBeacon = (url, data) => (window.__beacons.push(data), send(url, data));
        })()"""
    )
    return lambda: page.evaluate(
        "() => Promise.all(window.__beacons.map(b => b.text())).then(t => t.map(JSON.parse))"
    )


def wait_tracker(page: Page) -> None:
    page.wait_for_function("() => typeof window.footfall?.track === 'function'")


def hide(page: Page) -> None:
    """Make the document hidden as a tab switch would, and tell the page so."""
    page.evaluate(
        """() => {
            Object.defineProperty(document, 'visibilityState', {value: 'hidden', configurable: true});
            Object.defineProperty(document, 'hidden', {value: true, configurable: true});
            document.dispatchEvent(new Event('visibilitychange'));
        }"""
    )


# -- fixtures -----------------------------------------------------------------------------
@pytest.fixture(scope="module")
def footfall(server) -> Footfall:
    site = f"tracker-{uuid.uuid4().hex[:8]}.test"
    with server.client(headers=server.auth()) as client:
        response = client.post(
            "/api/v1/sites", json={"domain": site, "name": "Tracker browser test"}
        )
    assert response.status_code == 201, response.text
    api = Footfall(server, site)
    yield api
    api.client.close()


@pytest.fixture(scope="module")
def pages(footfall) -> PageServer:
    served = PageServer(footfall.server.url, footfall.site)
    yield served
    served.close()


@pytest.fixture
def context(browser) -> BrowserContext:
    opened = browser.new_context(
        user_agent=BROWSER_UA,  # "HeadlessChrome" would rightly be dropped as a bot
        locale="de-DE",
        timezone_id="Europe/Berlin",
        viewport={"width": 1280, "height": 720},
    )
    opened.set_default_timeout(DEADLINE_S * 1000)
    yield opened
    opened.close()


@pytest.fixture
def page(context) -> Page:
    return context.new_page()


# -- scenarios ----------------------------------------------------------------------------
def test_page_load_sends_one_cookieless_page_view(footfall, pages, context, page):
    sent = collect_requests(page, footfall.server.url)
    beacons = record_beacons(page)
    page.goto(f"{pages.url}/basic/load")
    wait_tracker(page)

    # The wire format (appliance/models.py CollectBody): nulls are left out, nothing else sent.
    assert beacons() == [
        {
            "k": "pageview",
            "s": footfall.site,
            "u": f"{pages.url}/basic/load",
            "w": 1280,
            "l": "de-DE",
            "z": "Europe/Berlin",
        }
    ]

    [view] = footfall.wait_live(kind="pageview", path="/basic/load")
    assert view["hostname"] == "127.0.0.1"
    assert view["screen"] == "Laptop"  # 1280 px wide
    assert view["language"] == "de-DE"
    assert view["timezone"] == "Europe/Berlin"
    assert view["browser"] == "Chrome"

    # One beacon, a simple CORS request: POST with text/plain (no preflight), no credentials.
    wait_for(lambda: sent, "Playwright's request event for the beacon")
    assert len(sent) == 1, [r.url for r in sent]
    beacon = sent[0]
    assert beacon.method == "POST"
    assert beacon.resource_type == "ping"  # navigator.sendBeacon
    assert beacon.all_headers()["content-type"].startswith("text/plain")
    assert "cookie" not in beacon.all_headers()

    # Nothing stored on the visitor's device.
    assert context.cookies() == []
    assert page.evaluate("document.cookie") == ""
    assert page.evaluate("localStorage.length") == 0
    assert page.evaluate("sessionStorage.length") == 0

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "tracker-page.png"), full_page=True)

    # Still exactly one page view for this path once everything has settled.
    assert len(footfall.live_where(kind="pageview", path="/basic/load")) == 1


def test_spa_navigation_counts_path_changes_not_hash_changes(footfall, pages, page):
    beacons = record_beacons(page)
    paths = {"/spa/first", "/spa/second"}

    def views() -> list[str]:
        return [e["path"] for e in footfall.live_where(kind="pageview") if e["path"] in paths]

    page.goto(f"{pages.url}/spa/first")
    wait_tracker(page)
    wait_for(lambda: views() == ["/spa/first"], "the first page view")

    page.click("#next")  # history.pushState({}, "", "/spa/second")
    assert page.url == f"{pages.url}/spa/second"
    wait_for(lambda: views() == ["/spa/first", "/spa/second"], "the pushState page view")

    page.go_back()  # popstate back to the first view, in the same document
    assert page.url == f"{pages.url}/spa/first"
    wait_for(
        lambda: views() == ["/spa/first", "/spa/second", "/spa/first"], "the popstate page view"
    )
    sent_pages = [b["u"] for b in beacons() if b["k"] == "pageview"]
    assert sent_pages == [
        f"{pages.url}/spa/first",
        f"{pages.url}/spa/second",
        f"{pages.url}/spa/first",
    ]

    before = len(beacons())
    page.click("#anchor")  # hash-only change: fires popstate and hashchange, same path
    assert page.url == f"{pages.url}/spa/first#details"
    page.evaluate("() => { location.hash = 'elsewhere' }")
    assert page.url == f"{pages.url}/spa/first#elsewhere"
    page.evaluate("() => footfall.track('SpaMarker')")
    footfall.wait_live(kind="custom", name="SpaMarker")
    # The marker is all that was sent since the hash changes, and no page view was added.
    assert [(b["k"], b.get("n")) for b in beacons()[before:]] == [("event", "SpaMarker")]
    assert views() == ["/spa/first", "/spa/second", "/spa/first"]


def test_custom_event_with_props(footfall, pages, page):
    page.goto(f"{pages.url}/basic/custom")
    wait_tracker(page)
    page.click("#signup")  # footfall.track("Signup", {plan: "pro"})

    [event] = footfall.wait_live(kind="custom", name="Signup")
    assert event["props"] == {"plan": "pro"}
    assert event["path"] == "/basic/custom"

    def signups() -> dict[str, Any] | None:
        rows = footfall.get("/api/v1/stats/events")["data"]
        return next((row for row in rows if row["name"] == "Signup" and row["events"]), None)

    row = wait_for(signups, "Signup in /api/v1/stats/events")
    assert row["events"] == 1
    assert row["visitors"] == 1


def test_conversion_with_revenue(footfall, pages, page):
    page.goto(f"{pages.url}/basic/convert")
    wait_tracker(page)
    page.click("#buy")  # footfall.convert("purchase", {amount: 19.99, currency: "eur", sku: "A1"})

    [conversion] = footfall.wait_live(kind="conversion", name="purchase")
    assert conversion["revenue"] == 1999
    assert conversion["currency"] == "EUR"
    assert conversion["props"] == {"sku": "A1"}

    def report() -> dict[str, Any] | None:
        data = footfall.get("/api/v1/reports/conversions")["data"]
        return data if data["conversion_types"] else None

    data = wait_for(report, "the purchase in /api/v1/reports/conversions")
    assert data["conversion_types"] == {"purchase": 1}
    [goal] = data["goals"]
    assert goal["name"] == "purchase"
    assert goal["conversions"] == 1
    assert goal["revenue_minor"] == {"EUR": 1999}


def test_engagement_sent_when_page_is_hidden(footfall, pages, page):
    page.goto(f"{pages.url}/engage/article")
    wait_tracker(page)
    footfall.wait_live(kind="pageview", path="/engage/article")
    assert page.evaluate("document.visibilityState") == "visible"

    page.mouse.wheel(0, 10_000)  # read to the end
    page.wait_for_function(
        "() => scrollY + innerHeight >= document.documentElement.scrollHeight - 1"
    )
    # Visible time is the thing measured: let at least a second of it pass in the page.
    start = page.evaluate("performance.now()")
    page.wait_for_function(f"() => performance.now() - {start} > 1200", polling=100)
    hide(page)

    [engagement] = footfall.wait_live(kind="engagement", path="/engage/article")
    assert engagement["name"] == "engagement"
    assert engagement["engaged_ms"] >= 1000
    assert engagement["engaged_ms"] < 60_000
    assert engagement["scroll_depth"] == 100


def test_calls_queued_before_load_are_replayed(footfall, pages, page):
    page.goto(f"{pages.url}/queue/early")
    wait_tracker(page)
    assert page.evaluate("window.footfall.q") is None  # the stub was replaced

    [event] = footfall.wait_live(kind="custom", name="Early")
    assert event["path"] == "/queue/early"
    assert event["props"] == {"when": "before load"}
    footfall.wait_live(kind="pageview", path="/queue/early")


def _privacy_signals(page: Page, gpc: bool, dnt: bool) -> None:
    """The browser's Global Privacy Control and Do-Not-Track settings, as the page sees them."""
    page.add_init_script(
        f"""(() => {{
            Object.defineProperty(Navigator.prototype, 'globalPrivacyControl', {{get: () => {str(gpc).lower()}}});
            Object.defineProperty(Navigator.prototype, 'doNotTrack', {{get: () => {'"1"' if dnt else 'null'}}});
        }})()"""
    )


def test_global_privacy_control_sends_nothing(footfall, pages, page):
    _privacy_signals(page, gpc=True, dnt=True)  # DNT alone is not honoured by default
    beacons = record_beacons(page)
    page.goto(f"{pages.url}/basic/gpc")
    wait_tracker(page)
    page.evaluate("() => footfall.track('Signup')")
    assert beacons() == []  # recorded synchronously: the tracker sent nothing at all


def test_signals_follow_the_snippet_attributes(footfall, pages, page):
    # data-gpc="off": this site does not honour GPC; data-dnt="on": it honours DNT
    _privacy_signals(page, gpc=True, dnt=False)
    beacons = record_beacons(page)
    page.goto(f"{pages.url}/signals/sent")
    wait_tracker(page)
    footfall.wait_live(kind="pageview", path="/signals/sent")
    assert [b["k"] for b in beacons()] == ["pageview"]


def test_do_not_track_when_the_site_honours_it(footfall, pages, page):
    _privacy_signals(page, gpc=False, dnt=True)
    beacons = record_beacons(page)
    page.goto(f"{pages.url}/signals/dnt")
    wait_tracker(page)
    page.evaluate("() => footfall.track('Signup')")
    assert beacons() == []
