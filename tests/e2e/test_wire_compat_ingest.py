"""Plausible's and Umami's protocols against the real server, driven by their real clients.

Umami's Node client (``@umami/node``) runs in Node; Plausible's npm tracker
(``@plausible-analytics/tracker``) and Footfall's compatibility scripts (``/js/script.*.js``,
``/script.js``) run in Debian's Chromium. The npm packages are installed once, pinned, into
``.cache/npm-clients`` (git-ignored); the tests skip, saying so, only when Node or the npm
registry is unreachable. What was sent is compared with Footfall's own reports.
"""

from __future__ import annotations

import gzip
import http.server
import json
import re
import shutil
import subprocess
import threading
import time
import uuid
from pathlib import Path

import httpx
import pytest

from tests.conftest import BROWSER_UA, ROOT
from tests.e2e.conftest import CHROMIUM
from tests.servers import footfall_cli, start_server

CLIENTS = ROOT / ".cache" / "npm-clients"
PACKAGES = {"@plausible-analytics/tracker": "0.4.6", "@umami/node": "0.4.0"}
DEADLINE_S = 15.0


def wait_for(probe, what: str):
    deadline = time.monotonic() + DEADLINE_S
    last = None
    while time.monotonic() < deadline:
        last = probe()
        if last:
            return last
        time.sleep(0.05)
    pytest.fail(f"timed out waiting for {what}; last: {last!r}")


@pytest.fixture(scope="module")
def npm_clients() -> Path:
    """The real clients, installed once into a git-ignored cache folder."""
    if shutil.which("node") is None or shutil.which("npm") is None:
        pytest.skip("node and npm are needed to run Plausible's and Umami's own clients")
    wanted = all((CLIENTS / "node_modules" / name / "package.json").is_file() for name in PACKAGES)
    if not wanted:
        CLIENTS.mkdir(parents=True, exist_ok=True)
        (CLIENTS / "package.json").write_text('{"name": "footfall-test-clients", "private": true}')
        specs = [f"{name}@{version}" for name, version in PACKAGES.items()]
        result = subprocess.run(
            ["npm", "install", "--no-audit", "--no-fund", "--no-save", *specs],
            cwd=CLIENTS, capture_output=True, text=True, timeout=180,
        )
        if result.returncode != 0:
            pytest.skip(f"the npm registry is unreachable, cannot install {specs}: {result.stderr[-300:]}")
    return CLIENTS / "node_modules"


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    handle = start_server(tmp_path_factory.mktemp("compat") / "data", env={"FOOTFALL_SERVER_TRUSTED_PROXIES": "127.0.0.1"})
    yield handle
    handle.stop()


def new_site(server, **aliases) -> str:
    domain = f"compat-{uuid.uuid4().hex[:10]}.test"
    response = httpx.post(f"{server.url}/api/v1/sites", json={"domain": domain, **aliases}, headers=server.auth())
    assert response.status_code == 201, response.text
    return domain


def stats(server, path: str, site: str, **params):
    response = httpx.get(f"{server.url}{path}", params={"site": site, **params}, headers=server.auth())
    assert response.status_code == 200, response.text
    return response.json()["data"]


def live(server, site: str) -> list[dict]:
    return stats(server, "/api/v1/live", site, limit=1000)[::-1]


def wait_live(server, site: str, count: int) -> list[dict]:
    return wait_for(lambda: (events := live(server, site)) and len(events) >= count and events, f"{count} events")


# -- Plausible's /api/event, by hand --------------------------------------------------------
def plausible(server, body, agent: str = BROWSER_UA, **headers) -> httpx.Response:
    return httpx.post(f"{server.url}/api/event", content=json.dumps(body),
                      headers={"user-agent": agent, "content-type": "text/plain", **headers})


def test_plausible_body_long_and_short_keys_several_domains_and_props(server):
    first, second = new_site(server), new_site(server)
    answer = plausible(server, {"name": "pageview", "url": f"https://{first}/docs/?utm_source=newsletter",
                                "domain": f"{first},{second}", "referrer": "https://duckduckgo.com/"},
                       **{"x-forwarded-for": "5.9.0.1"})
    assert (answer.status_code, answer.text) == (202, "ok")
    assert "x-plausible-dropped" not in answer.headers
    # the legacy script's short keys, props as a JSON-encoded string, revenue
    answer = plausible(server, {"n": "Purchase", "u": f"https://{first}/checkout", "d": first,
                                "p": json.dumps({"plan": "pro", "seats": 3}), "$": {"currency": "EUR", "amount": "12.50"}})
    assert (answer.status_code, answer.text) == (202, "ok")
    for site in (first, second):
        [view] = [e for e in wait_live(server, site, 1) if e["name"] == "pageview"]
        assert (view["path"], view["source"], view["browser"], view["country"]) == ("/docs", "newsletter", "Chrome", "DE")
        assert view["referrer"].startswith("https://duckduckgo.com")
    purchase = [e for e in wait_live(server, first, 2) if e["name"] == "Purchase"][0]
    assert purchase["props"] == {"plan": "pro", "seats": "3"}
    assert (purchase["kind"], purchase["revenue"], purchase["currency"]) == ("conversion", 1250, "EUR")


def test_plausible_answers_like_plausible(server):
    site = new_site(server)
    bot = plausible(server, {"n": "pageview", "u": f"https://{site}/", "d": site},
                    agent="Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)")
    assert (bot.status_code, bot.text, bot.headers["x-plausible-dropped"], bot.headers["x-footfall-ignored"]) == (202, "ok", "1", "bot")
    unknown = plausible(server, {"n": "pageview", "u": "https://nowhere.test/", "d": "nowhere.test"})
    assert (unknown.status_code, unknown.headers["x-footfall-ignored"]) == (202, "unknown_site")
    missing = plausible(server, {"n": "pageview", "u": f"https://{site}/"})
    assert missing.status_code == 400 and missing.json()["errors"] == {"domain": ["required"]}
    bad = plausible(server, {"n": "Buy", "u": f"https://{site}/", "d": site, "$": {"currency": "XXY", "amount": 3}})
    assert bad.status_code == 400 and bad.json()["error"]["field"] == "revenue.currency"
    preflight = httpx.options(f"{server.url}/api/event")
    assert preflight.status_code == 204 and preflight.headers["access-control-allow-origin"] == "*"
    assert live(server, site) == []


@pytest.mark.parametrize("path", ["/api/event", "/api/send"])
def test_body_limit_nesting_guard_and_method(server, path):
    huge = httpx.post(f"{server.url}{path}", content=b'{"n": "' + b"x" * 1_100_000 + b'"}', headers={"user-agent": BROWSER_UA})
    assert huge.status_code == 413
    deep = httpx.post(f"{server.url}{path}", content=b"[" * 100 + b"]" * 100, headers={"user-agent": BROWSER_UA})
    assert deep.status_code == 400 and "nested" in deep.json()["error"]["message"]
    assert httpx.get(f"{server.url}{path}").status_code == 405


def test_plausible_hash_mode_keeps_the_fragment(server):
    site = new_site(server)
    assert plausible(server, {"n": "pageview", "u": f"https://{site}/app#/settings", "d": site, "h": 1}).status_code == 202
    assert wait_live(server, site, 1)[0]["path"] == "/app#/settings"


# -- Umami's /api/send ------------------------------------------------------------------------
def test_umami_node_client(server, npm_clients):
    website = str(uuid.uuid4())
    site = new_site(server, umami_website_id=website)
    script = f"""
    import client from '@umami/node';
    const umami = client.default || client;  // the package's CommonJS build, from an ES module
    umami.init({{ websiteId: '{website}', hostUrl: '{server.url}', userAgent: {json.dumps(BROWSER_UA)} }});
    const out = [];
    for (const call of [
      () => umami.track({{ hostname: '{site}', url: '/pricing?utm_campaign=spring', title: 'Pricing',
                          referrer: 'https://news.ycombinator.com/item?id=1', language: 'de-DE', screen: '390x844' }}),
      () => umami.track({{ hostname: '{site}', url: '/pricing', name: 'Signup', data: {{ plan: 'pro' }} }}),
      () => umami.identify({{ company: 'ACME' }}),
    ]) {{
      const response = await call();
      out.push([response.status, await response.json()]);
    }}
    console.log(JSON.stringify(out));
    """
    result = subprocess.run(["node", "--input-type=module", "-e", script], cwd=npm_clients.parent,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    answers = json.loads(result.stdout)
    assert [status for status, _ in answers] == [200, 200, 200]
    assert set(answers[0][1]) == {"cache", "sessionId", "visitId"}
    events = wait_live(server, site, 2)
    assert len(events) == 2  # identify counts nothing
    view, signup = events
    assert (view["name"], view["path"], view["source"], view["utm_campaign"]) == ("pageview", "/pricing", "Hacker News", "spring")
    assert (view["language"], view["screen"]) == ("de-DE", "Mobile")
    assert (signup["name"], signup["props"]) == ("Signup", {"plan": "pro"})
    totals = stats(server, "/api/v1/stats/aggregate", site)
    assert totals["pageviews"] == 1 and totals["visitors"] == 1


def test_umami_answers_like_umami(server):
    website = str(uuid.uuid4())
    site = new_site(server, umami_website_id=website)

    def send(body, agent=BROWSER_UA):
        return httpx.post(f"{server.url}/api/send", json=body, headers={"user-agent": agent})

    assert send({"type": "event", "payload": {"website": str(uuid.uuid4()), "url": "/"}}).status_code == 400
    bot = send({"type": "event", "payload": {"website": website, "hostname": site, "url": "/"}}, agent="curl/8.5.0")
    assert (bot.status_code, bot.json()) == (200, {"beep": "boop"})
    wrong = send({"type": "mystery", "payload": {"website": website}})
    assert wrong.status_code == 400 and wrong.json()["error"]["field"] == "type"
    assert live(server, site) == []


def test_site_aliases_are_unique_and_editable(server):
    website = str(uuid.uuid4())
    site = new_site(server, umami_website_id=website)
    clash = httpx.post(f"{server.url}/api/v1/sites", json={"domain": f"other-{uuid.uuid4().hex[:8]}.test", "umami_website_id": website},
                       headers=server.auth())
    assert clash.status_code == 409 and clash.json()["error"]["field"] == "umami_website_id"
    bad = httpx.patch(f"{server.url}/api/v1/sites/{site}", json={"umami_website_id": "not-a-uuid"}, headers=server.auth())
    assert bad.status_code == 422 and bad.json()["error"]["field"] == "umami_website_id"
    changed = httpx.patch(f"{server.url}/api/v1/sites/{site}", json={"plausible_site_id": "old-name.example"}, headers=server.auth())
    assert changed.status_code == 200 and changed.json()["data"]["plausible_site_id"] == "old-name.example"
    assert plausible(server, {"n": "pageview", "u": "https://old-name.example/", "d": "old-name.example"}).headers.get("x-plausible-dropped") is None
    assert wait_live(server, site, 1)[0]["hostname"] == "old-name.example"


def test_cli_sets_the_aliases(server):
    website, domain = str(uuid.uuid4()), f"cli-{uuid.uuid4().hex[:8]}.test"
    added = footfall_cli("site", "add", domain, "--umami-website-id", website, data_dir=server.data_dir)
    assert added.returncode == 0, added.stderr
    alias = footfall_cli("site", "alias", domain, "--plausible-site-id", f"old-{domain}", data_dir=server.data_dir)
    assert alias.returncode == 0 and f"plausible_site_id=old-{domain}" in alias.stdout, alias.stderr
    bad = footfall_cli("site", "alias", domain, "--umami-website-id", "not-a-uuid", data_dir=server.data_dir)
    assert bad.returncode != 0 and "umami_website_id" in bad.stderr
    sent = httpx.post(f"{server.url}/api/send", headers={"user-agent": BROWSER_UA},
                      json={"type": "event", "payload": {"website": website, "hostname": domain, "url": "/cli"}})
    assert sent.status_code == 200
    assert plausible(server, {"n": "pageview", "u": f"https://{domain}/old", "d": f"old-{domain}"}).status_code == 202
    assert sorted(e["path"] for e in wait_live(server, domain, 2)) == ["/cli", "/old"]


def test_settings_page_edits_the_aliases(server):
    site, website = new_site(server), str(uuid.uuid4())
    with httpx.Client(base_url=server.url, headers={"user-agent": BROWSER_UA}, timeout=30) as browser:
        form = browser.get("/login")
        token = re.search(r'name="csrf" value="([^"]+)"', form.text).group(1)
        assert browser.post("/login", data={"username": "admin", "password": server.password, "csrf": token}).status_code == 303
        page = browser.get(f"/sites/{site}/settings")
        assert 'name="umami_website_id"' in page.text and 'name="plausible_site_id"' in page.text
        csrf = re.search(r'name="csrf-token" content="([^"]+)"', page.text).group(1)
        fields = {"csrf": csrf, "name": site, "timezone": "UTC", "retention_days": "400", "allowed_hostnames": ""}
        saved = browser.post(f"/sites/{site}/settings", data={**fields, "umami_website_id": website, "plausible_site_id": ""})
        assert saved.status_code == 303, saved.text
        assert website in browser.get(f"/sites/{site}/settings").text
        refused = browser.post(f"/sites/{site}/settings", data={**fields, "umami_website_id": "nope"})
        assert refused.status_code == 422 and "Umami website id" in refused.text
    answer = httpx.get(f"{server.url}/api/v1/sites/{site}", headers=server.auth()).json()["data"]
    assert answer["umami_website_id"] == website


# -- in Chromium: Plausible's npm tracker, and Footfall's compatibility scripts -------------------
class Pages:
    """Serves test pages (and the npm tracker's module) from another loopback origin."""

    def __init__(self, node_modules: Path) -> None:
        self.pages: dict[str, str] = {}
        pages = self.pages

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802
                path = self.path.split("?")[0]
                if path == "/plausible.js":
                    body, kind = (node_modules / "@plausible-analytics/tracker/plausible.js").read_bytes(), "text/javascript"
                elif path.split("/")[1] in pages:
                    body, kind = pages[path.split("/")[1]].encode(), "text/html; charset=utf-8"
                else:
                    self.send_error(404)
                    return
                self.send_response(200)
                self.send_header("Content-Type", kind)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args) -> None:
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()


@pytest.fixture(scope="module")
def pages(npm_clients):
    served = Pages(npm_clients)
    yield served
    served.httpd.shutdown()
    served.httpd.server_close()


@pytest.fixture(scope="module")
def browser_page(browser):
    if not CHROMIUM.exists():
        pytest.skip("Debian's chromium is not installed")
    context = browser.new_context(user_agent=BROWSER_UA)
    yield context.new_page()
    context.close()


def test_plausible_npm_tracker_in_chromium(server, pages, browser_page):
    site = new_site(server)
    pages.pages["npm"] = f"""<!doctype html><html><body><h1>npm</h1><script type="module">
      window.__plausible = true;  // the tracker ignores automated browsers unless told otherwise
      import {{ init, track }} from '/plausible.js';
      init({{ domain: '{site}', endpoint: '{server.url}/api/event', captureOnLocalhost: true }});
      track('Signup', {{ props: {{ plan: 'pro' }} }});
      track('Purchase', {{ revenue: {{ currency: 'USD', amount: 19.99 }}, props: {{ sku: 'A1' }} }});
    </script></body></html>"""
    browser_page.goto(f"{pages.url}/npm/welcome?ref=launch")
    events = wait_live(server, site, 3)
    names = sorted(e["name"] for e in events if e["kind"] != "engagement")
    assert names == ["Purchase", "Signup", "pageview"], events
    view = [e for e in events if e["name"] == "pageview"][0]
    assert view["path"] == "/npm/welcome" and view["browser"] == "Chrome"
    purchase = [e for e in events if e["name"] == "Purchase"][0]
    assert purchase["props"] == {"sku": "A1"}
    assert stats(server, "/api/v1/stats/aggregate", site)["pageviews"] == 1


def test_compat_scripts_in_chromium(server, pages, browser_page):
    plausible_site = new_site(server)
    website = str(uuid.uuid4())
    umami_site = new_site(server, umami_website_id=website)
    pages.pages["plausible"] = f"""<!doctype html><html><body>
      <script>window.plausible = window.plausible || function () {{ (window.plausible.q = window.plausible.q || []).push(arguments) }};
      plausible('Queued', {{ props: {{ early: 'yes' }} }});</script>
      <script defer data-domain="{plausible_site}" src="{server.url}/js/script.tagged-events.outbound-links.js"></script>
      <button id="tagged" class="plausible-event-name=Sign+Up plausible-event-plan=pro">Sign up</button>
      <a id="out" href="https://elsewhere.example/page" target="_blank">out</a>
    </body></html>"""
    browser_page.goto(f"{pages.url}/plausible")
    browser_page.wait_for_function("typeof window.footfall === 'function'")
    browser_page.click("#tagged")
    browser_page.evaluate("document.getElementById('out').addEventListener('click', e => e.preventDefault())")
    browser_page.click("#out")
    events = [e for e in wait_live(server, plausible_site, 4) if e["kind"] != "engagement"]
    by_name = {e["name"]: e for e in events}
    assert set(by_name) == {"pageview", "Queued", "Sign Up", "Outbound Link: Click"}, events
    assert by_name["Sign Up"]["props"] == {"plan": "pro"}
    assert by_name["Outbound Link: Click"]["props"] == {"url": "https://elsewhere.example/page"}

    pages.pages["umami"] = f"""<!doctype html><html><body>
      <script defer src="{server.url}/script.js" data-website-id="{website}"></script>
      <button id="cta" data-umami-event="Download" data-umami-event-format="pdf">get</button>
    </body></html>"""
    browser_page.goto(f"{pages.url}/umami")
    browser_page.wait_for_function("window.umami && typeof window.umami.track === 'function'")
    browser_page.click("#cta")
    browser_page.evaluate("umami.track('Signup', { plan: 'team' })")
    events = [e for e in wait_live(server, umami_site, 3) if e["kind"] != "engagement"]
    assert sorted((e["name"], json.dumps(e["props"], sort_keys=True)) for e in events) == [
        ("Download", '{"format": "pdf"}'), ("Signup", '{"plan": "team"}'), ("pageview", "{}")]


def test_compat_hash_script_counts_hash_routes(server, pages, browser_page):
    site = new_site(server)
    pages.pages["hashapp"] = f"""<!doctype html><html><body>
      <script defer data-domain="{site}" src="{server.url}/js/script.hash.js"></script><p>app</p></body></html>"""
    browser_page.goto(f"{pages.url}/hashapp#/inbox")
    browser_page.wait_for_function("typeof window.footfall === 'function'")
    browser_page.evaluate("location.hash = '#/settings'")
    views = wait_for(lambda: (found := [e for e in live(server, site) if e["name"] == "pageview"]) and len(found) >= 2 and found,
                     "two hash-route page views")
    assert [view["path"] for view in views] == ["/hashapp#/inbox", "/hashapp#/settings"]


def test_script_paths(server):
    for path in ("/js/script.js", "/js/script.hash.outbound-links.js", "/js/script.file-downloads.revenue.tagged-events.js", "/script.js"):
        answer = httpx.get(f"{server.url}{path}")
        assert answer.status_code == 200 and answer.headers["content-type"].startswith("application/javascript"), path
        assert b"/api/v1/collect" in answer.content
    # the compatibility script's budget: footfall.js (1.5 KB) plus the adapter, gzipped
    assert len(gzip.compress(httpx.get(f"{server.url}/js/script.tagged-events.js").content, 9, mtime=0)) <= 2800
    assert httpx.get(f"{server.url}/js/script.unknown-extension.js").status_code == 404
    assert httpx.get(f"{server.url}/js/footfall.js").content == (ROOT / "web/static/footfall.js").read_bytes()
