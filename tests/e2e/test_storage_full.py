"""A full disk answers 503 with Retry-After, loses nothing committed, and never answers 500.

The server starts with a 1 MiB LMDB map and a ``min_free_disk_mb`` larger than the free space
of the filesystem, so the map is never allowed to grow: once it is three quarters full every
write transaction fails with ``StorageFullError``, exactly as on a full disk.
"""

from __future__ import annotations

import collections
import shutil
import threading
import time
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from tests.conftest import BROWSER_UA
from tests.servers import footfall_cli

SENDERS = 8
MAX_ATTEMPTS = 4000  # a 1 MiB map is full long before this
FILL_WITHIN = 30.0  # seconds
PADDING = "p" * 280  # long, unique strings fill the map quickly


def date_params() -> dict[str, str]:
    today = datetime.now(UTC).date()
    return {
        "site": "localhost",
        "start_date": (today - timedelta(days=1)).isoformat(),
        "end_date": today.isoformat(),
    }


def event_body(number: int) -> dict:
    return {
        "event_type": "page_view",
        "site": "localhost",
        "metadata": {
            "page_url": f"http://localhost/full/{number}/{PADDING}",
            "note": f"{number}-{PADDING}",
        },
    }


def assert_storage_error(response: httpx.Response) -> None:
    assert response.status_code == 503, response.text
    assert response.headers["content-type"].startswith("application/json")
    assert int(response.headers["retry-after"]) > 0
    body = response.json()
    assert body["status"] == "error", body
    message = body["error"]["message"]
    assert "storage unavailable" in message and "full" in message, message


@pytest.mark.timeout(120)  # every wait inside is bounded; this is the backstop
def test_full_disk_answers_503_and_keeps_committed_events(own_server, tmp_path):
    began = time.monotonic()
    free_mb = shutil.disk_usage(tmp_path).free >> 20
    server = own_server(
        env={
            "FOOTFALL_STORAGE_INITIAL_MAP_MB": "1",
            "FOOTFALL_STORAGE_MIN_FREE_DISK_MB": str(free_mb + 1024),
        }
    )
    lock = threading.Lock()
    numbers = iter(range(MAX_ATTEMPTS))
    acknowledged: dict[int, str] = {}
    statuses: collections.Counter[int] = collections.Counter()
    refusals: list[httpx.Response] = []
    full = threading.Event()
    deadline = time.monotonic() + FILL_WITHIN

    def send() -> None:
        with httpx.Client(base_url=server.url, headers={"user-agent": BROWSER_UA}, timeout=10) as client:
            while not full.is_set() and time.monotonic() < deadline:
                with lock:
                    number = next(numbers, None)
                if number is None:
                    return
                response = client.post("/api/v1/events", json=event_body(number))
                with lock:
                    statuses[response.status_code] += 1
                    if response.status_code == 200:
                        assert response.json()["status"] == "success"
                        acknowledged[number] = response.json()["event_id"]
                    elif response.status_code == 503:
                        refusals.append(response)
                        full.set()

    threads = [threading.Thread(target=send, daemon=True) for _ in range(SENDERS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=FILL_WITHIN + 15)
    assert not any(thread.is_alive() for thread in threads)

    assert full.is_set(), f"no 503 after {sum(statuses.values())} events: {dict(statuses)}"
    assert set(statuses) <= {200, 503}, dict(statuses)
    assert acknowledged, "the store was full before the first event"
    for response in refusals:
        assert_storage_error(response)

    with server.client() as client:
        # Small commits may still fit the last free pages for a while; keep sending until the
        # store refuses several in a row. Whatever is acknowledged meanwhile must be counted.
        refused_in_a_row, number = 0, MAX_ATTEMPTS
        while refused_in_a_row < 5 and number < MAX_ATTEMPTS + 300:
            response = client.post("/api/v1/events", json=event_body(number))
            if response.status_code == 200:
                acknowledged[number] = response.json()["event_id"]
                refused_in_a_row = 0
            else:
                assert_storage_error(response)
                refused_in_a_row += 1
            number += 1
        assert refused_in_a_row == 5, "the store never stayed full"
        # then the map stays full: batches are refused the same way
        assert_storage_error(
            client.post("/api/v1/events", json=[event_body(number), event_body(number + 1)])
        )
        # the JSON API's own writes (issuing a token) are refused with 503 too, not 500
        login = client.post(
            "/api/v1/authenticate", json={"username": "admin", "password": server.password}
        )
        assert login.status_code in (200, 503), login.text
        if login.status_code == 503:
            assert_storage_error(login)

        health = client.get("/api/v1/health")
        assert health.status_code == 503, health.text  # health checks see it, the report says why
        report = health.json()
        assert report["status"] == "degraded", report
        assert "StorageFullError" in report["last_error"], report
        assert report["events_accepted"] == len(acknowledged)
        probe = footfall_cli("health", "--port", str(server.port), data_dir=server.data_dir)
        assert probe.returncode == 1, probe.stdout + probe.stderr  # the container turns unhealthy
        assert "unhealthy" in probe.stdout and "503, status degraded" in probe.stdout, probe.stdout

        # everything acknowledged before the disk filled is stored and counted, nothing else
        auth = server.auth()  # the token was issued before the disk filled
        aggregate = client.get("/api/v1/stats/aggregate", params=date_params(), headers=auth)
        assert aggregate.status_code == 200, aggregate.text
        assert aggregate.json()["data"]["pageviews"] == len(acknowledged)
        assert len(acknowledged) <= 1000, "too many events to check one by one in a breakdown"
        breakdown = client.get(
            "/api/v1/stats/breakdown",
            params={**date_params(), "property": "page", "limit": 1000},
            headers=auth,
        )
        assert breakdown.status_code == 200, breakdown.text
        stored = {row["value"]: row["pageviews"] for row in breakdown.json()["data"]["results"]}
        expected = {f"/full/{number}/{PADDING}" for number in acknowledged}
        assert set(stored) == expected
        assert all(count == 1 for count in stored.values())

    # the only failures logged are the refused commits, each ending in StorageFullError
    log = server.log()
    assert log.count("Traceback") == log.count("\nstorage.environment.StorageFullError: "), log[-4000:]
    print(
        f"\nacknowledged {len(acknowledged)} before the disk was full; answers {dict(statuses)}; "
        f"login when full: {login.status_code}; {time.monotonic() - began:.1f} s"
    )
