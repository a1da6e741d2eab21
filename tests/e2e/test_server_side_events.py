"""Server-side events over HTTP (issue 13): a backend, not a browser, calls the seed API.

The visitor's user agent and address come from the body (``metadata.user_agent``,
``metadata.ip``) or, from a caller with an API key, from forwarded ``User-Agent`` /
``X-Forwarded-For``; the caller's own HTTP library never makes an event a bot. Anonymous
scripts stay bots, told how to do it right. What the pipeline made of each event is read
back from the live view (browser, device, country).
"""

from __future__ import annotations

import uuid

import httpx
import pytest

from tests.servers import start_server

IPHONE = (
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 "
    "(KHTML, like Gecko) Version/17.4 Mobile/15E148 Safari/604.1"
)
GOOGLEBOT = "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)"
GERMAN_IP = "5.9.0.1"  # iptocc: DE
HINT = (
    "server-side events: send the visitor's user agent as metadata.user_agent, or authenticate "
    "with an API key; see README#server-side-events"
)


def _new_site(server, prefix: str) -> str:
    domain = f"{prefix}-{uuid.uuid4().hex[:10]}.test"
    response = httpx.post(f"{server.url}/api/v1/sites", json={"domain": domain}, headers=server.auth())
    assert response.status_code == 201, response.text
    return domain


def _key(server, token: str, **body) -> str:
    response = httpx.post(
        f"{server.url}/api/v1/apikeys", json={"name": f"backend {uuid.uuid4().hex[:6]}", **body},
        headers={"Authorization": f"Bearer {token}"},
    )
    assert response.status_code == 201, response.text
    return response.json()["key"]


@pytest.fixture(scope="module")
def site(server) -> str:
    return _new_site(server, "serverside")


@pytest.fixture(scope="module")
def key(server) -> str:
    return _key(server, server.token)


def post(server, path: str, body, agent: str = "python-httpx/0.27.0", key: str | None = None, **headers):
    headers = {"user-agent": agent, **headers}
    if key:
        headers["authorization"] = f"Bearer {key}"
    return httpx.post(f"{server.url}{path}", json=body, headers=headers, timeout=30)


def event(site: str, path: str, **metadata) -> dict:
    return {"event_type": "page_view", "site": site, "metadata": {"page_url": f"https://{site}{path}", **metadata}}


def live(server, site: str) -> dict[str, dict]:
    response = httpx.get(f"{server.url}/api/v1/live", params={"site": site}, headers=server.auth())
    assert response.status_code == 200, response.text
    return {item["path"]: item for item in response.json()["data"]}


def test_anonymous_scripts_are_bots_and_the_answer_says_how_to_send_server_side_events(server, site):
    for agent in ("curl/8.5.0", "python-requests/2.32.3"):
        answer = post(server, "/api/v1/events", event(site, "/anonymous-script"), agent=agent)
        assert answer.status_code == 202, answer.text
        assert answer.headers["x-footfall-ignored"] == "bot"
        assert answer.json() == {"status": "ignored", "reason": "bot", "hint": HINT}
    batch = post(server, "/api/v1/conversions", [{"conversion_type": "buy", "site": site}], agent="curl/8.5.0")
    assert batch.json()["results"] == [{"status": "ignored", "reason": "bot", "hint": HINT}]
    # a crawler's own user agent gets no hint: it is not a server sending events
    crawler = post(server, "/api/v1/events", event(site, "/crawler"), agent=GOOGLEBOT)
    assert crawler.json() == {"status": "ignored", "reason": "bot"}
    assert "/anonymous-script" not in live(server, site)


def test_metadata_user_agent_makes_an_anonymous_servers_event_the_visitors(server, site):
    answer = post(server, "/api/v1/events", event(site, "/body-agent", user_agent=IPHONE), agent="curl/8.5.0")
    assert answer.status_code == 200, answer.text
    conversion = post(
        server, "/api/v1/conversions",
        {"conversion_type": "server-buy", "site": site, "metadata": {"amount": 5, "user_agent": IPHONE,
                                                                      "page_url": f"https://{site}/checkout"}},
        agent="curl/8.5.0",
    )
    assert conversion.status_code == 200, conversion.text
    crawler = post(server, "/api/v1/events", event(site, "/body-crawler", user_agent=GOOGLEBOT))
    assert crawler.status_code == 202 and crawler.json() == {"status": "ignored", "reason": "bot"}
    # without a key the body's address is not believed
    untrusted = post(server, "/api/v1/events", event(site, "/body-ip", user_agent=IPHONE, ip=GERMAN_IP),
                     **{"x-forwarded-for": GERMAN_IP})
    assert untrusted.status_code == 200
    seen = live(server, site)
    assert (seen["/body-agent"]["browser"], seen["/body-agent"]["device"]) == ("Safari", "Mobile")
    assert seen["/checkout"]["device"] == "Mobile"
    assert seen["/body-ip"]["country"] == ""
    assert "/body-crawler" not in seen


def test_an_api_key_makes_a_trusted_server(server, site, key):
    own_agent = post(server, "/api/v1/events", event(site, "/key-own-agent"), agent="curl/8.5.0", key=key)
    assert own_agent.status_code == 200, own_agent.text
    in_body = post(server, "/api/v1/events", event(site, "/key-body", user_agent=IPHONE, ip=GERMAN_IP), key=key)
    assert in_body.status_code == 200, in_body.text
    forwarded = post(server, "/api/v1/events", event(site, "/key-forwarded"), agent=IPHONE, key=key,
                     **{"x-forwarded-for": f"{GERMAN_IP}, 10.0.0.1"})
    assert forwarded.status_code == 200, forwarded.text
    explicit = post(server, "/api/v1/events", event(site, "/key-explicit", user_agent=IPHONE, browser="Firefox",
                                                    device="desktop"), key=key)
    assert explicit.status_code == 200, explicit.text
    crawler = post(server, "/api/v1/events", event(site, "/key-crawler"), agent=GOOGLEBOT, key=key)
    assert crawler.status_code == 202  # a forwarded crawler is still one
    token = post(server, "/api/v1/conversions", [{"conversion_type": "buy", "site": site,
                                                 "metadata": {"page_url": f"https://{site}/key-token"}}],
                 agent="Go-http-client/1.1", key=server.token)
    assert token.json()["accepted"] == 1, token.text  # a login token works as a key does

    seen = live(server, site)
    assert (seen["/key-own-agent"]["browser"], seen["/key-own-agent"]["device"]) == ("", "")
    for path in ("/key-body", "/key-forwarded"):
        assert (seen[path]["country"], seen[path]["browser"], seen[path]["device"]) == ("DE", "Safari", "Mobile"), path
    assert (seen["/key-explicit"]["browser"], seen["/key-explicit"]["device"]) == ("Firefox", "Desktop")
    assert "/key-crawler" not in seen and "/key-token" in seen


def test_credentials_that_cannot_ingest_are_refused(server, site):
    read_only = _key(server, server.token, read_only=True)
    for credential, status in (("ffk_not-a-key", 401), ("ff_not-a-token", 401), (read_only, 403)):
        answer = post(server, "/api/v1/events", event(site, "/refused", user_agent=IPHONE), key=credential)
        assert answer.status_code == status, (credential, answer.text)
        assert answer.json()["status"] == "error"
    assert post(server, "/api/v1/events", event(site, "/refused"), key="ffk_x").headers["www-authenticate"] == "Bearer"
    # a viewer's key reaches only the viewer's sites
    other = _new_site(server, "serverside-other")
    name = f"backend-{uuid.uuid4().hex[:8]}"
    created = httpx.post(f"{server.url}/api/v1/users", headers=server.auth(), json={
        "username": name, "email": f"{name}@example.com", "password": "a long password", "role": "viewer",
        "sites": [site]})
    assert created.status_code == 201, created.text
    login = httpx.post(f"{server.url}/api/v1/authenticate", json={"username": name, "password": "a long password"})
    viewer_key = _key(server, login.json()["token"])
    assert post(server, "/api/v1/events", event(site, "/viewer-key"), key=viewer_key).status_code == 200
    refused = post(server, "/api/v1/events", event(other, "/viewer-key"), key=viewer_key)
    assert refused.status_code == 403, refused.text
    assert refused.json()["error"]["field"] == "site"
    batch = post(server, "/api/v1/events", [event(site, "/viewer-batch"), event(other, "/viewer-batch")], key=viewer_key)
    assert [item["status"] for item in batch.json()["results"]] == ["success", "error"]
    assert "/refused" not in live(server, site)


def test_a_trusted_server_is_not_held_to_the_per_ip_rate_limit(tmp_path):
    handle = start_server(tmp_path / "data", env={"FOOTFALL_INGEST_RATE_LIMIT_PER_IP": "1",
                                                   "FOOTFALL_INGEST_RATE_LIMIT_BURST_SECONDS": "1"})
    try:
        anonymous = [post(handle, "/api/v1/events", event("localhost", "/a", user_agent=IPHONE)).status_code
                     for _ in range(4)]
        assert 429 in anonymous
        trusted = [post(handle, "/api/v1/events", event("localhost", "/t"), key=handle.token).status_code
                   for _ in range(4)]
        assert trusted == [200] * 4
    finally:
        handle.kill()
