"""The front door over HTTP: ``/`` and the login land on the site list, ``next=`` stays on this
origin, browsers get error pages while API clients keep JSON, the favicon is served, and a
site without events opens on its onboarding page (shared links and public visitors see "no
data yet").
"""

from __future__ import annotations

import re
import uuid

import httpx
import pytest

from tests.servers import BROWSER_UA

NAVIGATION = {"accept": "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8", "user-agent": BROWSER_UA}
PASSWORD = "a long enough password"


def _login_form(client: httpx.Client, next_: str | None = None) -> str:
    page = client.get("/login", params={"next": next_} if next_ is not None else None, headers=NAVIGATION)
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    return re.search(r'name="csrf" value="([^"]+)"', page.text).group(1)


def _log_in(client: httpx.Client, username: str, password: str, next_: str | None = None) -> httpx.Response:
    csrf = _login_form(client, next_)
    data = {"username": username, "password": password, "csrf": csrf}
    if next_ is not None:
        data["next"] = next_
    return client.post("/login", data=data, headers=NAVIGATION)


def _site(server, **extra) -> str:
    domain = f"door-{uuid.uuid4().hex[:8]}.test"
    answer = httpx.post(f"{server.url}/api/v1/sites", headers=server.auth(), json={"domain": domain, **extra})
    assert answer.status_code == 201, answer.text
    return domain


def _pageview(server, site: str, path: str = "/") -> None:
    answer = httpx.post(f"{server.url}/api/v1/events", headers={"user-agent": BROWSER_UA}, json={
        "event_type": "page_view", "site": site, "user_id": uuid.uuid4().hex,
        "metadata": {"page_url": f"https://{site}{path}"}})
    assert answer.status_code == 200, answer.text


@pytest.fixture
def admin(server):
    with httpx.Client(base_url=server.url, timeout=30) as client:
        assert _log_in(client, "admin", server.password).status_code == 303
        yield client


def test_index_sends_a_visitor_to_the_login_and_a_signed_in_user_to_the_site_list(server):
    with httpx.Client(base_url=server.url, timeout=30) as browser:
        index = browser.get("/", headers=NAVIGATION)
        assert index.status_code == 303 and index.headers["location"] == "/login"
        logged_in = _log_in(browser, "admin", server.password)
        assert logged_in.status_code == 303 and logged_in.headers["location"] == "/sites"  # not /account
        again = browser.get("/", headers=NAVIGATION)
        assert again.status_code == 303 and again.headers["location"] == "/sites"
        sites = browser.get("/sites", headers=NAVIGATION)
        assert sites.status_code == 200 and "/static/footfall.css" in sites.text
    with httpx.Client(base_url=server.url, timeout=30, cookies={"footfall_session": "ended-or-forged"}) as stale:
        assert stale.get("/").headers["location"] == "/login"


def test_login_and_account_pages_are_styled_and_keep_the_security_headers(server, admin):
    with httpx.Client(base_url=server.url, timeout=30) as anonymous:
        login = anonymous.get("/login", headers=NAVIGATION)
    account = admin.get("/account", headers=NAVIGATION)
    for page in (login, account):
        assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
        assert '<link rel="stylesheet" href="/static/footfall.css">' in page.text
        assert '<link rel="icon" href="/static/favicon.svg" type="image/svg+xml">' in page.text
        assert "script-src 'self';" in page.headers["content-security-policy"]
        assert page.headers["x-frame-options"] == "DENY"
        assert "<script>" not in page.text and " on" + "click=" not in page.text  # no inline scripts
        assert page.headers["content-security-policy"].count("default-src") == 1  # set once, not twice
    assert 'class="card auth-card"' in login.text
    assert "Signed in as" in account.text and 'href="/sites/localhost"' in account.text


@pytest.mark.parametrize("target, lands", [
    ("/sites/localhost?period=7d", "/sites/localhost?period=7d"),
    ("/admin/users", "/admin/users"),
    ("//evil.example/", "/sites"),
    ("https://evil.example/", "/sites"),
    ("/\\evil.example", "/sites"),
    ("/\t/evil.example", "/sites"),
    ("/\n/evil.example", "/sites"),
    ("http:/evil.example", "/sites"),
    ("javascript:alert(1)", "/sites"),
    ("/login?next=//evil.example", "/sites"),
    ("", "/sites"),
])
def test_login_follows_next_only_to_a_path_on_this_origin(server, target, lands):
    with httpx.Client(base_url=server.url, timeout=30) as browser:
        page = browser.get("/login", params={"next": target}, headers=NAVIGATION)
        assert f'name="next" value="{lands}"' in page.text
        answer = _log_in(browser, "admin", server.password, next_=target)
        assert answer.status_code == 303 and answer.headers["location"] == lands
        # signed in already: the login page itself forwards, with the same rule
        again = browser.get("/login", params={"next": target})
        assert again.status_code == 303 and again.headers["location"] == lands


def test_browsers_get_error_pages_and_api_clients_get_json(server, admin):
    with httpx.Client(base_url=server.url, timeout=30) as anonymous:
        missing = anonymous.get("/no-such-page", headers=NAVIGATION)
        assert missing.status_code == 404 and missing.headers["content-type"].startswith("text/html")
        assert "Page not found" in missing.text and 'href="/"' in missing.text and "/static/footfall.css" in missing.text
        # answered outside every router, yet with the page's security headers
        assert "script-src 'self';" in missing.headers["content-security-policy"]
        assert missing.headers["cache-control"] == "no-store" and missing.headers["x-content-type-options"] == "nosniff"
        for headers in ({}, {"accept": "application/json"}, {"accept": "*/*", "user-agent": BROWSER_UA}):
            plain = anonymous.get("/no-such-page", headers=headers)
            assert plain.status_code == 404 and plain.headers["content-type"] == "application/json"
            assert plain.json() == {"status": "error", "error": {"field": None, "message": "Not Found"}}
        api = anonymous.get("/api/v1/no-such-route", headers=NAVIGATION)
        assert api.status_code == 404 and api.headers["content-type"] == "application/json"
        unauthorised = anonymous.get("/api/v1/sites", headers=NAVIGATION)  # the API is JSON for a browser too
        assert unauthorised.status_code == 401 and unauthorised.json()["status"] == "error"
        assert anonymous.get("/sites", headers=NAVIGATION).headers["location"] == "/login?next=/sites"

    viewer = f"door-viewer-{uuid.uuid4().hex[:6]}"
    created = httpx.post(f"{server.url}/api/v1/users", headers=server.auth(),
                         json={"username": viewer, "password": PASSWORD, "role": "viewer"})
    assert created.status_code == 201, created.text
    with httpx.Client(base_url=server.url, timeout=30) as browser:
        assert _log_in(browser, viewer, PASSWORD).status_code == 303
        refused = browser.get("/admin/users", headers=NAVIGATION)
        assert refused.status_code == 403 and refused.headers["content-type"].startswith("text/html")
        assert "No access" in refused.text and 'href="/sites"' in refused.text
        as_json = browser.get("/admin/users")
        assert as_json.status_code == 403 and as_json.json()["status"] == "error"
        # htmx gets JSON; a boosted link (a navigation) is sent to the URL for a full page load
        widget = browser.get("/admin/users", headers={**NAVIGATION, "hx-request": "true"})
        assert widget.status_code == 403 and widget.headers["content-type"] == "application/json"
        assert "hx-redirect" not in widget.headers
        boosted = browser.get("/admin/users", headers={**NAVIGATION, "hx-request": "true", "hx-boosted": "true"})
        assert boosted.status_code == 403 and boosted.headers["hx-redirect"] == "/admin/users"

    unknown_site = admin.get("/sites/no-such-site.test", headers=NAVIGATION)
    assert unknown_site.status_code == 404 and "Page not found" in unknown_site.text
    assert "unknown site" in unknown_site.text and 'href="/sites"' in unknown_site.text


def test_the_favicon_is_served(server):
    for path in ("/favicon.ico", "/static/favicon.svg"):
        icon = httpx.get(f"{server.url}{path}")
        assert icon.status_code == 200, path
        assert icon.headers["content-type"].startswith("image/svg+xml")
        assert icon.text.startswith("<svg") and "<script" not in icon.text


def test_a_site_without_events_opens_on_its_onboarding_page(server, admin):
    site = _site(server)
    page = admin.get(f"/sites/{site}", headers=NAVIGATION)
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert 'id="tracking-snippet"' in page.text and f'data-site=&#34;{site}&#34;' in page.text
    assert f'sse-connect="/sites/{site}/live/stream"' in page.text and "Waiting for the first event" in page.text
    assert 'id="widget-top"' not in page.text and 'class="widget' not in page.text
    sites = admin.get("/sites").text
    assert f'href="/sites/{site}/onboarding">Set up tracking' in sites

    _pageview(server, site, "/first")
    dashboard = admin.get(f"/sites/{site}", headers=NAVIGATION)
    assert dashboard.status_code == 200 and 'id="tracking-snippet"' not in dashboard.text
    assert "widget-top" in dashboard.text
    assert f'href="/sites/{site}/onboarding"' not in admin.get("/sites").text
    # the onboarding page stays reachable to check an installation again
    again = admin.get(f"/sites/{site}/onboarding", headers=NAVIGATION)
    assert again.status_code == 200 and "already sending events" in again.text
    assert 'id="tracking-snippet"' in again.text


def test_shared_links_and_public_visitors_of_an_empty_site_see_no_data_yet(server):
    shared, public = _site(server), _site(server, public=True)
    token = httpx.post(f"{server.url}/api/v1/sites/{shared}/shared-link", headers=server.auth()).json()["token"]
    with httpx.Client(base_url=server.url, timeout=30) as anonymous:
        for page in (anonymous.get(f"/sites/{shared}", params={"auth": token}, headers=NAVIGATION),
                     anonymous.get(f"/sites/{public}", headers=NAVIGATION)):
            assert page.status_code == 200 and "No data yet" in page.text
            assert "footfall.js" not in page.text and "tracking-snippet" not in page.text
            assert "sse-connect" not in page.text and "/settings" not in page.text
        onboarding = anonymous.get(f"/sites/{shared}/onboarding", params={"auth": token}, headers=NAVIGATION)
        assert onboarding.status_code == 403 and "footfall.js" not in onboarding.text
        assert anonymous.get(f"/sites/{public}/onboarding").headers["location"].startswith("/login?next=")
    _pageview(server, public)
    with httpx.Client(base_url=server.url, timeout=30) as anonymous:
        page = anonymous.get(f"/sites/{public}", headers=NAVIGATION)
        assert page.status_code == 200 and "No data yet" not in page.text and "widget-top" in page.text
