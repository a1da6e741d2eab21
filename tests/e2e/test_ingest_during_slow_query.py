"""The tracker's ingest keeps answering while a slow report runs.

Reports run in Litestar's worker threads, never on the event loop that answers ingest
(``tests/web/test_route_guards.py`` checks every handler statically). Here the real server
proves it: a deliberately slow stats query — 8 ``matches`` filters of 16 wildcard patterns
each, tested against 20,000 distinct long paths (millions of matches, linear each but
many) — runs in one thread while single events are posted to ``/api/v1/events``; each must be
answered well within a bound far below the query's duration. The query runs until its time
budget stops it (503 naming ``query``). With the query on the event loop the first ingest
waited for the whole query.

The 20,000 events are loaded into today or into yesterday (noon UTC, a closed day: the query
reads it from the log and asks for its compaction, which the job runner does while the query
runs; the first batch is late for its visitors, so the day is marked and re-derived). Once, in
the first hour of a UTC day with the events an hour old (yesterday's), an ingest was seen
waiting 1.5-2.3 s; that size did not recur in either variant, with the clock shifted to the
first hour either. What did hold the writer as the query started is its settled read folding
the load's backlog slice by slice: the mutex, taken straight back by the releasing thread,
kept the writer out for 2-4 slices (0.3-0.6 s). Between two slices the read now lets a
waiting commit in first (:meth:`appliance.events.coordinator.WriteMutex.let_waiters_in`).

The yesterday variant's slowest ingest was still 0.5-1.5 s (a failure about one full run in
four): the day's compaction held LMDB's write lock while it deleted the 20,000 log rows, one
LMDB call each, and each call let go of the interpreter lock and waited up to the switch
interval to get it back from the query's thread. Bulk writes now take it back quickly
(:mod:`storage.handover`): the slowest ingest 25-37 ms in four runs.
"""

from __future__ import annotations

import json
import threading
import time
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from tests.servers import BROWSER_UA

SITE = "slow-query.test"
EVENTS = 20_000
PATH_LENGTH = 400
INGEST_BOUND = 1.0  # seconds, for each single event during the query
MIN_QUERY_SECONDS = 1.5  # the scenario must really be slow, or it proves nothing
# the server's query time budget: the query ends there. The whole query takes ~3.7-4 s on a
# quiet 2-core machine (a budget of 4 s let it answer 200 there), longer under load.
BUDGET_SECONDS = 2


def _events(stamp: str):
    letters = "abcdefghijklmnopqrstuvwxy" * (PATH_LENGTH // 25 + 1)
    for index in range(EVENTS):
        yield {
            "event_type": "page_view", "user_id": f"u{index % 50}", "timestamp": stamp, "site": SITE,
            "metadata": {"page_url": f"https://{SITE}/{letters[:PATH_LENGTH]}/{index}"},
        }


def _stamp(day: str) -> str:
    """An hour ago but today (in the first hour of a UTC day, halfway since midnight), or
    yesterday at noon UTC: a closed day."""
    now = datetime.now(UTC)
    midnight = now.replace(hour=0, minute=0, second=0, microsecond=0)
    moment = now - min(timedelta(hours=1), (now - midnight) / 2) if day == "today" else midnight - timedelta(hours=12)
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


@pytest.mark.parametrize("day", ["today", "yesterday"])
def test_ingest_answers_while_a_slow_query_runs(own_server, day):
    server = own_server(env={"FOOTFALL_QUERY_TIME_BUDGET_SECONDS": str(BUDGET_SECONDS)})
    stamp = _stamp(day)
    with server.client() as client:
        assert client.post("/api/v1/sites", json={"domain": SITE}, headers=server.auth()).status_code == 201
        for goal in ({"name": "Signup", "kind": "event", "event": "signup"}, {"name": "Home", "kind": "page", "page": "/"}):
            response = client.post("/api/v1/goals", params={"site": SITE}, json=goal, headers=server.auth())
            assert response.status_code == 201, response.text
        events = list(_events(stamp))
        for start in range(0, len(events), 500):
            response = client.post("/api/v1/events", json=events[start : start + 500])
            assert response.status_code == 200 and response.json()["accepted"] == 500, response.text[:300]

    # never match (no z in any path), so every pattern scans every path to its end
    patterns = [f"*a*b*c*d*e*f*g*h*{'abcdefgh'[index % 8]}*z*" for index in range(16)]
    filters = [["matches", "page", patterns] for _ in range(8)]
    params = {"site": SITE, "filters": json.dumps(filters)}
    finished = threading.Event()
    outcome: dict = {}

    def slow_query() -> None:
        try:
            started = time.monotonic()
            with httpx.Client(base_url=server.url, timeout=300) as query_client:
                response = query_client.get("/api/v1/stats/aggregate", params=params, headers=server.auth())
            outcome["seconds"] = time.monotonic() - started
            outcome["status"] = response.status_code
            outcome["body"] = response.text[:300]
        finally:
            finished.set()

    thread = threading.Thread(target=slow_query, daemon=True)
    latencies: list[float] = []
    headers = {"user-agent": BROWSER_UA}
    with httpx.Client(base_url=server.url, headers=headers, timeout=INGEST_BOUND * 10) as ingest:
        ingest.post("/api/v1/events", json={"event_type": "page_view", "site": SITE, "user_id": "warm",
                                            "metadata": {"page_url": f"https://{SITE}/warm"}})
        thread.start()
        while not finished.is_set():
            started = time.monotonic()
            response = ingest.post("/api/v1/events", json={
                "event_type": "page_view", "site": SITE, "user_id": f"live{len(latencies)}",
                "metadata": {"page_url": f"https://{SITE}/live"},
            })
            latencies.append(time.monotonic() - started)
            assert response.status_code == 200, response.text
    thread.join(timeout=300)

    assert outcome.get("status") == 503, outcome
    assert json.loads(outcome["body"])["error"]["field"] == "query"
    assert outcome["seconds"] >= MIN_QUERY_SECONDS, f"the query took only {outcome['seconds']:.2f} s"
    assert len(latencies) >= 3, f"only {len(latencies)} ingests during a {outcome['seconds']:.2f} s query"
    ordered = sorted(latencies)
    slowest = ordered[-1]
    print(f"{day}: query {outcome['seconds']:.2f} s; {len(latencies)} ingests, slowest {slowest * 1000:.0f} ms, "
          f"p99 {ordered[len(ordered) * 99 // 100] * 1000:.0f} ms, median {ordered[len(ordered) // 2] * 1000:.0f} ms")
    assert slowest < INGEST_BOUND, (
        f"an ingest took {slowest:.2f} s while a {outcome['seconds']:.2f} s query ran "
        f"({day}'s events; {len(latencies)} ingests, median {ordered[len(ordered) // 2] * 1000:.0f} ms)"
    )
