"""One request must never freeze the server: wildcard patterns and query time budgets.

Reproductions of the red-team findings: ``page==*******zz`` on the stats API and a page goal
``/*******z`` on the ingest path each held the only worker for seconds to minutes (the
wildcard matcher backtracked exponentially). Both now answer at once; and a query that does
run past ``[query] time_budget_seconds`` answers 503 naming ``query`` instead of holding on.
"""

from __future__ import annotations

import uuid

from tests.servers import BROWSER_UA

LONG_PATH = "/" + "ab/" * 23 + "x"  # 71 characters, no 'z'


def _site(server, client) -> str:
    domain = f"redos-{uuid.uuid4().hex[:8]}.test"
    assert client.post("/api/v1/sites", json={"domain": domain}, headers=server.auth()).status_code == 201
    return domain


def _view(client, domain: str, path: str):
    body = {"event_type": "page_view", "site": domain, "metadata": {"page_url": f"https://{domain}{path}"}}
    return client.post("/api/v1/events", json=body, headers={"user-agent": BROWSER_UA})


def test_a_many_star_filter_answers_at_once(server) -> None:
    with server.client(timeout=10) as client:
        domain = _site(server, client)
        for index in range(20):
            assert _view(client, domain, f"/{'a' * 40}{index}").status_code in (200, 202)
        for stars in (8, 10, 16):
            response = client.get(
                "/api/v1/stats/aggregate",
                params={"site": domain, "filters": "page==" + "*" * stars + "zz"},
                headers=server.auth(),
            )
            assert response.status_code == 200, response.text
            assert response.json()["data"]["pageviews"] == 0
        too_many = client.get(
            "/api/v1/stats/aggregate",
            params={"site": domain, "filters": "page==" + "*" * 40 + "zz"},
            headers=server.auth(),
        )
        assert too_many.status_code == 422
        assert too_many.json()["error"]["field"] == "filters"


def test_a_many_star_goal_does_not_slow_ingest(server) -> None:
    with server.client(timeout=10) as client:
        domain = _site(server, client)
        goal = client.post(
            "/api/v1/goals", params={"site": domain}, json={"name": "stars", "kind": "page", "page": "/*******z"},
            headers=server.auth(),
        )
        assert goal.status_code == 201, goal.text
        for _ in range(5):
            assert _view(client, domain, LONG_PATH).status_code in (200, 202)
        refused = client.post(
            "/api/v1/goals", params={"site": domain}, json={"name": "more", "kind": "page", "page": "/" + "*z" * 40},
            headers=server.auth(),
        )
        assert refused.status_code == 422
        assert refused.json()["error"]["field"] == "page"


def test_a_query_past_its_time_budget_answers_503(own_server) -> None:
    server = own_server(env={"FOOTFALL_QUERY_TIME_BUDGET_SECONDS": "0.000001"})
    with server.client(timeout=10) as client:
        domain = _site(server, client)
        assert _view(client, domain, "/a").status_code in (200, 202)
        response = client.get(
            "/api/v1/stats/aggregate", params={"site": domain, "filters": "page==/*"}, headers=server.auth()
        )
        assert response.status_code == 503, response.text
        error = response.json()["error"]
        assert error["field"] == "query"
        assert "time budget" in error["message"]
        # the server goes on answering: ingest and the health check
        assert _view(client, domain, "/b").status_code in (200, 202)
        assert client.get("/api/v1/health").status_code == 200
