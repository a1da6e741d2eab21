"""A standby whose disk fills during a catch-up stops applying, says so, and resumes with nothing lost.

The standby's data dir is on a small tmpfs (mounted here as root; skipped where mounting is not
permitted, as in ``test_backup_restore_online.py``). Once it has caught up, a filler file takes
every free byte of that tmpfs, and the primary is sent batches (one ``user_id`` each) until the
standby's store refuses one. Then:

- the standby stops applying: its replication status names the error (``apply_error``), its
  cursor stays behind the primary, ``/api/v1/health`` and ``/ready`` answer 503 ``degraded``
  saying why, and it keeps answering reads;
- the primary keeps serving and acknowledging every batch, healthy; it runs in synchronous mode,
  and once the stuck standby has confirmed nothing for ``sync_timeout_ms`` its acknowledgements
  stop waiting for it (``sync_degraded``): they stay fast, none waits the timeout;
- once the filler is removed, the standby resumes from its cursor by itself: every event the
  primary acknowledged is on it, once (pageviews equal, the same event ids per person), and its
  health is ``ok`` again, and acknowledgements wait for it again (not degraded; an acknowledged
  batch is on the standby).
"""

from __future__ import annotations

import errno
import time

import httpx
import pytest

from tests.e2e.conftest import tmpfs
from tests.e2e.test_standby_failover import (
    SITE,
    caught_up,
    pageviews,
    start_standby,
    status,
    stored_ids,
    wait_until,
)
from tests.servers import start_server

BATCH = 20
MAX_BATCHES = 400  # a full tmpfs refuses a batch long before this
CHUNK = 1 << 20
SYNC_TIMEOUT_MS = 2000  # the default


@pytest.fixture
def standby_disk(tmp_path):
    """A 48 MiB tmpfs for the standby's data dir (a fresh store takes a few MiB)."""
    with tmpfs(tmp_path / "standby-disk", "48m") as mount:
        yield mount


def fill(path) -> int:
    """Write zeros to ``path`` until the filesystem refuses more; returns the bytes written."""
    written = 0
    block = bytes(CHUNK)
    with open(path, "wb", buffering=0) as filler:
        size = CHUNK
        while size:
            try:
                written += filler.write(block[:size])
            except OSError as error:
                if error.errno != errno.ENOSPC:
                    raise
                size //= 2  # the last pages: smaller and smaller writes
    return written


def send_batch(client: httpx.Client, user: str) -> list[str]:
    body = [
        {"event_type": "page_view", "user_id": user, "site": SITE,
         "metadata": {"page_url": f"https://{SITE}/{user}/{index}", "user_agent": "Mozilla/5.0 Firefox/125.0"}}
        for index in range(BATCH)
    ]
    answer = client.post("/api/v1/events", json=body)
    assert answer.status_code == 200, answer.text  # the primary keeps acknowledging
    return [item["event_id"] for item in answer.json()["results"]]


@pytest.mark.timeout(180)  # every wait inside is bounded; this is the backstop
def test_standby_disk_full_stops_applying_then_resumes_from_its_cursor(tmp_path, standby_disk):
    primary = start_server(tmp_path / "primary", env={
        "FOOTFALL_REPLICATION_SYNC": "true", "FOOTFALL_REPLICATION_SYNC_TIMEOUT_MS": str(SYNC_TIMEOUT_MS),
    })
    standby = None
    try:
        with primary.client(headers=primary.auth()) as client:
            assert client.post("/api/v1/sites", json={"domain": SITE}).status_code == 201
            key = client.post("/api/v1/apikeys", json={"name": "standby"}).json()["key"]
        primary.token = key
        standby = start_standby(standby_disk / "data", primary, key, log_dir=tmp_path)
        acknowledged: dict[str, list[str]] = {}
        with primary.client(headers=primary.auth()) as client:
            for number in range(5):
                acknowledged[f"before-{number}"] = send_batch(client, f"before-{number}")
            wait_until(lambda: caught_up(primary, standby), "the standby to catch up")

            filler = standby_disk / "filler"
            filled = fill(filler)
            assert filled > 0

            # load the primary until the standby's store refuses a batch
            number = 0
            while not status(standby)["apply_error"]:
                assert number < MAX_BATCHES, f"the standby applied {number} batches on a full disk: {status(standby)}"
                acknowledged[f"full-{number}"] = send_batch(client, f"full-{number}")
                number += 1
                if number % 10 == 0:  # let the standby pull what was sent
                    wait_until(lambda: status(standby)["apply_error"] or caught_up(primary, standby),
                               "the standby to apply or refuse")
            stalled = status(standby)
            assert "StorageFullError" in stalled["apply_error"], stalled
            assert stalled["role"] == "standby"

            # the primary keeps serving and acknowledging while its standby is stuck, without
            # waiting for it once it has confirmed nothing for sync_timeout_ms
            degraded = wait_until(lambda: (s := status(primary))["sync_degraded"] and s,
                                  "the primary to stop waiting for its stuck standby")
            assert degraded["standby_connected"], degraded  # it keeps polling
            stuck_ack_seconds = []
            for extra in range(5):
                started = time.perf_counter()
                acknowledged[f"stuck-{extra}"] = send_batch(client, f"stuck-{extra}")
                stuck_ack_seconds.append(time.perf_counter() - started)
            after_stuck = status(primary)
            assert after_stuck["sync_timeouts"] == degraded["sync_timeouts"], after_stuck  # none waited
            assert after_stuck["sync_degraded_acks"] >= degraded["sync_degraded_acks"] + 5, after_stuck
            assert max(stuck_ack_seconds) < SYNC_TIMEOUT_MS / 1000, stuck_ack_seconds
            assert "footfall_replication_sync_degraded 1.0" in client.get("/metrics").text
            assert client.get("/api/v1/health").status_code == 200
            assert client.get("/ready").json()["status"] == "ok"
            primary_last = status(primary)["last_sequence"]

        # the standby says why it stopped, stays behind, and keeps answering reads
        stuck = wait_until(lambda: (s := status(standby))["primary_last_sequence"] >= primary_last and s,
                           "the standby to see the primary's last commit")
        assert stuck["apply_error"] and stuck["cursor"] < primary_last and stuck["lag_events"] > 0, stuck
        health = httpx.get(f"{standby.url}/api/v1/health", timeout=10)
        assert health.status_code == 503, health.text
        report = health.json()
        assert report["status"] == "degraded" and "StorageFullError" in report["last_error"], report
        assert "StorageFullError" in report["replication"]["apply_error"], report
        ready = httpx.get(f"{standby.url}/ready", timeout=10)
        assert ready.status_code == 503 and "StorageFullError" in ready.json()["checks"]["standby_apply"], ready.text
        assert pageviews(standby) < pageviews(primary)
        assert standby.process.poll() is None

        # space freed: the standby resumes from its cursor by itself, nothing lost or doubled
        filler.unlink()
        wait_until(lambda: caught_up(primary, standby), "the standby to resume after space was freed", timeout=90)
        resumed_primary = status(primary)
        assert not resumed_primary["sync_degraded"], resumed_primary
        with primary.client(headers=primary.auth()) as client:  # acknowledgements wait for it again
            acknowledged["after-0"] = send_batch(client, "after-0")
        synced = status(primary)
        assert synced["standby_confirmed"] == synced["last_sequence"], synced  # acknowledged = on the standby
        assert synced["sync_timeouts"] == resumed_primary["sync_timeouts"], synced
        resumed = status(standby)
        assert resumed["apply_error"] is None and resumed["last_error"] is None, resumed
        assert pageviews(standby) == pageviews(primary) == BATCH * len(acknowledged)
        for user, ids in acknowledged.items():
            assert stored_ids(standby, user) == set(ids), user
        health = httpx.get(f"{standby.url}/api/v1/health", timeout=10)
        assert health.status_code == 200 and health.json()["status"] == "ok", health.text
        assert httpx.get(f"{standby.url}/ready", timeout=10).json()["checks"]["standby_apply"] == "ok"
        print(f"\nfiller {filled >> 20} MiB; the standby refused a batch after {number} on the full disk; "
              f"behind by {stuck['lag_events']} events while stuck; sync acknowledgements while stuck "
              f"{min(stuck_ack_seconds) * 1000:.0f}-{max(stuck_ack_seconds) * 1000:.0f} ms "
              f"({degraded['sync_timeouts']} waited the timeout first); resumed and caught up")
    finally:
        if standby is not None:
            standby.stop()
        primary.kill()
