"""What the live view tells whom (security review, issue 11, finding 4).

``GET /api/v1/live``, the dashboard's live page and its Server-Sent Events stream all show
events as :class:`appliance.live.LiveEvent`: viewers, shared links and anonymous visitors of
a public site get the viewer fields only; custom properties and the other event details are
for analysts and admins; nobody ever gets the client's session id (``session_hint``), a
visitor id, a user id or anything derived from an IP address but the country.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable

import httpx
import pytest

from tests.e2e.test_access_matrix import PASSWORD, dashboard_login, unique
from tests.servers import BROWSER_UA, start_server

SECRET_SESSION = "sess-secret-7f3a"
SECRET_USER = "user-secret-91c2"
SECRET_EMAIL = "alice@example.org"
NEVER = (SECRET_SESSION, SECRET_USER, SECRET_EMAIL, "session_hint", "session_id", "visitor_id", "user_id",
         "user_hashed", "region", "props")
VIEWER_FIELDS = {"event_id", "timestamp", "kind", "name", "path", "source", "channel", "country", "device",
                 "browser", "os", "revenue", "currency"}


class World:
    def __init__(self, handle) -> None:
        self.handle = handle
        self.private = unique("private") + ".test"
        self.public = unique("public") + ".test"
        with httpx.Client(base_url=handle.url, headers=handle.auth()) as api:
            for domain, public in ((self.private, False), (self.public, True)):
                answer = api.post("/api/v1/sites", json={"domain": domain, "public": public})
                assert answer.status_code == 201, answer.text
            self.share = api.post(f"/api/v1/sites/{self.private}/shared-link").json()["token"]
            self.users = {}
            for role in ("viewer", "analyst"):
                name = unique(role)
                answer = api.post("/api/v1/users", json={"username": name, "password": PASSWORD, "role": role,
                                                         "sites": [self.private, self.public]})
                assert answer.status_code == 201, answer.text
                self.users[role] = name
        self.tokens = {}
        for role, name in self.users.items():
            answer = httpx.post(f"{handle.url}/api/v1/authenticate", json={"username": name, "password": PASSWORD})
            self.tokens[role] = answer.json()["token"]
        for domain in (self.private, self.public):
            self.send(domain, "/signup")

    def send(self, domain: str, path: str) -> None:
        answer = httpx.post(f"{self.handle.url}/api/v1/events", headers={"user-agent": BROWSER_UA}, json={
            "event_type": "Signup", "site": domain, "session_id": SECRET_SESSION, "user_id": SECRET_USER,
            "metadata": {"page_url": f"https://{domain}{path}", "email": SECRET_EMAIL}})
        assert answer.status_code == 200, answer.text


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    handle = start_server(tmp_path_factory.mktemp("live-privacy") / "data", env={"FOOTFALL_DEMO": "false"})
    try:
        yield World(handle)
    finally:
        handle.stop()


def _api_live(world: World, caller: str) -> httpx.Response:
    params: dict[str, str] = {"site": world.public if caller == "anonymous" else world.private}
    headers: dict[str, str] = {}
    if caller == "share_link":
        params["auth"] = world.share
    elif caller in world.tokens:
        headers["Authorization"] = f"Bearer {world.tokens[caller]}"
    elif caller == "admin":
        headers = world.handle.auth()
    answer = httpx.get(f"{world.handle.url}/api/v1/live", params=params, headers=headers)
    assert answer.status_code == 200, answer.text
    return answer


@pytest.mark.parametrize("caller", ["viewer", "share_link", "anonymous"])
def test_api_live_shows_viewers_no_session_hint_ids_or_properties(world, caller):
    answer = _api_live(world, caller)
    items = answer.json()["data"]
    assert items and items[0]["name"] == "Signup" and items[0]["path"] == "/signup"
    for needle in NEVER:
        assert needle not in answer.text, f"{caller} sees {needle!r}: {answer.text[:400]}"
    assert set(items[0]) == VIEWER_FIELDS


@pytest.mark.parametrize("caller", ["analyst", "admin"])
def test_api_live_shows_analysts_the_properties_but_never_ids(world, caller):
    answer = _api_live(world, caller)
    item = next(item for item in answer.json()["data"] if item["path"] == "/signup")
    assert item["props"] == {"email": SECRET_EMAIL}
    assert set(item) >= VIEWER_FIELDS
    for needle in NEVER[:2] + NEVER[3:-1]:
        assert needle not in answer.text, f"{caller} sees {needle!r}: {answer.text[:400]}"


def _stream_events(world: World, params: dict, cookies: dict, trigger: Callable[[], None], marker: str) -> str:
    """Open the live view's SSE stream, run ``trigger`` once subscribed, and return the
    ``events`` messages read until one mentions ``marker``."""
    domain = params.pop("domain")
    received: list[str] = []
    with (
        httpx.Client(base_url=world.handle.url, cookies=cookies, timeout=15) as client,
        client.stream("GET", f"/sites/{domain}/live/stream", params=params) as stream,
    ):
        assert stream.status_code == 200
        lines = stream.iter_lines()
        for line in lines:
            if line.startswith(":"):  # the "connected" comment: subscribed
                break
        trigger()
        current = ""
        for line in lines:
            if line.startswith("event:"):
                current = line.partition(":")[2].strip()
            elif line.startswith("data:") and current == "events":
                received.append(line)
                if marker in line:
                    return "\n".join(received)
    pytest.fail(f"the stream never sent {marker}")


def _dashboard_caller(world: World, caller: str) -> tuple[str, dict, dict]:
    """(domain, query parameters, cookies) with which ``caller`` opens the live view."""
    if caller == "share_link":
        return world.private, {"auth": world.share}, {}
    if caller == "anonymous":
        return world.public, {}, {}
    session, _ = dashboard_login(world.handle.url, world.users[caller], PASSWORD)
    return world.private, {}, {"footfall_session": session}


@pytest.mark.parametrize("caller", ["viewer", "share_link", "anonymous", "analyst"])
def test_live_stream_and_page_show_properties_to_analysts_only(world, caller):
    domain, params, cookies = _dashboard_caller(world, caller)
    path = f"/stream-{uuid.uuid4().hex[:8]}"
    sent = _stream_events(world, {"domain": domain, **params}, cookies, lambda: world.send(domain, path), path)
    page = httpx.get(f"{world.handle.url}/sites/{domain}/live", params=params, cookies=cookies)
    assert page.status_code == 200 and path in page.text
    for text in (sent, page.text):
        assert SECRET_SESSION not in text and SECRET_USER not in text
        if caller == "analyst":
            assert SECRET_EMAIL in text
        else:
            assert SECRET_EMAIL not in text and "email" not in text
