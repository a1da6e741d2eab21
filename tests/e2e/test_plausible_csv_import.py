"""``footfall import plausible`` end to end: a hand-written Plausible CSV export (zip) imported
with the CLI (dry run, import, again: already imported), then a real server answers the stats
API with the fixture's sums — totals, a breakdown, the time series — and marks the answer
(``meta.imported``); a filtered query leaves imported days out and says so; the dashboard
shows its "includes imported data" note; the Import page imports the same kind as a job.
"""

from __future__ import annotations

import contextlib
import re
import time

import httpx
import pytest

from tests.appliance.test_plausible_import import fixture_rows, fixture_sum, make_zip
from tests.servers import footfall_cli, start_server

SITE = "plausible-import.test"
SECOND = "second-plausible.test"
PERIOD = {"start_date": "2025-03-01", "end_date": "2025-03-03"}
TABLES = ("visitors", "sources", "pages", "entry_pages", "exit_pages", "locations", "devices", "browsers",
          "operating_systems", "custom_events")
ROWS = sum(len(fixture_rows(table)) for table in TABLES)
BROWSER = "Mozilla/5.0 (X11; Linux x86_64; rv:125.0) Gecko/20100101 Firefox/125.0"


@pytest.fixture(scope="module")
def export_zip(tmp_path_factory):
    return make_zip(tmp_path_factory.mktemp("plausible-zip") / "example_com_20250304.zip")


@pytest.fixture(scope="module")
def server(tmp_path_factory, export_zip):
    data = tmp_path_factory.mktemp("plausible-import") / "data"
    for domain in (SITE, SECOND):
        added = footfall_cli("site", "add", domain, "--timezone", "UTC", data_dir=data)
        assert added.returncode == 0, added.stderr
    dry = footfall_cli("import", "plausible", str(export_zip), "--site", SITE, "--dry-run", data_dir=data)
    assert dry.returncode == 0, dry.stderr
    assert "would import" in dry.stdout and "imported_visitors: 3 rows, 3 days (2025-03-01 to 2025-03-03)" in dry.stdout
    first = footfall_cli("import", "plausible", str(export_zip), "--site", SITE, data_dir=data)
    assert first.returncode == 0, first.stderr
    assert f"imported {ROWS} rows of daily aggregates" in first.stdout
    again = footfall_cli("import", "plausible", str(export_zip), "--site", SITE, data_dir=data)
    assert again.returncode == 0 and "already imported" in again.stdout
    handle = start_server(data)
    yield handle
    handle.stop()


def _get(server, route: str, **params) -> dict:
    response = httpx.get(f"{server.url}/api/v1/stats/{route}", params={"site": SITE, **PERIOD, **params},
                         headers=server.auth(), timeout=30)
    assert response.status_code == 200, response.text
    return response.json()


def test_the_api_answers_the_fixtures_sums_and_marks_imported_days(server):
    totals = _get(server, "aggregate")
    assert totals["data"]["visitors"] == fixture_sum("visitors", "visitors")
    assert totals["data"]["pageviews"] == fixture_sum("visitors", "pageviews")
    assert totals["data"]["visits"] == fixture_sum("visitors", "visits")
    assert totals["data"]["bounce_rate"] == round(100 * fixture_sum("visitors", "bounces")
                                                  / fixture_sum("visitors", "visits"), 2)
    assert totals["meta"] == {"imported": {"start_date": "2025-03-01", "end_date": "2025-03-03", "included": True}}
    series = _get(server, "timeseries")["data"]
    assert [(point["date"], point["visitors"], point["pageviews"]) for point in series] == [
        (row["date"], int(row["visitors"]), int(row["pageviews"])) for row in fixture_rows("visitors")]
    sources = _get(server, "breakdown", property="source")
    by_source = {row["value"]: row["visitors"] for row in sources["data"]["results"]}
    assert by_source["Google"] == fixture_sum("sources", "visitors", source="Google")
    assert by_source[""] == fixture_sum("sources", "visitors", source="")
    assert sources["meta"]["imported"]["included"] is True
    events = {row["name"]: row["events"] for row in _get(server, "events")["data"]}
    assert events["Signup"] == fixture_sum("custom_events", "events", name="Signup")
    # a period without imported days: the answer as always, without meta
    assert "meta" not in _get(server, "aggregate", start_date="2025-04-01", end_date="2025-04-02")


def test_a_filtered_query_leaves_imported_days_out_and_says_so(server):
    filtered = _get(server, "breakdown", property="page", filters="browser==Firefox")
    assert filtered["data"]["results"] == []
    assert filtered["meta"]["imported"]["included"] is False
    assert filtered["meta"]["imported"]["reason"] == "imported data cannot be filtered"
    totals = _get(server, "aggregate", filters="browser==Firefox")
    assert totals["data"]["visitors"] == 0 and totals["meta"]["imported"]["included"] is False


def _dashboard(server) -> httpx.Client:
    client = httpx.Client(base_url=server.url, headers={"user-agent": BROWSER}, timeout=30)
    token = re.search(r'name="csrf" value="([^"]+)"', client.get("/login").text).group(1)
    answer = client.post("/login", data={"username": "admin", "password": server.password, "csrf": token, "next": "/sites"})
    assert answer.status_code == 303, answer.text
    return client


def test_dashboard_notes_imported_data_and_imports_the_kind_as_a_job(server, export_zip):
    client = _dashboard(server)
    with contextlib.closing(client):
        page = client.get(f"/sites/{SITE}", params={"period": "custom", "from": PERIOD["start_date"],
                                                     "to": PERIOD["end_date"]})
        assert page.status_code == 200
        assert "Includes imported data (2025-03-01 to 2025-03-03)" in page.text, page.text[:2000]
        filtered = client.get(f"/sites/{SITE}", params={"period": "custom", "from": PERIOD["start_date"],
                                                         "to": PERIOD["end_date"], "filter": "browser:Firefox"})
        assert "left out: imported data cannot be filtered" in filtered.text
        transfers = client.get(f"/sites/{SECOND}/transfers")
        assert '<option value="plausible">' in transfers.text
        csrf = re.search(r'name="csrf-token" content="([^"]+)"', transfers.text).group(1)
        uploaded = client.post(f"/sites/{SECOND}/imports", data={"csrf": csrf, "kind": "plausible"},
                               files={"file": (export_zip.name, export_zip.read_bytes(), "application/zip")})
        assert uploaded.status_code == 303, uploaded.text
        deadline = time.monotonic() + 60
        row = None
        while time.monotonic() < deadline:
            partial = client.get(f"/sites/{SECOND}/transfers/jobs").text
            row = re.search(r'<tr class="job job-(\w+)" data-job="import-1">(.*?)</tr>', partial, re.S)
            if row and row.group(1) != "running":
                break
            time.sleep(0.05)  # polling a background job, as the page's htmx does
        assert row is not None and row.group(1) == "complete", partial
        assert f"imported <strong class=\"imported-rows\">{ROWS}</strong> rows of daily aggregates" in row.group(2)
    second = httpx.get(f"{server.url}/api/v1/stats/aggregate", params={"site": SECOND, **PERIOD},
                       headers=server.auth(), timeout=30).json()
    assert second["data"]["visitors"] == fixture_sum("visitors", "visitors")
