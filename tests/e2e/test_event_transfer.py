"""Raw event export over HTTP, and the round trip: export → ``footfall import footfall`` → the
same reports.

One server (A) runs with a few days of demo traffic. The export is read as NDJSON and CSV,
resumed from a cursor and paged with ``limit``. Then the export is imported with the CLI into
a fresh data dir (B), twice (the second run imports nothing), and a server on B must answer
every stats query exactly as A does.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import re
import time
from datetime import date, timedelta
from pathlib import Path

import httpx
import pytest

from appliance.events.interchange import COLUMNS
from tests.servers import footfall_cli, start_server

SITE = "localhost"
BROWSER = "Mozilla/5.0 (X11; Linux x86_64; rv:125.0) Gecko/20100101 Firefox/125.0"
DAYS = 4


@pytest.fixture(scope="module")
def source(tmp_path_factory):
    server = start_server(tmp_path_factory.mktemp("transfer") / "a", env={"FOOTFALL_DEMO_DAYS": str(DAYS)})
    # the fixture log has fixed dates: keep them inside the retention period for years
    with server.client() as client:
        assert client.patch(f"/api/v1/sites/{SITE}", json={"retention_days": 3650}, headers=server.auth()).status_code == 200
    yield server
    server.stop()


def _period() -> dict[str, str]:
    today = date.today()
    return {"start_date": (today - timedelta(days=DAYS + 1)).isoformat(), "end_date": (today + timedelta(days=1)).isoformat()}


def _export(server, **params) -> tuple[int, bytes, dict]:
    with server.client() as client:
        response = client.get(f"/api/v1/sites/{SITE}/events/export", params={**_period(), **params}, headers=server.auth())
        return response.status_code, response.content, dict(response.headers)


def _lines(body: bytes) -> list[dict]:
    return [json.loads(line) for line in body.splitlines() if line]


def test_export_streams_every_event_as_versioned_ndjson(source):
    status, body, headers = _export(source)
    assert status == 200, body[:300]
    assert headers["content-type"].startswith("application/x-ndjson")
    lines = _lines(body)
    with source.client() as client:
        totals = client.get("/api/v1/stats/aggregate", params={"site": SITE, **_period()}, headers=source.auth()).json()["data"]
    assert len(lines) > 100
    assert all(line["v"] == 1 for line in lines)
    assert sum(line["kind"] == "pageview" for line in lines) == totals["pageviews"]
    assert len({line["visitor"] for line in lines if line["kind"] != "engagement"}) >= totals["visitors"] * 0.9
    assert [line["t"] for line in lines] == sorted(line["t"] for line in lines)
    # pseudonymous: no address or user agent anywhere in the export
    assert b"Mozilla" not in body and b"127.0.0.1" not in body


def test_export_resumes_from_a_cursor_and_pages_with_limit(source):
    lines = _lines(_export(source)[1])
    middle = lines[len(lines) // 2]["id"]
    status, rest, _ = _export(source, cursor=middle)
    assert status == 200
    assert _lines(rest) == lines[len(lines) // 2 + 1 :]
    page = _lines(_export(source, limit=25)[1])
    assert page == lines[:25]
    status, body, _ = _export(source, cursor="not-a-cursor")
    assert status == 422 and json.loads(body)["error"]["field"] == "cursor"


def test_csv_export_has_the_same_events(source):
    ndjson = _lines(_export(source)[1])
    status, body, headers = _export(source, format="csv")
    assert status == 200 and headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(body.decode())))
    assert tuple(rows[0].keys()) == COLUMNS
    assert [row["id"] for row in rows] == [line["id"] for line in ndjson]
    assert [int(row["t"]) for row in rows] == [line["t"] for line in ndjson]


def test_filtered_export_keeps_what_the_filter_counts(source):
    lines = _lines(_export(source, filters="page==/pricing")[1])
    assert lines and all(line["path"] == "/pricing" for line in lines)
    with source.client() as client:
        totals = client.get("/api/v1/stats/aggregate", params={"site": SITE, "filters": "page==/pricing", **_period()},
                            headers=source.auth()).json()["data"]
    assert sum(line["kind"] == "pageview" for line in lines) == totals["pageviews"]


QUERIES = [
    ("aggregate", {}),
    ("aggregate", {"filters": "page==/pricing"}),
    ("aggregate", {"filters": "source==Google"}),
    ("timeseries", {}),
    ("timeseries", {"interval": "hour"}),
    ("breakdown", {"property": "page", "limit": "50"}),
    ("breakdown", {"property": "source", "limit": "50"}),
    ("breakdown", {"property": "country", "limit": "50"}),
    ("breakdown", {"property": "browser", "filters": "device==Mobile"}),
    ("entry-pages", {"limit": "50"}),
    ("exit-pages", {"limit": "50"}),
    ("time-on-page", {"limit": "50"}),
    ("events", {}),
]


def test_round_trip_through_the_importer_reproduces_every_report(source, tmp_path):
    exported = tmp_path / "localhost.ndjson"
    status, body, _ = _export(source)
    assert status == 200
    exported.write_bytes(body)
    target = tmp_path / "b"
    assert footfall_cli("site", "add", SITE, "--retention-days", "3650", data_dir=target).returncode == 0
    dry = footfall_cli("import", "footfall", str(exported), "--site", SITE, "--dry-run", data_dir=target)
    assert dry.returncode == 0, dry.stderr
    assert f"would import {len(_lines(body))} events" in dry.stdout
    first = footfall_cli("import", "footfall", str(exported), "--site", SITE, data_dir=target)
    assert first.returncode == 0, first.stderr
    assert f"imported {len(_lines(body))} events" in first.stdout
    again = footfall_cli("import", "footfall", str(exported), "--site", SITE, data_dir=target)
    assert again.returncode == 0 and "already imported" in again.stdout
    copy = start_server(target)
    try:
        with source.client() as a, copy.client() as b:
            for route, params in QUERIES:
                query = {"site": SITE, **_period(), **params}
                left = a.get(f"/api/v1/stats/{route}", params=query, headers=source.auth())
                right = b.get(f"/api/v1/stats/{route}", params=query, headers=copy.auth())
                assert left.status_code == right.status_code == 200, (route, params, left.text, right.text)
                assert left.json() == right.json(), (route, params)
    finally:
        copy.stop()
    # and the events themselves, exported again from B by the CLI, are A's (but for their log ids)
    again_path = tmp_path / "again.ndjson"
    period = _period()
    exported_again = footfall_cli("export", "events", "--site", SITE, str(again_path), "--start-date", period["start_date"],
                                  "--end-date", period["end_date"], data_dir=target)
    assert exported_again.returncode == 0, exported_again.stderr
    without_id = [{k: v for k, v in line.items() if k != "id"} for line in _lines(body)]
    assert [{k: v for k, v in line.items() if k != "id"} for line in _lines(again_path.read_bytes())] == without_id


def _dashboard(server) -> httpx.Client:
    client = httpx.Client(base_url=server.url, headers={"user-agent": BROWSER}, timeout=30)
    token = re.search(r'name="csrf" value="([^"]+)"', client.get("/login").text).group(1)
    answer = client.post("/login", data={"username": "admin", "password": server.password, "csrf": token, "next": "/sites"})
    assert answer.status_code == 303, answer.text
    return client


def _until_done(client, job: str) -> str:
    """The jobs partial, polled as the page's htmx does, until ``job`` has finished."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        partial = client.get(f"/sites/{SITE}/transfers/jobs").text
        row = re.search(rf'<tr class="job job-(\w+)" data-job="{job}">(.*?)</tr>', partial, re.S)
        if row and row.group(1) != "running":
            return row.group(0)
        time.sleep(0.05)  # polling a background job, as the browser does every second
    raise AssertionError(f"{job} did not finish")


def test_dashboard_runs_exports_and_imports_as_jobs_with_progress(source, tmp_path):
    client = _dashboard(source)
    with contextlib.closing(client):
        page = client.get(f"/sites/{SITE}/transfers")
        assert page.status_code == 200 and "Export raw events" in page.text and 'name="file"' in page.text
        csrf = re.search(r'name="csrf-token" content="([^"]+)"', page.text).group(1)
        started = client.post(f"/sites/{SITE}/exports", data={"csrf": csrf, **_period(), "format": "ndjson"})
        assert started.status_code == 303
        row = _until_done(client, "export-1")
        assert "job-complete" in row and "<progress" in row
        link = re.search(r'href="(/sites/[^"]+/exports/1)"', row).group(1)
        download = client.get(link)
        assert download.status_code == 200
        assert _lines(download.content) == _lines(_export(source)[1])
        # an import (dry run: the shared server's numbers stay as they are)
        log = (Path(__file__).resolve().parents[1] / "fixtures" / "imports" / "nginx-combined.log").read_bytes()
        uploaded = client.post(f"/sites/{SITE}/imports", data={"csrf": csrf, "kind": "access-log", "dry_run": "on"},
                               files={"file": ("access.log", log, "text/plain")})
        assert uploaded.status_code == 303, uploaded.text
        row = _until_done(client, "import-1")
        assert "job-complete" in row and "would import" in row and "skipped 1 (bot)" in row
        broken = client.post(f"/sites/{SITE}/imports", data={"csrf": csrf, "kind": "footfall"},
                             files={"file": ("events.csv", b"a,b\n1,2\n", "text/csv")})
        assert broken.status_code == 303
        row = _until_done(client, "import-2")
        assert "job-failed" in row and "events.csv:1: wrong column set" in row
