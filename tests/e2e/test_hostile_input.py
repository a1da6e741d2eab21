"""Hostile input over HTTP (security review, issue 11): deeply nested JSON, dates outside
what the calendar arithmetic can take, look-alike identifiers, null bytes in static paths,
and the custom-events details page. Every refusal is a 4xx in the one JSON error shape
(or a plain 404 for static files), and the server logs no traceback for any of it.
"""

from __future__ import annotations

import uuid

import httpx
import pytest

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
