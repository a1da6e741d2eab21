"""Export and import jobs outlive a restart: the real server is killed (SIGKILL) with an import
running and started again on the same data dir.

Before the kill an export has finished (its file is downloaded) and a large access log import
(a dry run: nothing is written) is running. After the restart the jobs partial — what the
dashboard's "Import & export" page polls — and the JSON API both still list the export as
complete with the same download, and show the import as failed, interrupted by the restart. A new job gets a fresh
id: the old export's file is never overwritten.
"""

from __future__ import annotations

import contextlib
import gzip
import re
import time
from datetime import date, timedelta

import httpx
import pytest

from tests.servers import start_server

SITE = "localhost"
BROWSER = "Mozilla/5.0 (X11; Linux x86_64; rv:125.0) Gecko/20100101 Firefox/125.0"
LINES = 300_000  # seconds of work for the importer: it is still running when the server is killed


@pytest.fixture
def data_dir(tmp_path):
    return tmp_path / "data"


def _dashboard(server) -> tuple[httpx.Client, str]:
    client = httpx.Client(base_url=server.url, headers={"user-agent": BROWSER}, timeout=30)
    token = re.search(r'name="csrf" value="([^"]+)"', client.get("/login").text).group(1)
    answer = client.post("/login", data={"username": "admin", "password": server.password, "csrf": token, "next": "/sites"})
    assert answer.status_code == 303, answer.text
    page = client.get(f"/sites/{SITE}/transfers")
    return client, re.search(r'name="csrf-token" content="([^"]+)"', page.text).group(1)


def _row(client, job: str) -> tuple[str, str] | None:
    partial = client.get(f"/sites/{SITE}/transfers/jobs").text
    found = re.search(rf'<tr class="job job-(\w+)" data-job="{job}">(.*?)</tr>', partial, re.S)
    return (found.group(1), found.group(2)) if found else None


def _until(client, job: str, status: str) -> str:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        row = _row(client, job)
        if row and row[0] == status:
            return row[1]
        time.sleep(0.05)  # polling a background job, as the page does every second
    raise AssertionError(f"{job} never {status}: {_row(client, job)}")


def _big_access_log() -> bytes:
    lines = (
        f'10.{i >> 16 & 255}.{i >> 8 & 255}.{i & 255} - - [01/Dec/2026:{i // 3600 % 24:02d}:{i // 60 % 60:02d}:{i % 60:02d} +0000] '
        f'"GET /page/{i % 997} HTTP/1.1" 200 512 "-" "{BROWSER}"'
        for i in range(LINES)
    )
    return gzip.compress("\n".join(lines).encode(), compresslevel=1)


def test_jobs_survive_a_killed_server(data_dir):
    server = start_server(data_dir, env={"FOOTFALL_DEMO_DAYS": "2"})
    try:
        client, csrf = _dashboard(server)
        with contextlib.closing(client):
            today = date.today()
            period = {"start_date": (today - timedelta(days=3)).isoformat(), "end_date": today.isoformat()}
            assert client.post(f"/sites/{SITE}/exports", data={"csrf": csrf, **period, "format": "csv"}).status_code == 303
            row = _until(client, "export-1", "complete")
            link = re.search(r'href="(/sites/[^"]+/exports/1)"', row).group(1)
            exported = client.get(link)
            assert exported.status_code == 200 and exported.content.count(b"\n") > 1
            uploaded = client.post(f"/sites/{SITE}/imports", data={"csrf": csrf, "kind": "access-log", "dry_run": "on"},
                                   files={"file": ("big.log.gz", _big_access_log(), "application/gzip")})
            assert uploaded.status_code == 303, uploaded.text
            _until(client, "import-1", "running")
        server.kill()  # SIGKILL, mid-import
    finally:
        server.kill()

    server = start_server(data_dir, env={"FOOTFALL_DEMO_DAYS": "0"})
    try:
        client, csrf = _dashboard(server)
        with contextlib.closing(client):
            status, row = _row(client, "export-1")
            assert status == "complete" and link in row
            again = client.get(link)
            assert again.status_code == 200 and again.content == exported.content
            status, row = _row(client, "import-1")
            assert status == "failed" and "interrupted by a restart" in row and "big.log.gz" in row
            # the same over the JSON API, with the download for an API key
            listed = httpx.get(f"{server.url}/api/v1/sites/{SITE}/transfers", headers=server.auth())
            assert listed.status_code == 200, listed.text
            (export,), (interrupted,) = listed.json()["data"]["exports"], listed.json()["data"]["imports"]
            assert (export["id"], export["status"], export["events"]) == (1, "complete", exported.content.count(b"\n") - 1)
            assert "path" not in export
            assert httpx.get(f"{server.url}{export['download']}", headers=server.auth()).content == exported.content
            assert (interrupted["id"], interrupted["status"], interrupted["filename"]) == (1, "failed", "big.log.gz")
            assert interrupted["error"].startswith("interrupted by a restart") and interrupted["report"] is None
            assert list((data_dir / "transfers").glob("upload-*")) == []  # the interrupted upload is gone
            # a new job takes a new id: the finished export's file stays as it was
            assert client.post(f"/sites/{SITE}/exports", data={"csrf": csrf, **period, "format": "ndjson"}).status_code == 303
            _until(client, "export-2", "complete")
            assert client.get(link).content == exported.content
    finally:
        server.stop()
