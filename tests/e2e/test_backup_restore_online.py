"""``footfall backup`` while a real server ingests, ``footfall restore`` into a fresh data dir,
and a server started on the restored copy answering every report as the source did at the
backup's event count. Disk full during a backup and a restore on a small tmpfs (mounted here as
root; skipped where mounting is not permitted).

One poster thread sends numbered page views in batches, each acknowledged before the next, so
the event log's order is the posting order and the manifest's ``event_count`` K names a prefix:
the restored server holds events 0..K-1. Posting events K.. to it afterwards must then give
the very state the source reached, report for report (the salts and open visits travel in the
backup, so visitor ids match).
"""

from __future__ import annotations

import json
import shutil
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest

from tests.e2e.conftest import tmpfs
from tests.servers import BROWSER_UA, footfall_cli, start_server

BATCH = 20
BASE = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=2)
# Every report asks the days the events are stamped on (from BASE on, 400 ms apart: far less than
# a day of them), so the source's and the copy's answers are of the same days even when midnight
# (UTC) passes between them.
PERIOD = {"site": "localhost", "start_date": BASE.date().isoformat(), "end_date": (BASE + timedelta(days=1)).date().isoformat()}
REPORTS = [
    ("/api/v1/stats/aggregate", {}),
    ("/api/v1/stats/timeseries", {"interval": "hour"}),
    ("/api/v1/stats/breakdown", {"property": "page", "limit": 50}),
    ("/api/v1/stats/entry-pages", {"limit": 50}),
    ("/api/v1/stats/exit-pages", {"limit": 50}),
    ("/api/v1/reports/traffic", {}),
]


def event(number: int) -> dict:
    return {
        "event_type": "page_view",
        "site": "localhost",
        "session_id": f"backup-{number % 37}",
        "timestamp": (BASE + timedelta(milliseconds=400 * number)).isoformat(),
        "metadata": {"page_url": f"http://localhost/p{number % 11}", "number": number},
    }


def post_range(url: str, start: int, end: int) -> None:
    with httpx.Client(base_url=url, headers={"user-agent": BROWSER_UA}, timeout=30) as client:
        for first in range(start, end, BATCH):
            answer = client.post("/api/v1/events", json=[event(n) for n in range(first, min(first + BATCH, end))])
            assert answer.status_code in (200, 207), answer.text
            assert answer.json()["status"] == "success", answer.text


class Poster:
    """One thread posting batches until stopped; ``sent`` counts acknowledged events."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.sent = 0
        self.error: BaseException | None = None
        self.stop = threading.Event()
        self.progress = threading.Condition()
        self.thread = threading.Thread(target=self.run, daemon=True)

    def run(self) -> None:
        try:
            while not self.stop.is_set():
                post_range(self.url, self.sent, self.sent + BATCH)
                with self.progress:
                    self.sent += BATCH
                    self.progress.notify_all()
        except BaseException as error:  # reported by the test
            self.error = error
            with self.progress:
                self.progress.notify_all()

    def wait_for(self, count: int) -> None:
        with self.progress:
            assert self.progress.wait_for(lambda: self.sent >= count or self.error, timeout=120)
        assert self.error is None, self.error


def reports(url: str, token: str) -> dict[str, object]:
    answers = {}
    with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {token}"}, timeout=30) as client:
        for path, extra in REPORTS:
            answer = client.get(path, params={**PERIOD, **extra})
            assert answer.status_code == 200, (path, answer.text)
            answers[path] = answer.json()
    return answers


@pytest.fixture(scope="module")
def source(tmp_path_factory):
    handle = start_server(tmp_path_factory.mktemp("backup-source") / "data")
    yield handle
    handle.kill()


@pytest.fixture(scope="module")
def online_backup(source, tmp_path_factory):
    """A backup taken while the poster runs; (backup dir, manifest, events sent before, after)."""
    destination = tmp_path_factory.mktemp("backups") / "online"
    poster = Poster(source.url)
    poster.thread.start()
    try:
        poster.wait_for(200)
        # what a settled report counts has left the intake for the event log: the backup holds
        # it (the intake's last second is after the manifest's count, appliance/operations/backups.py)
        before = _event_count(source.url, source.token)
        result = footfall_cli("backup", str(destination), data_dir=source.data_dir)
        after = poster.sent
        poster.wait_for(after + 100)  # ingestion goes on after the backup too
    finally:
        poster.stop.set()
        poster.thread.join(timeout=60)
    assert poster.error is None, poster.error
    assert result.returncode == 0, result.stderr
    manifest = json.loads((destination / "manifest.json").read_text())
    return destination, manifest, before, after, poster.sent


def test_backup_during_ingestion_restores_to_identical_reports(source, online_backup, tmp_path):
    destination, manifest, before, after, total = online_backup
    count = manifest["event_count"]
    assert after > before, "the server did not keep ingesting while the backup ran"
    assert before <= count <= after, (before, count, after)
    assert manifest["sites"] == ["localhost"]
    assert manifest["format"] == 1 and manifest["footfall_version"]
    assert "footfall.lmdb/data.mdb" in manifest["files"]
    assert all(len(entry["sha256"]) == 64 for entry in manifest["files"].values())
    assert not any(name.endswith(("first-admin-password.txt", "footfall.lock", "lock.mdb")) for name in manifest["files"])

    restored_dir = tmp_path / "restored"
    result = footfall_cli("restore", str(destination), data_dir=restored_dir)
    assert result.returncode == 0, result.stderr
    assert f"{count} events" in result.stdout
    # The backup leaves the first-admin password file out (a secret); the users are in the
    # store, so the source's admin password logs in. start_server reads it from this file.
    (restored_dir / "first-admin-password.txt").write_text(source.password + "\n")
    restored = start_server(restored_dir)
    try:
        at_backup = reports(restored.url, restored.token)
        assert at_backup["/api/v1/stats/aggregate"]["data"]["pageviews"] == count
        pages = {row["value"]: row["pageviews"] for row in at_backup["/api/v1/stats/breakdown"]["data"]["results"]}
        expected: dict[str, int] = {}
        for number in range(count):
            expected[f"/p{number % 11}"] = expected.get(f"/p{number % 11}", 0) + 1
        assert pages == expected
        # The rest of what the source acknowledged, in order: the same state, report for report.
        post_range(restored.url, count, total)
        assert reports(restored.url, restored.token) == reports(source.url, source.token)
    finally:
        restored.kill()


def test_restore_refuses_a_non_empty_data_dir_without_force(online_backup, tmp_path):
    destination = online_backup[0]
    target = tmp_path / "busy"
    target.mkdir()
    (target / "something").write_text("keep me")
    refused = footfall_cli("restore", str(destination), data_dir=target)
    assert refused.returncode == 2
    assert "not empty" in refused.stderr and "--force" in refused.stderr
    assert (target / "something").read_text() == "keep me"
    forced = footfall_cli("restore", str(destination), "--force", data_dir=target)
    assert forced.returncode == 0, forced.stderr
    assert not (target / "something").exists()
    assert (target / "footfall.lmdb" / "data.mdb").is_file()


def test_restore_refuses_while_a_server_owns_the_data_dir(source, online_backup):
    refused = footfall_cli("restore", str(online_backup[0]), "--force", data_dir=source.data_dir)
    assert refused.returncode == 2
    assert "a server is running" in refused.stderr
    assert httpx.get(f"{source.url}/api/v1/health").status_code == 200


def test_restore_refuses_a_damaged_backup(online_backup, tmp_path):
    damaged = tmp_path / "damaged"
    shutil.copytree(online_backup[0], damaged)
    store = damaged / "footfall.lmdb" / "data.mdb"
    raw = bytearray(store.read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    store.write_bytes(bytes(raw))
    refused = footfall_cli("restore", str(damaged), data_dir=tmp_path / "fresh")
    assert refused.returncode == 2
    assert "does not match its checksum" in refused.stderr
    assert not (tmp_path / "fresh" / "footfall.lmdb").exists()
    verify = footfall_cli("backup-verify", str(damaged), data_dir=tmp_path / "unused")
    assert verify.returncode == 2 and "does not match its checksum" in verify.stderr
    intact = footfall_cli("backup-verify", str(online_backup[0]), data_dir=tmp_path / "unused")
    assert intact.returncode == 0 and "every checksum matches" in intact.stdout


@pytest.fixture
def tiny_disk(tmp_path):
    """A 32 KiB tmpfs: smaller than the store (about 100 KB here)."""
    with tmpfs(tmp_path / "tiny", "32k") as mount:
        yield mount


def _event_count(url: str, token: str) -> int:
    return reports(url, token)["/api/v1/stats/aggregate"]["data"]["pageviews"]


def test_disk_full_during_a_backup_keeps_the_server_serving(source, online_backup, tiny_disk):
    total = online_backup[4]
    assert _event_count(source.url, source.token) == total
    failed = footfall_cli("backup", str(tiny_disk / "backup"), data_dir=source.data_dir)
    assert failed.returncode == 2
    assert "disk full" in failed.stderr
    assert not (tiny_disk / "backup").exists(), "a failed backup left files behind"
    post_range(source.url, total, total + BATCH)  # the primary keeps accepting
    assert httpx.get(f"{source.url}/api/v1/health").json()["status"] == "ok"
    assert _event_count(source.url, source.token) == total + BATCH  # nothing acknowledged lost


def test_disk_full_during_a_restore_leaves_the_data_dir_empty(online_backup, tiny_disk):
    data = tiny_disk / "data"
    failed = footfall_cli("restore", str(online_backup[0]), data_dir=data)
    assert failed.returncode == 2
    assert "disk full" in failed.stderr
    assert sorted(child.name for child in data.iterdir()) == ["footfall.lock"]


def test_restored_data_dir_is_what_the_manifest_lists(online_backup, tmp_path):
    destination, manifest = online_backup[0], online_backup[1]
    listed = set(manifest["files"])
    present = {path.relative_to(destination).as_posix() for path in Path(destination).rglob("*")
               if path.is_file() and path.name != "manifest.json"}
    assert present == listed
