"""The OpenAPI document tells the truth: schemathesis calls every documented operation of
the real server with generated requests and checks each answer against the document.

A server with an admin (whose bearer token every request carries, so guarded routes are
exercised past their guard) and two sites; a few deterministic examples per operation. The
checks: no 5xx, every status code documented, the documented content type, and a body that
matches the documented schema (the one error shape, ``{"status": "error", "error": ...}``,
included). A second test pins what the document says about security, errors and the ingest
bodies.
"""

from __future__ import annotations

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)

from tests.servers import start_server

SITES = ("conformance.test", "second.conformance.test")
EXAMPLES = 10
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]


@pytest.fixture(scope="module")
def api(tmp_path_factory):
    handle = start_server(tmp_path_factory.mktemp("openapi") / "data")
    with handle.client() as client:
        for domain in SITES:
            response = client.post("/api/v1/sites", json={"domain": domain}, headers=handle.auth())
            assert response.status_code == 201, response.text
    yield handle
    handle.stop()


def _operations(api):
    loaded = schemathesis.openapi.from_url(f"{api.url}/schema/openapi.json").exclude(path_regex=r"^/schema")
    return [result.ok() for result in loaded.get_all_operations()]


def _reproduce(error: Exception) -> str:
    text = str(error)
    return "\n" + text[text.index("Reproduce with:"):][:600] if "Reproduce with:" in text else ""


def test_every_answer_is_documented(api):
    """A few generated requests per operation (schemathesis' pytest plugin does not run under
    pytest 9 yet, so each operation gets its own Hypothesis test here)."""
    operations = _operations(api)
    assert len(operations) > 40
    failures = {}
    for operation in operations:

        @given(case=operation.as_strategy())
        @settings(max_examples=EXAMPLES, derandomize=True, deadline=None, database=None,
                  suppress_health_check=list(HealthCheck), phases=[Phase.explicit, Phase.generate])
        def check(case):
            case.call_and_validate(base_url=api.url, headers=api.auth(), checks=CHECKS)

        try:
            check()
        except (Exception, BaseExceptionGroup) as error:  # every operation is tried; all failures reported together
            failures[operation.label] = str(error).split("Reproduce with:")[0][:1500] + _reproduce(error)
    assert not failures, "\n\n".join(f"{label}:\n{text}" for label, text in failures.items())


def test_the_document_names_each_routes_security_and_errors(api):
    document = httpx.get(f"{api.url}/schema/openapi.json").json()
    assert "security" not in document  # per operation, not a global requirement
    paths = document["paths"]
    for public in (("post", "/api/v1/authenticate"), ("get", "/api/v1/health")):
        assert paths[public[1]][public[0]]["security"] == [], public
    # ingest: anonymous, or a trusted server with an API key (server-side events)
    for path in ("/api/v1/events", "/api/v1/conversions", "/api/v1/collect"):
        assert paths[path]["post"]["security"] == [{}, {"bearer": []}], path
    assert paths["/api/v1/users"]["get"]["security"] == [{"bearer": []}]
    # a site's stats: a bearer token, a shared link's ?auth=, or nothing on a public site
    assert paths["/api/v1/stats/aggregate"]["get"]["security"] == [{"bearer": []}, {"shared_link": []}, {}]
    error = {"$ref": "#/components/schemas/ErrorBody"}
    for path, item in paths.items():
        for method, operation in item.items():
            for code, answer in operation["responses"].items():
                if code.startswith(("4", "5")) and not (path.startswith("/api/v1/") and code in ("422", "429")
                                                        and path.rsplit("/", 1)[1] in ("events", "conversions", "collect")):
                    assert answer["content"]["application/json"]["schema"] == error, (method, path, code)
            if operation.get("security"):
                assert {"401", "403"} <= set(operation["responses"]), (method, path)
    assert document["components"]["schemas"]["ErrorBody"]["required"] == ["status", "error"]
    events = paths["/api/v1/events"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    assert events["oneOf"][0] == {"$ref": "#/components/schemas/EventBody"}
    assert events["oneOf"][1]["items"] == {"$ref": "#/components/schemas/EventBody"}
    assert "event_type" in document["components"]["schemas"]["EventBody"]["required"]
    assert "u" in document["components"]["schemas"]["CollectBody"]["required"]
