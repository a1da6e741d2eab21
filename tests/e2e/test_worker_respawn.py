"""A worker killed from outside (the kernel's OOM killer, a native crash) is started again
by granian's main process: the server keeps its port, and the new worker counts every event
the dead one acknowledged."""

from __future__ import annotations

import os
import signal
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx


def _worker(pid: int) -> int | None:
    children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    return int(children[0]) if children else None


def _post(client: httpx.Client, number: int) -> None:
    body = {"event_type": "page_view", "site": "localhost", "session_id": f"respawn-{number}",
            "metadata": {"page_url": f"http://localhost/respawn/{number}"}}
    response = client.post("/api/v1/events", json=body)
    assert response.status_code == 200 and response.json()["status"] == "success", response.text


def _pageviews(client: httpx.Client, server) -> int:
    today = datetime.now(UTC).date()
    params = {"site": "localhost", "start_date": (today - timedelta(days=1)).isoformat(), "end_date": today.isoformat()}
    answer = client.get("/api/v1/stats/aggregate", headers=server.auth(), params=params)
    assert answer.status_code == 200, answer.text
    return answer.json()["data"]["pageviews"]


def test_a_killed_worker_is_replaced_and_keeps_every_acknowledged_event(own_server):
    server = own_server()
    with server.client() as client:
        for number in range(25):
            _post(client, number)
        assert _pageviews(client, server) == 25
        first = _worker(server.process.pid)
        assert first is not None
        os.kill(first, signal.SIGKILL)
        deadline = time.monotonic() + 60
        health = None
        while time.monotonic() < deadline:
            assert server.process.poll() is None, server.log()  # the main process stays
            worker = _worker(server.process.pid)
            if worker not in (None, first):
                try:
                    answer = client.get("/api/v1/health", timeout=2)
                    if answer.status_code == 200:
                        health = answer.json()
                        break
                except httpx.HTTPError:
                    pass
            time.sleep(0.05)
        assert health is not None, server.log()
        assert health["uptime_seconds"] < 60, health  # a new worker answers
        assert _pageviews(client, server) == 25
        _post(client, 25)  # and takes events
        assert _pageviews(client, server) == 26
