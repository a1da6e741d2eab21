"""Error answers by caller: a browser navigating gets a styled page with the status, a short
message and a link home; the API, htmx and scripts keep the JSON body. A bug (an unexpected
exception) is a 500 page that shows nothing of the server's internals."""

from __future__ import annotations

import pytest
from litestar import Litestar, get
from litestar.exceptions import PermissionDeniedException
from litestar.plugins.jinja import JinjaTemplateEngine
from litestar.template.config import TemplateConfig
from litestar.testing import TestClient

from web.app import TEMPLATES
from web.errors import EXCEPTION_HANDLERS

BROWSER = {"accept": "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"}


@get("/boom", sync_to_thread=False)
def boom() -> None:
    raise RuntimeError("secret internals: /var/lib/footfall")


@get("/api/v1/boom", sync_to_thread=False)
def api_boom() -> None:
    raise RuntimeError("secret internals")


@get("/private", sync_to_thread=False)
def private() -> None:
    raise PermissionDeniedException("no access to this site")


@pytest.fixture(scope="module")
def client():
    app = Litestar(route_handlers=[boom, api_boom, private], exception_handlers=EXCEPTION_HANDLERS,
                   template_config=TemplateConfig(directory=TEMPLATES, engine=JinjaTemplateEngine), debug=False)
    with TestClient(app, raise_server_exceptions=False) as test_client:
        yield test_client


def test_a_bug_is_a_500_page_for_a_browser_without_its_internals(client):
    page = client.get("/boom", headers=BROWSER)
    assert page.status_code == 500 and page.headers["content-type"].startswith("text/html")
    assert "Something went wrong" in page.text and 'href="/"' in page.text
    assert "secret internals" not in page.text and "RuntimeError" not in page.text
    assert "script-src 'self'" in page.headers["content-security-policy"]


@pytest.mark.parametrize("path, headers", [("/boom", {}), ("/boom", {"accept": "application/json"}),
                                           ("/api/v1/boom", BROWSER), ("/boom", {**BROWSER, "hx-request": "true"})])
def test_a_bug_stays_json_for_everyone_else(client, path, headers):
    answer = client.get(path, headers=headers)
    assert answer.status_code == 500 and answer.headers["content-type"] == "application/json"
    # our error shape; the request id (null here: no request middleware in this bare app)
    assert answer.json() == {"status": "error", "error": {"field": None, "message": "Internal Server Error",
                                                          "request_id": None}}


def test_a_refusal_is_a_403_page_with_its_reason(client):
    page = client.get("/private", headers=BROWSER)
    assert page.status_code == 403 and "No access" in page.text and "no access to this site" in page.text
    as_json = client.get("/private")
    assert as_json.json() == {"status": "error", "error": {"field": None, "message": "no access to this site"}}
