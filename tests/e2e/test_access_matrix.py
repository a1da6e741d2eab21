"""The access matrix, over a real server: every route × every kind of caller.

Routes come from the app's own route table, their rules from docs/security.md (see
``tests/web/route_table.py``); the expected answer for each caller is worked out from the
rule and the role's permissions, then the route is called and the answer compared:
allowed (anything but 401/403 or a redirect to the login page), 401 (the dashboard's
equivalent is a 303 to /login), or 403.

Callers: an admin, an analyst and a viewer granted site A, a viewer granted only site B, a
viewer's API key, an analyst's read-only API key, site A's shared link, an anonymous
client, an expired login token, a revoked API key, and a forged session cookie.
"""

from __future__ import annotations

import re
import time
import uuid
from dataclasses import dataclass, field

import httpx
import pytest

from appliance.accounts.permissions import Role
from appliance.config import load_settings
from tests.servers import start_server
from tests.web.route_table import (
    RouteEntry,
    Rule,
    app_routes,
    documented_rules,
    is_public,
    role_has,
)
from web.app import create_app

SAFE = {"GET", "HEAD", "OPTIONS"}
PASSWORD = "matrix-password-123"
ROUTES = app_routes(create_app(load_settings(environ={})))
GUARDED = [entry for entry in ROUTES if not is_public(entry.method, entry.path)]
PUBLIC_GETS = [e for e in ROUTES if is_public(e.method, e.path) and e.method == "GET" and "{" not in e.path]
RULES = documented_rules()


@dataclass
class Caller:
    name: str
    kind: str  # "role", "api_key", "readonly_key", "share", or "bad" (anonymous, expired...)
    role: Role | None = None
    sites: set[str] = field(default_factory=set)
    headers: dict[str, str] = field(default_factory=dict)  # for API routes
    session: str = ""  # for dashboard routes
    csrf: str = ""
    share: str = ""
    username: str = ""


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def dashboard_login(url: str, username: str, password: str) -> tuple[str, str]:
    """Log in through the login form; returns (session cookie, CSRF token)."""
    with httpx.Client(base_url=url) as browser:
        page = browser.get("/login")
        form_csrf = re.search(r'name="csrf" value="([^"]+)"', page.text).group(1)
        answer = browser.post("/login", data={"username": username, "password": password, "csrf": form_csrf})
        assert answer.status_code == 303, answer.text
        session = answer.cookies["footfall_session"]
        account = browser.get("/account")
        assert account.status_code == 200, account.text
        csrf = re.search(r'name="csrf-token" content="([^"]+)"', account.text).group(1)
    return session, csrf


class World:
    def __init__(self, handle) -> None:
        self.handle = handle
        self.admin_headers = handle.auth()
        self.site_a = unique("alpha") + ".test"
        self.site_b = unique("beta") + ".test"
        self.site_c = unique("gamma") + ".test"
        self.callers: dict[str, Caller] = {}

    def api(self, method: str, path: str, **kwargs) -> httpx.Response:
        with httpx.Client(base_url=self.handle.url, timeout=30) as client:
            return client.request(method, path, **kwargs)

    def admin(self, method: str, path: str, expect: int, **kwargs) -> dict:
        answer = self.api(method, path, headers=self.admin_headers, **kwargs)
        assert answer.status_code == expect, answer.text
        return answer.json()

    def token(self, username: str, **extra) -> str:
        answer = self.api("POST", "/api/v1/authenticate", json={"username": username, "password": PASSWORD, **extra})
        assert answer.status_code == 200, answer.text
        return answer.json()["token"]

    def user(self, role: str, sites: list[str]) -> str:
        name = unique(role)
        self.admin("POST", "/api/v1/users", 201,
                   json={"username": name, "password": PASSWORD, "role": role, "sites": sites})
        return name

    def site(self, domain: str | None = None, **extra) -> str:
        domain = domain or unique("throwaway") + ".test"
        self.admin("POST", "/api/v1/sites", 201, json={"domain": domain, **extra})
        return domain

    def build(self) -> World:
        for domain in (self.site_a, self.site_b, self.site_c):
            self.site(domain)
        url = self.handle.url
        admin_session = dashboard_login(url, "admin", self.handle.password)
        self.callers["admin"] = Caller("admin", "role", Role.ADMIN, {"*"}, self.admin_headers, *admin_session)
        for name, role, sites in (
            ("analyst", Role.ANALYST, [self.site_a]),
            ("viewer", Role.VIEWER, [self.site_a]),
            ("other_viewer", Role.VIEWER, [self.site_b]),
        ):
            username = self.user(str(role), sites)
            bearer = {"Authorization": f"Bearer {self.token(username)}"}
            session, csrf = dashboard_login(url, username, PASSWORD)
            self.callers[name] = Caller(name, "role", role, set(sites), bearer, session, csrf, username=username)
        viewer = self.callers["viewer"]
        key = self.api("POST", "/api/v1/apikeys", headers=viewer.headers, json={"name": "viewer key"}).json()["key"]
        self.callers["viewer_key"] = Caller("viewer_key", "api_key", Role.VIEWER, {self.site_a},
                                            {"Authorization": f"Bearer {key}"})
        analyst = self.callers["analyst"]
        answer = self.api("POST", "/api/v1/apikeys", headers=analyst.headers, json={"name": "ro", "read_only": True})
        assert answer.status_code == 201, answer.text
        self.callers["readonly_key"] = Caller("readonly_key", "readonly_key", Role.ANALYST, {self.site_a},
                                              {"Authorization": f"Bearer {answer.json()['key']}"})
        share = self.admin("POST", f"/api/v1/sites/{self.site_a}/shared-link", 201)["token"]
        self.callers["share_link"] = Caller("share_link", "share", None, {self.site_a},
                                            {"Authorization": f"Bearer {share}"}, share=share)
        # the bad ones
        self.callers["anonymous"] = Caller("anonymous", "bad")
        expired = self.token(analyst.username, expires_in=1)
        self.callers["expired_token"] = Caller("expired_token", "bad", headers={"Authorization": f"Bearer {expired}"})
        revoked = self.api("POST", "/api/v1/apikeys", headers=analyst.headers, json={"name": "soon revoked"}).json()
        assert self.api("GET", "/api/v1/me", headers={"Authorization": f"Bearer {revoked['key']}"}).status_code == 200
        gone = self.api("DELETE", f"/api/v1/apikeys/{revoked['data']['id']}", headers=analyst.headers)
        assert gone.status_code == 200, gone.text
        self.callers["revoked_key"] = Caller("revoked_key", "bad",
                                             headers={"Authorization": f"Bearer {revoked['key']}"})
        forged = "forged-" + uuid.uuid4().hex
        self.callers["forged_session"] = Caller("forged_session", "bad", session=forged, csrf=uuid.uuid4().hex,
                                                headers={"Cookie": f"footfall_session={forged}"})
        time.sleep(1.2)  # let the one-second token expire
        return self


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    handle = start_server(
        tmp_path_factory.mktemp("access") / "data",
        env={"FOOTFALL_AUTH_LOGIN_BURST_PER_IP": "1000", "FOOTFALL_AUTH_LOGIN_RATE_PER_IP_PER_MINUTE": "6000"},
    )
    try:
        yield World(handle).build()
    finally:
        handle.stop()


CALLERS = ["admin", "analyst", "viewer", "other_viewer", "viewer_key", "readonly_key", "share_link",
           "anonymous", "expired_token", "revoked_key", "forged_session"]


def expected(rule: Rule, method: str, caller: Caller, site_a: str) -> str:
    """ "allow", "401" or "403" for this caller on a route with this rule."""
    unsafe = method not in SAFE
    if caller.kind == "bad":
        return "401"
    if rule.dashboard and caller.kind in ("api_key", "readonly_key"):
        return "401"  # bearer credentials do not open dashboard pages
    if caller.kind == "share":
        return "allow" if rule.open_to_links and not unsafe else "403"
    if caller.kind == "readonly_key" and unsafe:
        return "403"
    if not role_has(caller.role, rule.permission):
        return "403"
    if rule.password_login and caller.kind in ("api_key", "readonly_key"):
        return "403"
    if rule.site and "*" not in caller.sites and site_a not in caller.sites:
        return "403"
    return "allow"


def request_for(world: World, entry: RouteEntry, rule: Rule) -> tuple[str, dict]:
    """A valid request for the route, creating throwaway targets where it would destroy one."""
    path = entry.path
    body = None
    if "{domain:str}" in path:
        if entry.method == "DELETE" and path.endswith("{domain:str}"):
            target = world.site()
        elif "shared-link" in path:
            target = world.site_c  # site A's shared link is one of the callers
        else:
            target = world.site_a
        path = path.replace("{domain:str}", target)
    if "{username:str}" in path:
        target = world.user("viewer", []) if entry.method != "GET" else world.callers["viewer"].username
        path = path.replace("{username:str}", target)
    path = path.replace("{key_id:int}", "999999")
    path = re.sub(r"\{[a-z_]+:str\}", "page", path)  # other names (a dimension, a widget...)
    path = re.sub(r"\{[a-z_]+:int\}", "1", path)
    if (entry.method, entry.path) == ("POST", "/api/v1/users"):
        body = {"username": unique("new"), "password": PASSWORD, "role": "viewer"}
    elif (entry.method, entry.path) == ("PATCH", "/api/v1/users/{username:str}"):
        body = {"email": f"{unique('mail')}@example.com"}
    elif (entry.method, entry.path) == ("POST", "/api/v1/sites"):
        body = {"domain": unique("new") + ".test"}
    elif (entry.method, entry.path) == ("PATCH", "/api/v1/sites/{domain:str}"):
        body = {"name": "Alpha"}
    elif (entry.method, entry.path) == ("POST", "/api/v1/apikeys"):
        body = {"name": "matrix"}
    kwargs: dict = {"params": {"site": world.site_a} if rule.site and "{domain" not in entry.path else {}}
    if body is not None:
        kwargs["json"] = body
    return path, kwargs


def call(world: World, entry: RouteEntry, rule: Rule, caller: Caller) -> httpx.Response:
    path, kwargs = request_for(world, entry, rule)
    headers: dict[str, str] = {}
    cookies: dict[str, str] = {}
    if rule.dashboard:
        session, csrf = caller.session, caller.csrf
        if caller.kind == "role" and entry.method not in SAFE and entry.path == "/logout":
            username = caller.username or "admin"
            password = world.handle.password if caller.name == "admin" else PASSWORD
            session, csrf = dashboard_login(world.handle.url, username, password)  # don't end the shared one
        if session:
            cookies["footfall_session"] = session
        if csrf and entry.method not in SAFE:
            headers["X-CSRF-Token"] = csrf
        if caller.kind == "share":
            kwargs["params"] = {**kwargs["params"], "auth": caller.share}
        elif caller.kind != "role":
            headers.update(caller.headers)  # bearer tokens, which dashboard routes must ignore
    else:
        headers.update(caller.headers)
    with httpx.Client(base_url=world.handle.url, timeout=30, cookies=cookies) as client:
        request = client.build_request(entry.method, path, headers=headers, **kwargs)
        answer = client.send(request, stream=True, follow_redirects=False)
        try:
            if not answer.headers.get("content-type", "").startswith("text/event-stream"):
                answer.read()  # a live stream is judged by its status alone
        finally:
            answer.close()
        return answer


@pytest.mark.parametrize("caller_name", CALLERS)
@pytest.mark.parametrize("entry", GUARDED, ids=[f"{e.method} {e.path}" for e in GUARDED])
def test_access_matrix(world, entry, caller_name):
    rule = RULES.get((entry.method, entry.path))
    assert rule is not None, f"{entry.method} {entry.path} has no row in docs/security.md"
    caller = world.callers[caller_name]
    want = expected(rule, entry.method, caller, world.site_a)
    answer = call(world, entry, rule, caller)
    to_login = answer.status_code == 303 and answer.headers.get("location", "").startswith("/login?next=")
    outcome = "401" if answer.status_code == 401 or to_login else "403" if answer.status_code == 403 else "allow"
    body = "" if answer.headers.get("content-type", "").startswith("text/event-stream") else answer.text
    assert outcome == want, f"{caller_name} {entry.method} {entry.path}: {answer.status_code} {body[:300]}"
    if outcome == "allow":
        assert answer.status_code < 500, body
    if rule.dashboard and want == "401":
        assert to_login, f"a dashboard route should send {caller_name} to the login page, got {answer.status_code}"
    if not rule.dashboard and answer.status_code in (401, 403):
        assert answer.json()["status"] == "error"


@pytest.mark.parametrize("entry", PUBLIC_GETS, ids=[e.path for e in PUBLIC_GETS])
def test_public_pages_need_no_credential(world, entry):
    answer = world.api("GET", entry.path, follow_redirects=True)  # ``/`` forwards to the login page
    assert answer.status_code == 200, answer.text


def test_the_matrix_covers_every_guarded_route():
    assert len(GUARDED) >= 30
    assert {(e.method, e.path) for e in GUARDED} == set(RULES)
