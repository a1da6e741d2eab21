"""Reads include every acknowledged event, over HTTP: clients post batches and count what was
acknowledged (200); other clients read the aggregate and the goal report and check each read
has at least what was acknowledged before it began. Aggregation is deferred (an hour), so the
reads themselves fold the pending events in, concurrently with each other.
"""

from __future__ import annotations

import threading
import time
import uuid

from tests.e2e.conftest import utc_days_since, utc_today
from tests.servers import start_server

WRITERS, READERS, ROUNDS, BATCH = 3, 3, 15, 150


def test_concurrent_http_reads_include_every_acknowledged_event(tmp_path):
    handle = start_server(tmp_path / "data", env={
        "FOOTFALL_INGEST_AGGREGATE_INTERVAL_MS": "3600000", "FOOTFALL_INGEST_AGGREGATE_MAX_EVENTS": "1000000",
    })
    try:
        domain = f"load-{uuid.uuid4().hex[:8]}.test"
        first_day = utc_today()  # before the first event: each read asks from it through its own today

        def params() -> dict[str, str]:
            return {"site": domain, **utc_days_since(first_day)}

        with handle.client(headers=handle.auth()) as api:
            assert api.post("/api/v1/sites", json={"domain": domain, "timezone": "UTC"}).status_code == 201
            answer = api.post("/api/v1/goals", params={"site": domain},
                              json={"name": "Signed up", "kind": "event", "event": "Signup"})
            assert answer.status_code == 201, answer.text
        lock = threading.Lock()
        acknowledged = {"pageviews": 0, "signups": 0}
        failures: list[str] = []
        done = threading.Event()

        def write(number: int) -> None:
            with handle.client() as client:
                for round_ in range(ROUNDS):
                    items = []
                    for i in range(BATCH):
                        user = f"w{number}-r{round_}-{i}"
                        items.append({"event_type": "page_view", "site": domain, "user_id": user,
                                      "metadata": {"page_url": f"https://{domain}/p{i % 5}"}})
                        if i % 5 == 0:
                            items.append({"event_type": "Signup", "site": domain, "user_id": user})
                    answer = client.post("/api/v1/events", json=items)
                    if answer.status_code != 200:
                        failures.append(f"writer {number}: {answer.status_code} {answer.text[:200]}")
                        return
                    with lock:
                        acknowledged["pageviews"] += BATCH
                        acknowledged["signups"] += len(items) - BATCH

        def read(number: int) -> None:
            with handle.client(headers=handle.auth()) as client:
                while not done.is_set() and len(failures) < 5:
                    with lock:
                        pageviews = acknowledged["pageviews"]
                    got = client.get("/api/v1/stats/aggregate", params=params()).json()["data"]["pageviews"]
                    if got < pageviews:
                        failures.append(f"reader {number}: {got} page views, {pageviews} acknowledged before")
                    with lock:
                        signups = acknowledged["signups"]
                    goals = client.get("/api/v1/reports/conversions", params=params()).json()["data"]["goals"]
                    (row,) = [row for row in goals if row.get("name") == "Signed up"]
                    if row["conversions"] < signups:
                        failures.append(f"reader {number}: goal {row['conversions']}, {signups} acknowledged before")

        readers = [threading.Thread(target=read, args=(n,)) for n in range(READERS)]
        writers = [threading.Thread(target=write, args=(n,)) for n in range(WRITERS)]
        started = time.monotonic()
        for thread in readers + writers:
            thread.start()
        for thread in writers:
            thread.join(180)
        done.set()
        for thread in readers:
            thread.join(60)
        assert not failures, failures[:5]
        assert time.monotonic() - started < 180
        with handle.client(headers=handle.auth()) as api:
            final = api.get("/api/v1/stats/aggregate", params=params()).json()["data"]
        assert final["pageviews"] == acknowledged["pageviews"] == WRITERS * ROUNDS * BATCH
    finally:
        handle.stop()
