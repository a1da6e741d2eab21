"""Access control flows over a real server: brute-force throttling, sessions and CSRF,
security headers, shared links and public sites, credentials that die with their user,
site deletion with its data, ingest rate limits and the audit log."""

from __future__ import annotations

import re
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from tests.e2e.test_access_matrix import PASSWORD, dashboard_login, unique
from tests.servers import BROWSER_UA


def _login(url: str, username: str, password: str) -> httpx.Response:
    return httpx.post(f"{url}/api/v1/authenticate", json={"username": username, "password": password})


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def _user(server, role: str, sites: list[str]) -> str:
    name = unique(role)
    answer = httpx.post(f"{server.url}/api/v1/users", headers=server.auth(),
                        json={"username": name, "password": PASSWORD, "role": role, "sites": sites})
    assert answer.status_code == 201, answer.text
    return name


def _site(server, **extra) -> str:
    domain = unique("flow") + ".test"
    answer = httpx.post(f"{server.url}/api/v1/sites", headers=server.auth(), json={"domain": domain, **extra})
    assert answer.status_code == 201, answer.text
    return domain


def _pageview(server, site: str, path: str = "/") -> httpx.Response:
    return httpx.post(f"{server.url}/api/v1/events", headers={"user-agent": BROWSER_UA}, json={
        "event_type": "page_view", "site": site, "user_id": uuid.uuid4().hex,
        "metadata": {"page_url": f"https://{site}{path}"}})


def _aggregate(server, site: str, headers: dict) -> httpx.Response:
    today = datetime.now(UTC).date()
    return httpx.get(f"{server.url}/api/v1/stats/aggregate", headers=headers, params={
        "site": site, "start_date": (today - timedelta(days=1)).isoformat(), "end_date": today.isoformat()})


# -- brute force ----------------------------------------------------------------------------------
def test_repeated_bad_passwords_are_throttled_and_the_right_one_works_after_the_window(own_server):
    handle = own_server(env={
        "FOOTFALL_AUTH_LOGIN_BURST_PER_USERNAME": "3",
        "FOOTFALL_AUTH_LOGIN_RATE_PER_USERNAME_PER_MINUTE": "30",  # one attempt back every 2 s
    })
    for _ in range(3):
        assert _login(handle.url, "admin", "wrong-password-0").status_code == 401
    throttled = _login(handle.url, "admin", "wrong-password-0")
    assert throttled.status_code == 429, throttled.text
    assert throttled.json()["status"] == "error"
    wait = int(throttled.headers["Retry-After"])
    assert 1 <= wait <= 2
    # while throttled, even the right password is refused (the guesser learns nothing)...
    assert _login(handle.url, "admin", handle.password).status_code == 429
    # ...and the dashboard login shares the same throttle
    with httpx.Client(base_url=handle.url) as browser:
        csrf = re.search(r'name="csrf" value="([^"]+)"', browser.get("/login").text).group(1)
        form = browser.post("/login", data={"username": "ADMIN", "password": handle.password, "csrf": csrf})
        assert form.status_code == 429
    # other usernames are not locked out by it
    assert _login(handle.url, "someone-else", "wrong-password-0").status_code == 401
    time.sleep(wait + 0.1)
    answer = _login(handle.url, "admin", handle.password)
    assert answer.status_code == 200, answer.text
    assert answer.json()["token"].startswith("ff_")


def test_a_throttled_form_login_shows_the_login_page_with_the_wait(own_server):
    """The dashboard's login form, once throttled, answers the login page (HTML, 429,
    Retry-After) saying how long to wait; the JSON API keeps its JSON 429."""
    handle = own_server(env={
        "FOOTFALL_AUTH_LOGIN_BURST_PER_USERNAME": "2",
        "FOOTFALL_AUTH_LOGIN_RATE_PER_USERNAME_PER_MINUTE": "6",  # one attempt back every 10 s
    })
    with httpx.Client(base_url=handle.url, headers={"user-agent": BROWSER_UA}) as browser:
        csrf = re.search(r'name="csrf" value="([^"]+)"', browser.get("/login").text).group(1)
        for _ in range(2):
            wrong = browser.post("/login", data={"username": "admin", "password": "wrong-password-0", "csrf": csrf})
            assert wrong.status_code == 401 and "Wrong username or password." in wrong.text
        throttled = browser.post("/login?next=/sites", data={"username": "admin", "password": handle.password,
                                                             "csrf": csrf, "next": "/sites"})
        assert throttled.status_code == 429, throttled.text
        assert throttled.headers["content-type"].startswith("text/html")
        wait = int(throttled.headers["Retry-After"])
        assert 1 <= wait <= 10
        assert f"Too many attempts; try again in {wait} seconds." in throttled.text
        assert 'name="csrf"' in throttled.text and 'value="admin"' in throttled.text  # the form, ready again
        assert "footfall_session" not in throttled.cookies
    api = _login(handle.url, "admin", handle.password)
    assert api.status_code == 429 and api.json()["status"] == "error"
    assert api.headers["content-type"].startswith("application/json") and "Retry-After" in api.headers


def test_login_attempts_are_throttled_per_ip(own_server):
    handle = own_server(env={"FOOTFALL_AUTH_LOGIN_BURST_PER_IP": "4", "FOOTFALL_AUTH_LOGIN_RATE_PER_IP_PER_MINUTE": "1"})
    codes = [_login(handle.url, f"nobody-{i}", "wrong-password-0").status_code for i in range(6)]
    assert codes[:3] == [401, 401, 401]  # the fixture's own login took the fourth token
    assert codes[-1] == 429
    assert int(_login(handle.url, "admin", handle.password).headers["Retry-After"]) >= 1


# -- sessions and CSRF --------------------------------------------------------------------------------
def test_session_cookie_flags_and_logout_ends_the_session_on_the_server(server):
    with httpx.Client(base_url=server.url) as browser:
        page = browser.get("/login")
        csrf = re.search(r'name="csrf" value="([^"]+)"', page.text).group(1)
        answer = browser.post("/login", data={"username": "admin", "password": server.password, "csrf": csrf},
                              follow_redirects=False)
        assert answer.status_code == 303
        cookie = next(c for c in answer.headers.get_list("set-cookie") if c.startswith("footfall_session="))
        flags = cookie.lower()
        assert "httponly" in flags and "samesite=lax" in flags and "path=/" in flags
        assert "secure" not in flags  # plain HTTP on loopback; see the TLS test below
        session = answer.cookies["footfall_session"]
        account = browser.get("/account")
        assert account.status_code == 200 and "admin" in account.text
        token = re.search(r'name="csrf-token" content="([^"]+)"', account.text).group(1)
        # a POST without the CSRF token (or with another) is refused, and the session survives
        assert browser.post("/logout", follow_redirects=False).status_code == 403
        assert browser.post("/logout", data={"csrf": "nope"}, follow_redirects=False).status_code == 403
        assert browser.get("/account").status_code == 200
        assert browser.post("/logout", data={"csrf": token}, follow_redirects=False).status_code == 303
    # the old cookie no longer opens anything
    with httpx.Client(base_url=server.url, cookies={"footfall_session": session}) as replay:
        answer = replay.get("/account", follow_redirects=False)
    assert answer.status_code == 303
    assert answer.headers["location"].startswith("/login?next=")


def test_login_form_needs_its_csrf_token(server):
    answer = httpx.post(f"{server.url}/login", data={"username": "admin", "password": server.password},
                        follow_redirects=False)
    assert answer.status_code == 403
    assert "footfall_session" not in answer.cookies


def test_login_redirects_only_to_local_paths(server):
    with httpx.Client(base_url=server.url) as browser:
        csrf = re.search(r'name="csrf" value="([^"]+)"', browser.get("/login").text).group(1)
        answer = browser.post("/login", follow_redirects=False, data={
            "username": "admin", "password": server.password, "csrf": csrf, "next": "//evil.example/"})
    assert answer.headers["location"] == "/sites"  # the site list, not the other origin


def test_htmx_requests_without_a_session_get_401_and_hx_redirect(server):
    answer = httpx.get(f"{server.url}/account", headers={"HX-Request": "true"})
    assert answer.status_code == 401
    assert answer.headers["HX-Redirect"].startswith("/login?next=")


def test_secure_cookie_behind_a_tls_proxy(own_server):
    handle = own_server(env={"FOOTFALL_SERVER_TRUSTED_PROXIES": "127.0.0.1"})
    with httpx.Client(base_url=handle.url, headers={"X-Forwarded-Proto": "https"}) as browser:
        page = browser.get("/login")
        assert "secure" in page.headers["set-cookie"].lower()
        csrf = re.search(r'name="csrf" value="([^"]+)"', page.text).group(1)
        # httpx keeps Secure cookies for https URLs only: hand the login cookie over ourselves
        answer = browser.post("/login", data={"username": "admin", "password": handle.password, "csrf": csrf},
                              headers={"cookie": f"footfall_login_csrf={csrf}"}, follow_redirects=False)
    cookie = next(c for c in answer.headers.get_list("set-cookie") if c.startswith("footfall_session="))
    assert "secure" in cookie.lower()


# -- security headers --------------------------------------------------------------------------------
@pytest.mark.parametrize("path", ["/", "/login", "/account"])
def test_html_pages_carry_security_headers(server, path):
    session, _ = dashboard_login(server.url, "admin", server.password)
    cookies = {"footfall_session": session} if path == "/account" else {}
    # "/" may be a page or a redirect to one (the dashboard's front door): judge the page
    answer = httpx.get(f"{server.url}{path}", cookies=cookies, follow_redirects=True)
    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("text/html")
    csp = answer.headers["content-security-policy"]
    assert "script-src 'self';" in csp and "unsafe-inline" not in csp
    assert "frame-ancestors 'none'" in csp and "default-src 'self'" in csp
    assert answer.headers["x-content-type-options"] == "nosniff"
    assert answer.headers["referrer-policy"] == "same-origin"
    assert answer.headers["x-frame-options"] == "DENY"
    assert "<script>" not in answer.text  # no inline script for the CSP to have to allow


def test_json_answers_are_nosniff_and_ingest_is_untouched(server):
    answer = httpx.get(f"{server.url}/api/v1/health")
    assert answer.headers["x-content-type-options"] == "nosniff"
    assert "content-security-policy" not in answer.headers
    ingest = _pageview(server, "localhost")
    assert ingest.status_code == 200
    assert "referrer-policy" not in ingest.headers


# -- shared links and public sites -----------------------------------------------------------------------
def test_shared_link_reads_one_site_only_and_can_be_withdrawn(server):
    shared, other = _site(server), _site(server)
    assert _pageview(server, shared).status_code == 200
    token = httpx.post(f"{server.url}/api/v1/sites/{shared}/shared-link", headers=server.auth()).json()["token"]
    assert _aggregate(server, shared, _bearer(token)).json()["data"]["pageviews"] == 1
    as_query = httpx.get(f"{server.url}/api/v1/reports/traffic", params={"site": shared, "auth": token})
    assert as_query.status_code == 200
    assert _aggregate(server, other, _bearer(token)).status_code == 403
    assert httpx.get(f"{server.url}/api/v1/sites", headers=_bearer(token)).status_code == 403
    # replacing the link kills the old token; deleting it kills the new one
    newer = httpx.post(f"{server.url}/api/v1/sites/{shared}/shared-link", headers=server.auth()).json()["token"]
    assert _aggregate(server, shared, _bearer(token)).status_code == 401
    assert _aggregate(server, shared, _bearer(newer)).status_code == 200
    assert httpx.delete(f"{server.url}/api/v1/sites/{shared}/shared-link", headers=server.auth()).status_code == 200
    assert _aggregate(server, shared, _bearer(newer)).status_code == 401


def test_public_site_is_readable_anonymously_but_only_that_site(server):
    public, private = _site(server, public=True), _site(server)
    assert _aggregate(server, public, {}).status_code == 200
    assert _aggregate(server, private, {}).status_code == 401
    assert _aggregate(server, "no-such-site.test", {}).status_code == 401  # no site enumeration
    assert _aggregate(server, public, _bearer("ff_expired-or-forged")).status_code == 401
    assert httpx.patch(f"{server.url}/api/v1/sites/{public}", json={"public": False}).status_code == 401
    changed = httpx.patch(f"{server.url}/api/v1/sites/{public}", headers=server.auth(), json={"public": False})
    assert changed.status_code == 200 and changed.json()["data"]["public"] is False
    assert _aggregate(server, public, {}).status_code == 401


def test_shared_links_and_public_visitors_get_no_settings_page(server):
    """The README promises a shared link "no settings": the settings page (snippet, allowed
    hostnames, retention, shared-link state) is for signed-in users with access to the site."""
    shared, public = _site(server), _site(server, public=True)
    token = httpx.post(f"{server.url}/api/v1/sites/{shared}/shared-link", headers=server.auth()).json()["token"]
    with httpx.Client(base_url=server.url, headers={"user-agent": BROWSER_UA}) as anonymous:
        dashboard = anonymous.get(f"/sites/{shared}", params={"auth": token})
        assert dashboard.status_code == 200 and "/settings" not in dashboard.text
        refused = anonymous.get(f"/sites/{shared}/settings", params={"auth": token})
        assert refused.status_code == 403, refused.text
        assert refused.json()["status"] == "error" and "footfall.js" not in refused.text
        dashboard = anonymous.get(f"/sites/{public}")
        assert dashboard.status_code == 200 and "/settings" not in dashboard.text
        refused = anonymous.get(f"/sites/{public}/settings")
        assert refused.status_code == 303 and refused.headers["location"].startswith("/login?next="), refused.text
    viewer = _user(server, "viewer", [shared])
    session, _ = dashboard_login(server.url, viewer, PASSWORD)
    with httpx.Client(base_url=server.url, cookies={"footfall_session": session}) as member:
        assert member.get(f"/sites/{shared}/settings").status_code == 200  # read-only, but theirs


# -- credentials follow their user -------------------------------------------------------------------
def test_role_changes_and_deletion_take_effect_at_once(server):
    site = _site(server)
    name = _user(server, "viewer", [])
    token = _login(server.url, name, PASSWORD).json()["token"]
    key = httpx.post(f"{server.url}/api/v1/apikeys", headers=_bearer(token), json={"name": "k"}).json()["key"]
    assert _aggregate(server, site, _bearer(token)).status_code == 403
    granted = httpx.patch(f"{server.url}/api/v1/users/{name}", headers=server.auth(), json={"sites": [site]})
    assert granted.status_code == 200 and granted.json()["data"]["sites"] == [site]
    assert _aggregate(server, site, _bearer(key)).status_code == 200
    assert httpx.get(f"{server.url}/api/v1/audit", headers=_bearer(token)).status_code == 403
    promoted = httpx.patch(f"{server.url}/api/v1/users/{name}", headers=server.auth(), json={"role": "admin"})
    assert promoted.status_code == 200
    assert httpx.get(f"{server.url}/api/v1/audit", headers=_bearer(token)).status_code == 200
    assert httpx.delete(f"{server.url}/api/v1/users/{name}", headers=server.auth()).status_code == 200
    assert _aggregate(server, site, _bearer(token)).status_code == 401
    assert _aggregate(server, site, _bearer(key)).status_code == 401
    # a namesake created later does not inherit the old credentials
    again = httpx.post(f"{server.url}/api/v1/users", headers=server.auth(),
                       json={"username": name, "password": PASSWORD, "role": "viewer", "sites": [site]})
    assert again.status_code == 201
    assert _aggregate(server, site, _bearer(token)).status_code == 401


def test_password_reset_ends_login_tokens(server):
    name = _user(server, "analyst", [])
    token = _login(server.url, name, PASSWORD).json()["token"]
    assert httpx.get(f"{server.url}/api/v1/me", headers=_bearer(token)).json()["data"]["role"] == "analyst"
    reset = httpx.patch(f"{server.url}/api/v1/users/{name}", headers=server.auth(),
                        json={"password": "a-brand-new-password"})
    assert reset.status_code == 200
    assert httpx.get(f"{server.url}/api/v1/me", headers=_bearer(token)).status_code == 401
    assert _login(server.url, name, PASSWORD).status_code == 401
    assert _login(server.url, name, "a-brand-new-password").status_code == 200


def test_usernames_and_emails_are_unique_case_insensitively(server):
    name = unique("Case")
    first = httpx.post(f"{server.url}/api/v1/users", headers=server.auth(), json={
        "username": name, "email": f"{name}@Example.com", "password": PASSWORD, "role": "viewer"})
    assert first.status_code == 201
    for body, field in (
        ({"username": name.upper(), "password": PASSWORD}, "username"),
        ({"username": unique("other"), "email": f"{name.lower()}@example.COM", "password": PASSWORD}, "email"),
    ):
        answer = httpx.post(f"{server.url}/api/v1/users", headers=server.auth(), json=body)
        assert answer.status_code == 422, answer.text
        assert answer.json()["error"]["field"] == field
    assert _login(server.url, name.lower(), PASSWORD).status_code == 200


def test_the_last_admin_cannot_be_removed(own_server):
    handle = own_server()
    answer = httpx.delete(f"{handle.url}/api/v1/users/admin", headers=handle.auth())
    assert answer.status_code == 409
    answer = httpx.patch(f"{handle.url}/api/v1/users/admin", headers=handle.auth(), json={"role": "viewer"})
    assert answer.status_code == 409


def test_api_keys_are_shown_once_listed_and_revoked(server):
    name = _user(server, "viewer", [])
    token = _login(server.url, name, PASSWORD).json()["token"]
    created = httpx.post(f"{server.url}/api/v1/apikeys", headers=_bearer(token),
                         json={"name": "ci", "read_only": True})
    assert created.status_code == 201
    key = created.json()["key"]
    assert key.startswith("ffk_")
    listed = httpx.get(f"{server.url}/api/v1/apikeys", headers=_bearer(token)).json()["data"]
    assert [(k["name"], k["read_only"]) for k in listed] == [("ci", True)]
    assert key not in str(listed) and listed[0]["prefix"] == key[:10]
    assert httpx.get(f"{server.url}/api/v1/me", headers=_bearer(key)).json()["data"]["credential"] == "apikey"
    # an API key cannot mint more keys
    assert httpx.post(f"{server.url}/api/v1/apikeys", headers=_bearer(key), json={"name": "x"}).status_code == 403
    # admins see and revoke any user's keys
    theirs = httpx.get(f"{server.url}/api/v1/users/{name}/apikeys", headers=server.auth()).json()["data"]
    assert [k["id"] for k in theirs] == [listed[0]["id"]]
    revoked = httpx.delete(f"{server.url}/api/v1/users/{name}/apikeys/{listed[0]['id']}", headers=server.auth())
    assert revoked.status_code == 200
    assert httpx.get(f"{server.url}/api/v1/me", headers=_bearer(key)).status_code == 401


# -- sites ------------------------------------------------------------------------------------------------
def test_site_settings_rename_and_delete_with_its_data(server):
    site = _site(server)
    for path in ("/", "/a", "/b"):
        assert _pageview(server, site, path).status_code == 200
    assert _aggregate(server, site, server.auth()).json()["data"]["pageviews"] == 3
    changed = httpx.patch(f"{server.url}/api/v1/sites/{site}", headers=server.auth(), json={
        "name": "Renamed", "timezone": "Europe/Berlin", "retention_days": 30,
        "allowed_hostnames": [site, f"*.{site}"]})
    assert changed.status_code == 200, changed.text
    data = changed.json()["data"]
    assert (data["name"], data["timezone"], data["retention_days"]) == ("Renamed", "Europe/Berlin", 30)
    assert httpx.patch(f"{server.url}/api/v1/sites/{site}", headers=server.auth(),
                       json={"timezone": "Mars/Olympus"}).status_code == 422
    # a new domain keeps the data (it is keyed by the site's id)
    moved = unique("moved") + ".test"
    assert httpx.patch(f"{server.url}/api/v1/sites/{site}", headers=server.auth(), json={"domain": moved}).status_code == 200
    assert _aggregate(server, moved, server.auth()).json()["data"]["pageviews"] == 3
    assert _aggregate(server, site, server.auth()).status_code == 404
    deleted = httpx.delete(f"{server.url}/api/v1/sites/{moved}", headers=server.auth())
    assert deleted.status_code == 200, deleted.text
    assert _aggregate(server, moved, server.auth()).status_code == 404
    assert _pageview(server, moved).status_code == 404
    # the same domain added again starts empty
    assert httpx.post(f"{server.url}/api/v1/sites", headers=server.auth(), json={"domain": moved}).status_code == 201
    assert _aggregate(server, moved, server.auth()).json()["data"]["pageviews"] == 0


def test_admin_actions_are_audited(server):
    name = _user(server, "viewer", [])
    site = _site(server)
    httpx.delete(f"{server.url}/api/v1/users/{name}", headers=server.auth())
    entries = httpx.get(f"{server.url}/api/v1/audit", headers=server.auth(), params={"limit": 50}).json()["data"]
    seen = {(e["action"], e["target"]) for e in entries}
    assert {("user.create", name), ("site.create", site), ("user.delete", name)} <= seen
    assert all(e["actor"] == "admin" and e["at"] > 0 for e in entries if e["target"] in (name, site))
    users_only = httpx.get(f"{server.url}/api/v1/audit", headers=server.auth(), params={"action": "user"}).json()
    assert all(e["action"].startswith("user.") for e in users_only["data"])
    assert PASSWORD not in str(entries)


# -- ingest rate limits ---------------------------------------------------------------------------------------
def test_ingest_rate_limits_answer_429_with_retry_after(own_server):
    # 1 event per second per site, 2 seconds of burst: of a dozen events sent at once, at most
    # the burst plus what refills meanwhile pass; sent in parallel so a slow machine cannot
    # refill the bucket between them.
    handle = own_server(env={"FOOTFALL_INGEST_RATE_LIMIT_PER_SITE": "1", "FOOTFALL_INGEST_RATE_LIMIT_BURST_SECONDS": "2"})
    with ThreadPoolExecutor(12) as pool:
        answers = list(pool.map(lambda _: _pageview(handle, "localhost"), range(12)))
    codes = [answer.status_code for answer in answers]
    assert set(codes) <= {200, 429} and codes.count(200) >= 1 and codes.count(429) >= 6, codes
    limited = next(answer for answer in answers if answer.status_code == 429)
    assert int(limited.headers["Retry-After"]) >= 1
    batch = httpx.post(f"{handle.url}/api/v1/events", headers={"user-agent": BROWSER_UA}, json=[
        {"event_type": "page_view", "site": "localhost"} for _ in range(6)])
    assert batch.status_code in (200, 429) and "Retry-After" in batch.headers
    drops = httpx.get(f"{handle.url}/api/v1/health").json()["drops"]
    assert drops.get("rate_limited", 0) >= codes.count(429)
    deadline = time.monotonic() + 10  # the bucket refills: an event is accepted again
    while (status := _pageview(handle, "localhost").status_code) == 429 and time.monotonic() < deadline:
        time.sleep(0.2)
    assert status == 200


def test_ingest_per_ip_limit(own_server):
    # 1 event per second per address, 3 seconds of burst; a dozen sent at once (in parallel,
    # so a slow machine cannot refill the bucket between them): the burst passes, most don't.
    handle = own_server(env={"FOOTFALL_INGEST_RATE_LIMIT_PER_IP": "1", "FOOTFALL_INGEST_RATE_LIMIT_BURST_SECONDS": "3"})
    with ThreadPoolExecutor(12) as pool:
        codes = [answer.status_code for answer in pool.map(lambda _: _pageview(handle, "localhost"), range(12))]
    assert set(codes) <= {200, 429} and 3 <= codes.count(200) <= 6 and codes.count(429) >= 6, codes
