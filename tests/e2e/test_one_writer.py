"""One process owns a data dir's event writes: CLI commands run beside a live server
neither double-count events nor wait for a restart to be seen.

The defect this guards against: every ``footfall`` command opened a full Appliance, whose
``open()`` replayed and aggregated the ``pending`` events the running server was folding in
too, so page views were counted twice, forever.
"""

from __future__ import annotations

import re
import threading
import time
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from tests.servers import BROWSER_UA, footfall_cli

SITE = "onewriter.test"
SENDERS = 4
BATCH = 25
MAX_BATCHES_PER_SENDER = 80  # at most 8,000 events in all
PACE_SECONDS = 0.15  # between a sender's batches: the stream lasts as long as the CLI calls
CLI_RUNS = 6


def _params(site: str) -> dict[str, str]:
    today = datetime.now(UTC).date()
    return {"site": site, "start_date": (today - timedelta(days=1)).isoformat(), "end_date": today.isoformat()}


def _pageviews(handle, site: str) -> int:
    response = httpx.get(f"{handle.url}/api/v1/stats/aggregate", headers=handle.auth(), params=_params(site))
    assert response.status_code == 200, response.text
    return response.json()["data"]["pageviews"]


def _ok(*args: str, data_dir) -> str:
    result = footfall_cli(*args, data_dir=data_dir)
    assert result.returncode == 0, result.stderr
    return result.stdout


class BatchSenders:
    """Threads posting batches of page views to ``site``; counts what the server acknowledged."""

    def __init__(self, url: str, site: str) -> None:
        self.url, self.site = url, site
        self.acknowledged = 0
        self.other: list[str] = []
        self.lock = threading.Lock()
        self.stop = threading.Event()
        self.threads = [threading.Thread(target=self.run, args=(n,), daemon=True) for n in range(SENDERS)]

    def run(self, sender: int) -> None:
        with httpx.Client(base_url=self.url, headers={"user-agent": BROWSER_UA}, timeout=30) as client:
            for batch in range(MAX_BATCHES_PER_SENDER):
                if self.stop.is_set():
                    return
                body = [
                    {"event_type": "page_view", "site": self.site, "session_id": f"s{sender}-{batch}-{i}",
                     "metadata": {"page_url": f"http://{self.site}/p{i % 7}"}}
                    for i in range(BATCH)
                ]
                response = client.post("/api/v1/events", json=body)
                time.sleep(PACE_SECONDS)
                answer = response.json()
                with self.lock:
                    if response.status_code == 200:
                        self.acknowledged += sum(1 for r in answer["results"] if r["status"] == "success")
                    if answer.get("status") != "success":
                        self.other.append(response.text[:300])

    def __enter__(self) -> BatchSenders:
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(timeout=60)
        assert not any(thread.is_alive() for thread in self.threads), "a sender did not stop"


@pytest.mark.timeout(180)
def test_cli_commands_beside_a_busy_server_do_not_double_count(own_server, tmp_path):
    data = tmp_path / "data"
    handle = own_server(data_dir=data)
    created = httpx.post(f"{handle.url}/api/v1/sites", headers=handle.auth(), json={"domain": SITE, "timezone": "UTC"})
    assert created.status_code == 201, created.text
    began = time.monotonic()
    with BatchSenders(handle.url, SITE) as senders:
        time.sleep(0.3)  # the server has pending, unaggregated events when the CLI opens
        for n in range(CLI_RUNS):
            _ok("user", "create", f"crowd{n}", "--password", "a-long-enough-password", data_dir=data)
        cli_done = time.monotonic() - began
        still_sending = any(thread.is_alive() for thread in senders.threads)
    acknowledged = senders.acknowledged
    assert not senders.other, senders.other[:3]
    assert acknowledged >= 1000, acknowledged
    counted = _pageviews(handle, SITE)
    handle.stop()
    again = own_server(data_dir=data)
    counted_after_restart = _pageviews(again, SITE)
    print(f"\nacknowledged {acknowledged}, counted {counted}, after restart {counted_after_restart}, "
          f"CLI calls took {cli_done:.1f} s, senders still sending then: {still_sending}, "
          f"{time.monotonic() - began:.1f} s in all")
    assert (counted, counted_after_restart) == (acknowledged, acknowledged)


def test_records_made_by_the_cli_are_used_by_the_running_server_at_once(own_server, tmp_path):
    data = tmp_path / "data"
    handle = own_server(data_dir=data)
    _ok("site", "add", "fresh.test", "--timezone", "UTC", data_dir=data)
    with httpx.Client(base_url=handle.url, headers={"user-agent": BROWSER_UA}) as client:
        posted = client.post("/api/v1/events", json={
            "event_type": "page_view", "site": "fresh.test", "metadata": {"page_url": "http://fresh.test/hello"}})
        assert posted.status_code == 200, posted.text
        assert posted.json()["status"] == "success"
    assert _pageviews(handle, "fresh.test") == 1
    sites = httpx.get(f"{handle.url}/api/v1/sites", headers=handle.auth()).json()["data"]
    assert "fresh.test" in {site["domain"] for site in sites}

    out = _ok("user", "create", "newcomer", "--role", "viewer", "--site", "fresh.test", data_dir=data)
    password = re.search(r"password: (\S+)", out).group(1)
    login = httpx.post(f"{handle.url}/api/v1/authenticate", json={"username": "newcomer", "password": password})
    assert login.status_code == 200, login.text
    token = login.json()["token"]
    me = httpx.get(f"{handle.url}/api/v1/me", headers={"Authorization": f"Bearer {token}"}).json()["data"]
    assert (me["username"], me["sites"]) == ("newcomer", ["fresh.test"])

    key = re.search(r"key: (ffk_\S+)", _ok("apikey", "create", "newcomer", "--name", "ci", data_dir=data)).group(1)
    stats = httpx.get(f"{handle.url}/api/v1/stats/aggregate", params=_params("fresh.test"),
                      headers={"Authorization": f"Bearer {key}"})
    assert stats.status_code == 200 and stats.json()["data"]["pageviews"] == 1
    key_id = _ok("apikey", "list", "--user", "newcomer", data_dir=data).split("\t")[0]
    _ok("apikey", "revoke", key_id, data_dir=data)
    revoked = httpx.get(f"{handle.url}/api/v1/me", headers={"Authorization": f"Bearer {key}"})
    assert revoked.status_code == 401
    for args in (("user", "list"), ("site", "list"), ("apikey", "list"), ("audit",), ("plugins",),
                 ("user", "set-role", "newcomer", "analyst"),
                 ("user", "reset-password", "newcomer", "--password", "another-long-password"),
                 ("user", "delete", "newcomer")):
        _ok(*args, data_dir=data)
    assert httpx.post(f"{handle.url}/api/v1/authenticate",
                      json={"username": "newcomer", "password": "another-long-password"}).status_code == 401


def test_event_commands_refuse_while_a_server_runs(own_server, tmp_path):
    data = tmp_path / "data"
    handle = own_server(data_dir=data)
    demo = footfall_cli("demo", "--site", "shop.test", "--days", "1", data_dir=data)
    assert demo.returncode != 0
    assert "a server is running on this data dir" in demo.stderr, demo.stderr
    assert str(data.resolve()) in demo.stderr and "use the dashboard/API, or stop it" in demo.stderr
    assert re.search(r"pid \d+", demo.stderr), demo.stderr
    delete = footfall_cli("site", "delete", "localhost", "--yes", data_dir=data)
    assert delete.returncode != 0 and "a server is running on this data dir" in delete.stderr, delete.stderr
    assert "localhost" in _ok("site", "list", data_dir=data)
    # a second server on the same data dir fails clearly instead of writing beside the first
    second = footfall_cli("serve", "--port", "1", data_dir=data)
    assert second.returncode != 0 and "a server is running on this data dir" in second.stderr, second.stderr
    handle.stop()
    # once it stopped, the event commands work again
    _ok("demo", "--site", "shop.test", "--days", "1", "--visits-per-day", "5", data_dir=data)
