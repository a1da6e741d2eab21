"""A filtered report refused at its time budget finishes in the background; the retry gets it.

The real server, with a time budget (1 µs) no scan can meet: the first ask of a filtered
report answers 503 naming ``query``, says the report is still being computed and sends
``Retry-After``; the report goes on in the background into the kept answers
(appliance/query/flights.py), which ``/metrics`` shows, and asking again answers 200 with
the exact figure, from one computation.
"""

from __future__ import annotations

import re
import time
import uuid

from tests.e2e.conftest import utc_today
from tests.servers import BROWSER_UA

WAIT = 30.0


def _flights(server, client) -> dict[str, float]:
    text = client.get("/metrics", headers=server.auth()).text
    return {result: float(value) for result, value in re.findall(r'footfall_report_flights_total\{result="(\w+)"\} (\S+)', text)}


def test_a_refused_filtered_report_is_finished_and_answered_on_retry(own_server) -> None:
    server = own_server(env={"FOOTFALL_QUERY_TIME_BUDGET_SECONDS": "0.000001"})
    domain = f"refused-{uuid.uuid4().hex[:8]}.test"
    with server.client(timeout=WAIT) as client:
        assert client.post("/api/v1/sites", json={"domain": domain}, headers=server.auth()).status_code == 201
        for index in range(12):
            path = "/a" if index % 3 else "/b"  # 8 views of /a
            body = {"event_type": "page_view", "site": domain, "metadata": {"page_url": f"https://{domain}{path}"}}
            assert client.post("/api/v1/events", json=body, headers={"user-agent": BROWSER_UA}).status_code in (200, 202)
        # the retry is the same report only if it asks the same days: the period's last day is
        # named (taken after the events were sent, so it holds them), should midnight (UTC) pass
        # while the first ask finishes in the background
        ask = {"site": domain, "period": "7d", "date": utc_today().isoformat(), "filters": "page==/a"}

        refused = client.get("/api/v1/stats/aggregate", params=ask, headers=server.auth())
        assert refused.status_code == 503, refused.text
        assert refused.headers["retry-after"] == "1"
        error = refused.json()["error"]
        assert error["field"] == "query" and "still being computed" in error["message"]

        deadline = time.monotonic() + WAIT
        while _flights(server, client).get("finished_in_background", 0) < 1:  # the background finisher ends
            assert time.monotonic() < deadline, server.log()[-2000:]
            time.sleep(0.02)
        retried = client.get("/api/v1/stats/aggregate", params=ask, headers=server.auth())
        assert retried.status_code == 200, retried.text
        assert retried.json()["data"]["pageviews"] == 8
        flights = _flights(server, client)
        assert flights["started"] == 1 and flights["dropped"] == 0  # computed once, kept for the retry
