"""Hostile input over HTTP (security review, issue 11): deeply nested JSON, dates outside
what the calendar arithmetic can take, look-alike identifiers, null bytes in static paths,
and the custom-events details page. Every refusal is a 4xx in the one JSON error shape
(or a plain 404 for static files), and the server logs no traceback for any of it.
"""

from __future__ import annotations

import contextlib
import re
import uuid
from collections.abc import Iterator

import httpx
import pytest

from tests.servers import BROWSER_UA

DEEP_ARRAY = b"[" * 100_000 + b"]" * 100_000
DEEP_OBJECT = b'{"a":' * 5_000 + b"1" + b"}" * 5_000
PASSWORD = "a long enough password"


def _new_site(server, prefix: str) -> str:
    domain = f"{prefix}-{uuid.uuid4().hex[:10]}.test"
    with server.client() as client:
        response = client.post("/api/v1/sites", json={"domain": domain}, headers=server.auth())
    assert response.status_code == 201, response.text
    return domain


def assert_error(response: httpx.Response, status: int, field: str | None) -> dict:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    answer = response.json()
    assert answer["status"] == "error"
    assert answer["error"]["message"]
    if field is not None:
        assert answer["error"]["field"] == field, answer
    return answer


class QuietLog:
    """Checks that nothing was logged as an unhandled error while the block ran."""

    def __init__(self, server) -> None:
        self.server = server

    def __enter__(self):
        self.start = len(self.server.log())
        return self

    def __exit__(self, *exc) -> None:
        written = self.server.log()[self.start:]
        assert "Traceback" not in written and "unhandled error" not in written, written[-3000:]


@pytest.fixture(scope="module")
def site(server) -> str:
    return _new_site(server, "hostile")


@pytest.fixture(scope="module")
def client(server):
    with server.client() as http:
        yield http


# -- 3: deeply nested JSON ---------------------------------------------------------------------
@pytest.mark.parametrize("body", [DEEP_ARRAY, DEEP_OBJECT], ids=["array", "object"])
@pytest.mark.parametrize("path", ["/api/v1/events", "/api/v1/conversions", "/api/v1/collect"])
def test_deeply_nested_ingest_body_is_400(server, client, path, body):
    with QuietLog(server):
        response = client.post(path, content=body, headers={"content-type": "application/json"})
        answer = assert_error(response, 400, "$")
    assert "nest" in answer["error"]["message"]


def test_deep_nesting_inside_an_event_and_a_batch_is_400(server, client, site):
    deep = b"[" * 2_000 + b"]" * 2_000
    single = b'{"event_type": "page_view", "site": "' + site.encode() + b'", "metadata": {"x": ' + deep + b"}}"
    with QuietLog(server):
        assert_error(client.post("/api/v1/events", content=single), 400, "$")
        assert_error(client.post("/api/v1/events", content=b"[" + single + b"]"), 400, "$")


def test_brackets_inside_strings_are_not_nesting(client, site):
    body = {"event_type": "page_view", "site": site,
            "metadata": {"page_url": f"https://{site}/", "note": "[{" * 500 + '\\"]'}}
    response = client.post("/api/v1/events", json=body)
    assert response.status_code == 200, response.text


@pytest.mark.parametrize("body", [DEEP_ARRAY, DEEP_OBJECT], ids=["array", "object"])
def test_deeply_nested_authenticate_body_is_400(server, client, body):
    with QuietLog(server):
        response = client.post("/api/v1/authenticate", content=body, headers={"content-type": "application/json"})
        assert_error(response, 400, "$")


def test_deeply_nested_body_of_an_authenticated_route_is_400(server, client):
    with QuietLog(server):
        response = client.post("/api/v1/sites", content=DEEP_ARRAY,
                               headers={**server.auth(), "content-type": "application/json"})
        assert_error(response, 400, "$")


def test_deeply_nested_filters_parameter_is_400(server, client, site):
    with QuietLog(server):
        response = client.get("/api/v1/stats/aggregate", headers=server.auth(),
                              params={"site": site, "filters": "[" * 5_000 + "]" * 5_000})
        assert_error(response, 400, "filters")


# -- 5: dates the calendar arithmetic cannot take ----------------------------------------------
DATE_CASES = {
    "start before 1970": ("/api/v1/stats/aggregate", {"start_date": "1900-01-01", "end_date": "1970-02-01"}, "start_date"),
    "start on 1 January 1970": ("/api/v1/stats/aggregate", {"start_date": "1970-01-01"}, "start_date"),
    "end in year 1": ("/api/v1/stats/aggregate", {"end_date": "0001-01-05"}, "end_date"),
    "end before 1970 alone": ("/api/v1/reports/traffic", {"end_date": "1969-12-31"}, "end_date"),
    "end in 9999": ("/api/v1/stats/timeseries", {"start_date": "9999-12-01", "end_date": "9999-12-31"}, "end_date"),
    "end in 9999, by hour": (
        "/api/v1/stats/timeseries", {"start_date": "9999-12-30", "end_date": "9999-12-31", "interval": "hour"}, "end_date",
    ),
    "start in 9999": ("/api/v1/reports/conversions", {"start_date": "9999-12-31"}, "start_date"),
    "previous period before 1970": (
        "/api/v1/stats/aggregate",
        {"start_date": "1970-01-05", "end_date": "1970-01-20", "compare": "previous_period"}, "compare",
    ),
    "last year before 1970": (
        "/api/v1/stats/aggregate",
        {"start_date": "1970-06-01", "end_date": "1970-06-30", "compare": "year_over_year"}, "compare",
    ),
    "unknown comparison": ("/api/v1/stats/aggregate", {"compare": "tomorrow"}, "compare"),
}


@pytest.mark.parametrize("name", list(DATE_CASES))
def test_out_of_range_dates_are_422(server, client, site, name):
    path, params, field = DATE_CASES[name]
    with QuietLog(server):
        response = client.get(path, params={"site": site, **params}, headers=server.auth())
        answer = assert_error(response, 422, field)
    assert "1970" in answer["error"]["message"] or field == "compare"


def test_first_and_last_allowed_days_answer(client, server, site):
    for params in ({"start_date": "1970-01-02", "end_date": "1970-01-31"},
                   {"start_date": "9998-12-01", "end_date": "9998-12-31"},
                   {"start_date": "1971-01-02", "end_date": "1971-01-31", "compare": "year_over_year"}):
        response = client.get("/api/v1/stats/aggregate", params={"site": site, **params}, headers=server.auth())
        assert response.status_code == 200, (params, response.text)


@contextlib.contextmanager
def _dashboard_login(server) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url, headers={"user-agent": BROWSER_UA}, timeout=30) as browser:
        form = browser.get("/login")
        token = re.search(r'name="csrf" value="([^"]+)"', form.text).group(1)
        answer = browser.post("/login", data={"username": "admin", "password": server.password, "csrf": token})
        assert answer.status_code == 303, answer.text
        yield browser


@pytest.mark.parametrize("params", [
    {"period": "custom", "from": "1970-01-02", "to": "1970-01-10"},
    {"period": "custom", "from": "1970-03-01", "to": "1970-03-10", "compare": "year_over_year"},
    {"period": "custom", "from": "1960-01-01", "to": "1960-01-10", "compare": "off"},
    {"period": "custom", "from": "9999-12-01", "to": "9999-12-31", "compare": "off"},
], ids=["previous period", "year over year", "before 1970", "year 9999"])
def test_dashboard_refuses_dates_it_cannot_show(server, site, params):
    with _dashboard_login(server) as browser, QuietLog(server):
        for path in ("", "/widgets/top", "/widgets/chart", "/details/page"):
            response = browser.get(f"/sites/{site}{path}", params=params)
            assert response.status_code == 422, (path, response.status_code, response.text[:500])
            assert re.search(r"start_date|end_date|compare", response.text), response.text[:500]


# -- 6: look-alike identifiers ------------------------------------------------------------------
def test_trailing_newline_makes_no_look_alike_site_or_user(server, client):
    domain = _new_site(server, "lookalike")
    with QuietLog(server):
        twin = client.post("/api/v1/sites", json={"domain": f"{domain}\n/"}, headers=server.auth())
        assert twin.status_code in (409, 422), twin.text
        assert twin.json()["error"]["field"] == "domain"
        odd = client.post("/api/v1/sites", json={"domain": "other\n.test"}, headers=server.auth())
        assert_error(odd, 422, "domain")
        named = client.post("/api/v1/sites", json={"domain": f"n{domain}", "name": "Shop\x00"}, headers=server.auth())
        assert_error(named, 422, "name")
        hosts = client.post("/api/v1/sites", json={"domain": f"h{domain}", "allowed_hostnames": ["a.test\n"]},
                            headers=server.auth())
        assert hosts.status_code == 201, hosts.text
        assert hosts.json()["data"]["allowed_hostnames"] == ["a.test"]
        listed = [site["domain"] for site in client.get("/api/v1/sites", headers=server.auth()).json()["data"]]
        assert all("\n" not in name for name in listed)

        username = f"viewer{uuid.uuid4().hex[:6]}"
        user = {"password": PASSWORD, "role": "viewer"}
        assert client.post("/api/v1/users", json={**user, "username": username}, headers=server.auth()).status_code == 201
        twin_user = client.post("/api/v1/users", json={**user, "username": f"{username}\n", "role": "admin"},
                                headers=server.auth())
        assert_error(twin_user, 422, "username")
        inner = client.post("/api/v1/users", json={**user, "username": f"ad\nmin{username}"}, headers=server.auth())
        assert_error(inner, 422, "username")
        email = client.post("/api/v1/users", json={**user, "username": f"e{username}", "email": "a@b.test\n\x00x"},
                            headers=server.auth())
        assert_error(email, 422, "email")
        key = client.post("/api/v1/apikeys", json={"name": "ci\x1b[2Jkey"}, headers=server.auth())
        assert_error(key, 422, "name")
        usernames = [u["username"] for u in client.get("/api/v1/users", headers=server.auth()).json()["data"]]
        assert all("\n" not in name for name in usernames)


# -- 7: null bytes in static paths -------------------------------------------------------------
@pytest.mark.parametrize("path", [
    "/static/footfall.css%00", "/static/%00", "/static/footfall.css%00.js", "/static/vendor/%00x",
    "/js/footfall.js%00", "/js/%00",
])
def test_null_byte_in_a_static_path_is_404(server, client, path):
    with QuietLog(server):
        response = client.get(path)
        assert response.status_code == 404, (path, response.status_code, response.text[:300])


def test_static_files_still_served(client):
    assert client.get("/static/footfall.css").status_code == 200
    assert client.get("/js/footfall.js").status_code == 200


# -- 9: the details page of custom events ------------------------------------------------------
def test_details_of_custom_events(server, site):
    with server.client() as client:
        for name in ("signup", "signup", "download"):
            body = {"k": "event", "s": site, "u": f"https://{site}/", "n": name}
            assert client.post("/api/v1/collect", json=body).status_code == 202
    with _dashboard_login(server) as browser, QuietLog(server):
        page = browser.get(f"/sites/{site}/details/event")
        assert page.status_code == 200, page.text[:500]
        assert "signup" in page.text and "download" in page.text
        ordered = browser.get(f"/sites/{site}/details/event", params={"sort": "label", "order": "asc"})
        assert ordered.status_code == 200
        assert ordered.text.index("download") < ordered.text.index("signup")
