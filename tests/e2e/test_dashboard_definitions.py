"""Goals, funnels, segments, the public dashboard and sites from the UI, over HTTP without a
browser: the forms create what the JSON API then reads, the numbers on the pages match the
API's reports, and the permission rules hold (a viewer sees no forms and is refused when
posting, a POST without the CSRF token is refused, a shared link reads but never writes).
"""

from __future__ import annotations

import html
import re
import time
import uuid
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from tests.e2e.test_dashboard_pages import PASSWORD, csrf_of, login
from tests.servers import BROWSER_UA, start_server

SITE = "shop.test"


def send(url: str, visitor: int, path: str, event: str | None = None, props: dict | None = None,
         seconds_ago: int = 0) -> None:
    """One page view (or custom event) from a distinct visitor, through the seed API."""
    moment = (datetime.now(UTC) - timedelta(seconds=seconds_ago)).strftime("%Y-%m-%dT%H:%M:%SZ")
    body = {"event_type": event or "page_view", "site": SITE, "timestamp": moment,
            "session_id": f"s{visitor}", "user_id": f"u{visitor}",
            "metadata": {"page_url": f"http://{SITE}{path}", **(props or {})}}
    headers = {"user-agent": BROWSER_UA, "x-forwarded-for": f"10.0.0.{visitor}"}
    answer = httpx.post(f"{url}/api/v1/events", json=body, headers=headers, timeout=10)
    assert answer.status_code == 200, answer.text


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """A server with a small shop: 6 visitors see /, 4 of them /pricing, 2 of them sign up."""
    handle = start_server(tmp_path_factory.mktemp("definitions") / "data", env={"FOOTFALL_DEMO": "false"})
    with httpx.Client(base_url=handle.url, headers=handle.auth()) as api:
        assert api.post("/api/v1/sites", json={"domain": SITE}).status_code == 201
        for name, role in (("vera", "viewer"), ("ana", "analyst")):
            answer = api.post("/api/v1/users", json={"username": name, "password": PASSWORD, "role": role,
                                                     "sites": [SITE]})
            assert answer.status_code == 201, answer.text
    for visitor in range(1, 7):
        send(handle.url, visitor, "/", seconds_ago=300)
        if visitor <= 4:
            send(handle.url, visitor, "/pricing", seconds_ago=240)
        if visitor <= 2:
            send(handle.url, visitor, "/signup", event="Signup", props={"plan": "pro"}, seconds_ago=200)
    yield handle
    handle.stop()


@pytest.fixture(scope="module")
def admin(server):
    client = login(server.url, "admin", server.password)
    yield client
    client.close()


@pytest.fixture(scope="module")
def analyst(server):
    client = login(server.url, "ana", PASSWORD)
    yield client
    client.close()


@pytest.fixture(scope="module")
def viewer(server):
    client = login(server.url, "vera", PASSWORD)
    yield client
    client.close()


def cell(page: str, row_attribute: str, column: str) -> str:
    row = re.search(rf'<tr {row_attribute}>(.*?)</tr>', page, re.S)
    assert row, f"no row {row_attribute}"
    return html.unescape(re.search(rf'data-column="{column}"[^>]*>([^<]*)<', row.group(1)).group(1)).strip()


def wait_for_backfill(server, name: str) -> None:
    with httpx.Client(base_url=server.url, headers=server.auth()) as api:
        for _ in range(100):
            goals = api.get("/api/v1/goals", params={"site": SITE}).json()["data"]
            if all(goal["backfill"]["status"] == "complete" for goal in goals if goal["name"] == name):
                return
            time.sleep(0.1)
    raise AssertionError("the goal was never back-filled")


def test_an_analyst_creates_edits_and_deletes_a_goal(server, analyst):
    page = analyst.get(f"/sites/{SITE}/goals")
    assert page.status_code == 200 and "No goals yet" in page.text and 'id="goal-form"' in page.text
    answer = analyst.post(f"/sites/{SITE}/goals", data={"csrf": csrf_of(page.text), "name": "Pricing",
                                                         "kind": "page", "value": "/pricing"})
    assert answer.status_code == 303, answer.text
    wait_for_backfill(server, "Pricing")
    page = analyst.get(answer.headers["location"]).text
    assert "Saved goal “Pricing”" in page
    assert cell(page, 'data-goal="Pricing"', "conversions") == "4"
    assert cell(page, 'data-goal="Pricing"', "visitors") == "4"
    assert cell(page, 'data-goal="Pricing"', "conversion_rate") == "67%"  # 4 of 6 visitors
    with httpx.Client(base_url=server.url, headers=server.auth()) as api:
        goal = next(g for g in api.get("/api/v1/goals", params={"site": SITE}).json()["data"] if g["name"] == "Pricing")
    assert goal["kind"] == "page" and goal["page"] == "/pricing"

    # a wrong form is answered with the page again, naming the field, and keeps what was typed
    wrong = analyst.post(f"/sites/{SITE}/goals", data={"csrf": csrf_of(page), "name": "No value", "kind": "event",
                                                        "value": ""})
    assert wrong.status_code == 422 and 'role="alert"' in wrong.text and 'value="No value"' in wrong.text

    edit = analyst.get(f"/sites/{SITE}/goals?edit={goal['id']}").text
    assert "Change the goal “Pricing”" in edit and 'value="/pricing"' in edit
    changed = analyst.post(f"/sites/{SITE}/goals/{goal['id']}", data={
        "csrf": csrf_of(edit), "name": "Pro signup", "kind": "event", "value": "Signup", "prop_key": "plan",
        "prop_value": "pro"})
    assert changed.status_code == 303
    wait_for_backfill(server, "Pro signup")
    page = analyst.get(f"/sites/{SITE}/goals").text
    assert cell(page, 'data-goal="Pro signup"', "conversions") == "2"
    assert "Pricing" not in page

    gone = analyst.post(f"/sites/{SITE}/goals/{goal['id']}/delete", data={"csrf": csrf_of(page)})
    assert gone.status_code == 303
    assert "No goals yet" in analyst.get(f"/sites/{SITE}/goals").text
    assert analyst.post(f"/sites/{SITE}/goals/{goal['id']}/delete", data={"csrf": csrf_of(page)}).status_code == 404


def test_goals_show_in_the_conversions_widget(server, admin):
    page = admin.get(f"/sites/{SITE}/goals").text
    answer = admin.post(f"/sites/{SITE}/goals", data={"csrf": csrf_of(page), "name": "Signed up", "kind": "event",
                                                       "value": "Signup"})
    assert answer.status_code == 303
    wait_for_backfill(server, "Signed up")
    widget = admin.get(f"/sites/{SITE}/widgets/conversions").text
    assert "Signed up" in widget and "<th scope=\"col\">Goal</th>" in widget
    assert "33%" in widget  # 2 of 6 visitors


def test_a_funnel_from_the_form_reports_each_step(server, analyst):
    page = analyst.get(f"/sites/{SITE}/funnels").text
    assert page.count('name="step_value"') == 8
    answer = analyst.post(f"/sites/{SITE}/funnels?period=7d", data={
        "csrf": csrf_of(page), "name": "Signup funnel", "mode": "visit",
        "step_kind": ["page", "page", "event", "page"], "step_value": ["/", "/pricing", "Signup", ""],
        "step_follows": ["eventually", "eventually", "directly", "eventually"], "step_name": ["Home", "", "", ""]})
    assert answer.status_code == 303, answer.text
    location = answer.headers["location"]
    assert re.search(r"/funnels/\d+\?period=7d", location)
    report = analyst.get(location)
    assert report.status_code == 200
    text = report.text
    assert [cell(text, f'data-step="{n}"', "visitors") for n in (1, 2, 3)] == ["6", "4", "2"]
    assert cell(text, 'data-step="2"', "dropoff").startswith("2")
    assert 'class="chart-svg funnel-svg"' in text and text.count('class="bar-group"') == 6  # the wide chart and the phone's
    assert "Step 3 · event: Signup: 2 visitors (50% of step 2; 2 dropped off)" in html.unescape(text)
    assert re.search(r'data-metric="conversion">33', text)
    # the same numbers as the JSON API
    funnel_id = int(re.search(r"/funnels/(\d+)", location).group(1))
    with httpx.Client(base_url=server.url, headers=server.auth()) as api:
        data = api.get(f"/api/v1/funnels/{funnel_id}/report", params={"site": SITE}).json()["data"]
    assert [step["visitors"] for step in data["steps"]] == [6, 4, 2]
    # the filters in the URL apply: only visitors with a Signup event
    filtered = analyst.get(f"{location}&filter=event:Signup").text
    assert [cell(filtered, f'data-step="{n}"', "visitors") for n in (1, 2, 3)] == ["2", "2", "2"]
    # one step is not a funnel
    wrong = analyst.post(f"/sites/{SITE}/funnels", data={"csrf": csrf_of(page), "name": "x", "step_kind": ["page"],
                                                          "step_value": ["/"], "step_follows": ["eventually"]})
    assert wrong.status_code == 422 and "2 to 8 steps" in wrong.text


def test_a_segment_filters_the_dashboard_and_compares_with_everyone(server, analyst, viewer):
    page = analyst.get(f"/sites/{SITE}/segments").text
    answer = analyst.post(f"/sites/{SITE}/segments", data={
        "csrf": csrf_of(page), "name": "Pricing readers", "visibility": "site",
        "filter_dimension": ["page", "page"], "filter_operator": ["is", "is"], "filter_value": ["", ""],
        "condition_kind": ["visited_page", "min_pageviews"], "condition_value": ["/pricing", ""]})
    assert answer.status_code == 303, answer.text
    location = answer.headers["location"]
    segment_id = re.search(r"segment=(\d+)", location).group(1)
    dashboard = analyst.get(location).text
    assert "Segment <strong>Pricing readers</strong>" in dashboard
    assert re.search(r'data-metric="visitors">4<', dashboard)
    assert re.search(r'data-metric="visitors">6<', analyst.get(f"/sites/{SITE}").text)
    # every widget link keeps the segment
    assert f"segment={segment_id}" in html.unescape(re.search(r'href="([^"]*period=day[^"]*)"', dashboard).group(1))
    compared = analyst.get(f"/sites/{SITE}/segments/compare?a={segment_id}&b=everyone").text
    row = re.search(r'<tr data-metric="visitors">(.*?)</tr>', compared, re.S).group(1)
    assert re.findall(r'<td class="num">([^<]+)</td>', row) == ["4", "6"]
    assert "Pricing readers vs. Everyone" in html.unescape(compared)
    # a viewer applies site-wide segments but does not see the form, and is refused when posting
    mine = viewer.get(f"/sites/{SITE}/segments").text
    assert "Pricing readers" in mine and 'id="segment-form"' not in mine
    assert viewer.post(f"/sites/{SITE}/segments", data={"csrf": csrf_of(mine), "name": "x",
                                                         "condition_kind": "visited_page",
                                                         "condition_value": "/"}).status_code == 403
    # a private segment is its author's alone
    private = analyst.post(f"/sites/{SITE}/segments", data={
        "csrf": csrf_of(page), "name": "Just mine", "visibility": "private",
        "condition_kind": ["visited_page"], "condition_value": ["/"]})
    assert private.status_code == 303
    private_id = re.search(r"segment=(\d+)", private.headers["location"]).group(1)
    assert "Just mine" not in viewer.get(f"/sites/{SITE}/segments").text
    unseen = viewer.get(f"/sites/{SITE}?segment={private_id}").text
    assert "Just mine" not in unseen and re.search(r'data-metric="visitors">6<', unseen)


def test_a_viewer_sees_no_forms_and_cannot_post(server, viewer):
    for path in ("goals", "funnels", "segments"):
        page = viewer.get(f"/sites/{SITE}/{path}")
        assert page.status_code == 200
        forms = re.findall(r'<form method="post" action="([^"]+)"', page.text)
        assert forms == ["/logout"], (path, forms)
        answer = viewer.post(f"/sites/{SITE}/{path}", data={"csrf": csrf_of(page.text), "name": "x"})
        assert answer.status_code == 403, path
    assert viewer.post("/sites", data={"csrf": csrf_of(page.text), "domain": "nope.test"}).status_code == 403
    assert viewer.post(f"/sites/{SITE}/delete", data={"csrf": csrf_of(page.text), "confirm": SITE}).status_code == 403
    settings = viewer.get(f"/sites/{SITE}/settings").text
    assert "Delete this site" not in settings


def test_posts_without_the_csrf_token_are_refused(server, admin, analyst):
    for client, path, data in (
        (analyst, f"/sites/{SITE}/goals", {"name": "x", "kind": "page", "value": "/x"}),
        (analyst, f"/sites/{SITE}/funnels", {"name": "x", "step_value": ["/", "/a"]}),
        (analyst, f"/sites/{SITE}/segments", {"name": "x", "condition_kind": "visited_page", "condition_value": "/"}),
        (admin, "/sites", {"domain": "csrf.test"}),
        (admin, f"/sites/{SITE}/delete", {"confirm": SITE}),
    ):
        assert client.post(path, data=data).status_code == 403, path
        assert client.post(path, data={**data, "csrf": "wrong"}).status_code == 403, path
    assert SITE in admin.get("/sites").text and "csrf.test" not in admin.get("/sites").text


def test_admins_add_and_delete_sites(server, admin):
    page = admin.get("/sites").text
    assert 'id="add-site"' in page and 'list="timezones"' in page
    domain = f"new-{uuid.uuid4().hex[:6]}.test"
    bad = admin.post("/sites", data={"csrf": csrf_of(page), "domain": "not a domain", "timezone": "UTC"})
    assert bad.status_code == 422 and "not a valid domain" in bad.text
    bad_zone = admin.post("/sites", data={"csrf": csrf_of(page), "domain": domain, "timezone": "Mars/Olympus"})
    assert bad_zone.status_code == 422 and "unknown time zone" in bad_zone.text
    added = admin.post("/sites", data={"csrf": csrf_of(page), "domain": domain, "timezone": "Europe/Berlin"})
    assert added.status_code == 303 and added.headers["location"] == f"/sites/{domain}/settings?created=1"
    settings = admin.get(added.headers["location"]).text
    assert f"Added {domain}" in settings and "Europe/Berlin" in settings and "Delete this site" in settings
    wrong = admin.post(f"/sites/{domain}/delete", data={"csrf": csrf_of(settings), "confirm": "something else"})
    assert wrong.status_code == 422 and f"Type {domain} to confirm" in wrong.text
    assert admin.get(f"/sites/{domain}").status_code == 200
    deleted = admin.post(f"/sites/{domain}/delete", data={"csrf": csrf_of(settings), "confirm": domain})
    assert deleted.status_code == 303 and deleted.headers["location"] == f"/sites?deleted={domain}"
    assert f"Deleted {domain}" in admin.get(deleted.headers["location"]).text
    assert admin.get(f"/sites/{domain}").status_code == 404


def test_the_shared_link_and_a_public_site_open_a_read_only_dashboard(server):
    with httpx.Client(base_url=server.url, headers=server.auth()) as api:
        token = api.post(f"/api/v1/sites/{SITE}/shared-link").json()["token"]
    with httpx.Client(base_url=server.url, headers={"user-agent": BROWSER_UA}) as anonymous:
        assert anonymous.get(f"/sites/{SITE}").status_code == 303  # not public: to the login page
        page = anonymous.get(f"/sites/{SITE}", params={"auth": token, "period": "7d"})
        assert page.status_code == 200
        text = page.text
        assert re.search(r'data-metric="visitors">6<', text)
        assert 'href="/admin/users"' not in text and "/settings" not in text and "Log out" not in text
        assert 'href="/login"' in text
        # every link of the page keeps the token, so the visitor can move around
        links = [html.unescape(href) for href in re.findall(r'(?:href|hx-get)="(/sites/[^"]+)"', text)]
        assert links and all(f"auth={token}" in link for link in links), [x for x in links if token not in x]
        for path in ("goals", "funnels", "segments"):
            read = anonymous.get(f"/sites/{SITE}/{path}", params={"auth": token})
            assert read.status_code == 200 and 'method="post"' not in read.text, path
        funnel = re.search(r'href="(/sites/shop\.test/funnels/\d+[^"]*)"', anonymous.get(
            f"/sites/{SITE}/funnels", params={"auth": token}).text).group(1)
        assert anonymous.get(html.unescape(funnel)).status_code == 200
        refused = anonymous.post(f"/sites/{SITE}/goals", params={"auth": token}, data={"name": "x"})
        assert refused.status_code == 403
        assert anonymous.get(f"/sites/{SITE}/settings", params={"auth": token}).status_code == 403
    with httpx.Client(base_url=server.url, headers=server.auth()) as api:
        assert api.patch(f"/api/v1/sites/{SITE}", json={"public": True}).status_code == 200
    try:
        with httpx.Client(base_url=server.url, headers={"user-agent": BROWSER_UA}) as anonymous:
            page = anonymous.get(f"/sites/{SITE}")
            assert page.status_code == 200 and "auth=" not in page.text
            assert re.search(r'data-metric="visitors">6<', page.text)
            assert 'href="/admin/users"' not in page.text and "Settings</a>" not in page.text
            assert anonymous.get(f"/sites/{SITE}/goals").status_code == 200
            assert anonymous.post(f"/sites/{SITE}/goals", data={"name": "x"}).status_code in (401, 303, 403)
    finally:
        with httpx.Client(base_url=server.url, headers=server.auth()) as api:
            api.patch(f"/api/v1/sites/{SITE}", json={"public": False})


def test_the_live_view_keeps_the_shared_link(server):
    with httpx.Client(base_url=server.url, headers=server.auth()) as api:
        token = api.post(f"/api/v1/sites/{SITE}/shared-link").json()["token"]
    with httpx.Client(base_url=server.url, headers={"user-agent": BROWSER_UA}) as anonymous:
        page = anonymous.get(f"/sites/{SITE}/live", params={"auth": token}).text
        assert f'sse-connect="/sites/{SITE}/live/stream?auth={token}"' in page
        assert f'href="/sites/{SITE}?auth={token}"' in page and "/settings" not in page
        with anonymous.stream("GET", f"/sites/{SITE}/live/stream", params={"auth": token}) as stream:
            assert stream.status_code == 200


def test_admins_make_and_disable_the_shared_link_on_the_settings_page(server, admin, viewer):
    page = admin.get(f"/sites/{SITE}/settings").text
    made = admin.post(f"/sites/{SITE}/shared-link", data={"csrf": csrf_of(page)})
    assert made.status_code == 200 and "shown only once" in made.text
    url = html.unescape(re.search(r'id="shared-url" class="shared-url" value="([^"]+)"', made.text).group(1))
    token = url.split("auth=")[1]
    assert url.startswith(server.url) and token.startswith("ffs_")
    assert token not in admin.get(f"/sites/{SITE}/settings").text  # shown once
    with httpx.Client(headers={"user-agent": BROWSER_UA}) as anonymous:
        assert anonymous.get(url).status_code == 200
        off = admin.post(f"/sites/{SITE}/shared-link/delete", data={"csrf": csrf_of(page)})
        assert off.status_code == 303
        assert anonymous.get(url).status_code == 303  # the link is dead: to the login page
    mine = viewer.get(f"/sites/{SITE}/settings").text
    assert "Create a shared link" not in mine
    assert viewer.post(f"/sites/{SITE}/shared-link", data={"csrf": csrf_of(mine)}).status_code == 403
