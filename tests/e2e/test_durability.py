"""SIGKILL mid-stream loses no acknowledged event.

Sixteen senders post page views as fast as the server answers. Once at least
``KILL_AFTER_ACKNOWLEDGED`` of them were answered ``200 success``, the whole server process
group gets SIGKILL while the senders keep going (their in-flight and later requests fail and
are not acknowledged). A new server on the same data dir must count every acknowledged
event, and hold each of them, under its event id, in the event log.
"""

from __future__ import annotations

import collections
import threading
import time
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from tests.conftest import BROWSER_UA

SENDERS = 16
KILL_AFTER_ACKNOWLEDGED = 1500
PATHS = 900  # several events per path, so every path fits in one breakdown (limit <= 1000)
REACH_KILL_WITHIN = 25.0  # seconds to reach the acknowledged target
KEEP_SENDING_AFTER_KILL = 0.5  # seconds the senders keep hammering the dead server


def path_of(number: int) -> str:
    return f"/durable/{number % PATHS}"


class Senders:
    """Threads posting page views; records what the server acknowledged."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.lock = threading.Lock()
        self.next_number = 0
        self.acknowledged: dict[int, str] = {}  # event number -> event id (hex, no prefix)
        self.failures = 0  # connection errors and timeouts: never acknowledged
        self.other_answers: collections.Counter[int] = collections.Counter()
        self.stop = threading.Event()
        self.threads = [threading.Thread(target=self.run, daemon=True) for _ in range(SENDERS)]

    def take_number(self) -> int:
        with self.lock:
            number = self.next_number
            self.next_number += 1
            return number

    def run(self) -> None:
        headers = {"user-agent": BROWSER_UA}
        with httpx.Client(base_url=self.url, headers=headers, timeout=5) as client:
            while not self.stop.is_set():
                number = self.take_number()
                body = {
                    "event_type": "page_view",
                    "site": "localhost",
                    "session_id": f"durability-{number}",
                    "metadata": {"page_url": f"http://localhost{path_of(number)}", "number": number},
                }
                try:
                    response = client.post("/api/v1/events", json=body)
                except httpx.HTTPError:
                    with self.lock:
                        self.failures += 1
                    time.sleep(0.01)  # the server is gone: do not spin
                    continue
                answer = response.json() if response.status_code == 200 else {}
                with self.lock:
                    if response.status_code == 200 and answer.get("status") == "success":
                        self.acknowledged[number] = answer["event_id"].removeprefix("evt_")
                    else:
                        self.other_answers[response.status_code] += 1

    def start(self) -> None:
        for thread in self.threads:
            thread.start()

    def acknowledged_count(self) -> int:
        with self.lock:
            return len(self.acknowledged)

    def join(self) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(timeout=10)
        assert not any(thread.is_alive() for thread in self.threads), "a sender did not stop"


def date_params() -> dict[str, str]:
    today = datetime.now(UTC).date()
    # from yesterday, so a run across midnight (UTC, the demo site's zone) still sees all
    return {
        "site": "localhost",
        "start_date": (today - timedelta(days=1)).isoformat(),
        "end_date": today.isoformat(),
    }


def read_event_log(data_dir, event_ids: set[str]) -> dict[str, object]:
    """Open the stopped server's LMDB in-process and decode the events named by ``event_ids``."""
    from appliance.events.codec import decode_event
    from storage import Store
    from storage.eventlog import EventLog
    from storage.strings import StringTable

    store = Store(data_dir / "footfall.lmdb", initial_map_bytes=1 << 20)
    try:
        eventlog = EventLog(store)
        strings = StringTable(store)
        found = {}
        with store.read() as txn:
            for event_id in event_ids:
                key = bytes.fromhex(event_id)
                value = eventlog.get(txn, key)
                if value is not None:
                    site, timestamp_ms, _ = eventlog.split_key(key)
                    found[event_id] = decode_event(
                        site, timestamp_ms, value, lambda i, txn=txn: strings.text(i, txn)
                    )
            total = txn.stat(store.db(b"events"))["entries"]
        return {"found": found, "total": total}
    finally:
        store.close()


@pytest.mark.timeout(120)  # every wait inside is bounded; this is the backstop
def test_sigkill_loses_no_acknowledged_event(own_server):
    began = time.monotonic()
    first = own_server()
    senders = Senders(first.url)
    senders.start()
    try:
        deadline = time.monotonic() + REACH_KILL_WITHIN
        while senders.acknowledged_count() < KILL_AFTER_ACKNOWLEDGED and time.monotonic() < deadline:
            time.sleep(0.005)
        reached = senders.acknowledged_count()
        assert reached >= KILL_AFTER_ACKNOWLEDGED, (
            f"only {reached} events acknowledged in {REACH_KILL_WITHIN} s\n{first.log()[-3000:]}"
        )
        first.kill()  # SIGKILL to granian and its worker, mid-stream
        killed_at_acknowledged = senders.acknowledged_count()
        time.sleep(KEEP_SENDING_AFTER_KILL)
    finally:
        senders.join()

    acknowledged = dict(senders.acknowledged)
    assert first.process.returncode == -9
    assert senders.failures > 0, "the senders never noticed the kill"
    assert not senders.other_answers, f"unexpected answers: {dict(senders.other_answers)}"
    # nothing can be acknowledged by a dead server
    assert len(acknowledged) - killed_at_acknowledged <= SENDERS
    expected_per_path = collections.Counter(path_of(number) for number in acknowledged)

    second = own_server()  # same data dir; the admin password file persists
    with second.client(headers=second.auth()) as client:
        health = client.get("/api/v1/health").json()
        assert health["status"] == "ok", health
        assert health["last_error"] is None

        aggregate = client.get("/api/v1/stats/aggregate", params=date_params())
        assert aggregate.status_code == 200, aggregate.text
        counted = aggregate.json()["data"]["pageviews"]
        assert counted >= len(acknowledged), (counted, len(acknowledged))
        # a killed request may have been committed without being answered, never more
        assert counted <= senders.next_number

        breakdown = client.get(
            "/api/v1/stats/breakdown", params={**date_params(), "property": "page", "limit": 1000}
        )
        assert breakdown.status_code == 200, breakdown.text
        stored_per_path = {row["value"]: row["pageviews"] for row in breakdown.json()["data"]["results"]}
        missing = {
            path: (expected, stored_per_path.get(path, 0))
            for path, expected in expected_per_path.items()
            if stored_per_path.get(path, 0) < expected
        }
        assert not missing, f"paths with fewer page views than acknowledged: {missing}"
        assert sum(stored_per_path.values()) == counted

        # the restarted server is healthy and takes new events
        fresh = client.post(
            "/api/v1/events",
            json={"event_type": "page_view", "site": "localhost",
                  "metadata": {"page_url": "http://localhost/after-restart"}},
        )
        assert fresh.status_code == 200, fresh.text
        assert fresh.json()["status"] == "success"
        again = client.get("/api/v1/stats/aggregate", params=date_params()).json()["data"]
        assert again["pageviews"] == counted + 1
    second.stop()
    assert second.process.returncode is not None

    # stronger: each acknowledged event id is in the event log, with its own path and number
    log = read_event_log(second.data_dir, set(acknowledged.values()))
    found = log["found"]
    lost = [number for number, event_id in acknowledged.items() if event_id not in found]
    assert not lost, f"{len(lost)} acknowledged events missing from the event log: {lost[:20]}"
    for number, event_id in acknowledged.items():
        event = found[event_id]
        assert event.path == path_of(number)
        assert event.props.get("number") == str(number)
    assert log["total"] == counted + 1

    print(
        f"\nacknowledged {len(acknowledged)} (at kill {killed_at_acknowledged}), "
        f"attempted {senders.next_number}, failed {senders.failures}, "
        f"counted after restart {counted}, event log {log['total']}, "
        f"{time.monotonic() - began:.1f} s"
    )
