"""The importer on a real appliance: access logs (combined, common, Caddy JSON), idempotency,
visitor ids of imported days, bad input refused whole, and the Footfall export read back.

Fixture files (``tests/fixtures/imports``) are written by hand from the formats' documentation.
"""

from __future__ import annotations

import gzip
import json
import shutil
import time
import zipfile
from datetime import date, timedelta
from pathlib import Path

import pytest

from appliance.cli.demo import fill_demo_site
from appliance.exports.raw_events import RawEvents
from appliance.filters import parse_filters
from appliance.imports.runner import Importer
from appliance.imports.sources import ImportFailure
from appliance.query.spec import Query

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "imports"
DAY = date(2026, 12, 1)


@pytest.fixture
def appliance(make_appliance):
    return make_appliance()


@pytest.fixture
def site(appliance):
    return appliance.sites.add("example.org", retention_days=3650)


def _query(site, first=DAY, last=date(2026, 12, 2), **extra):
    return Query(site=site, date_from=first, date_to=last, **extra)


def _stored(appliance, site) -> list:
    return appliance.read_events(site, 0, 2**40)


def test_combined_log_counts_pages_and_skips_assets_errors_and_bots(appliance, site):
    report = Importer.of(appliance).run("access-log", str(FIXTURES / "nginx-combined.log"), site)
    assert report.events == 5
    assert report.skipped == {"static asset": 2, "not a GET request": 1, "error or redirect status": 1, "bot": 1}
    stats = appliance.stats
    totals = stats.aggregate(_query(site))
    assert totals["pageviews"] == 5
    assert totals["visitors"] == 3
    # 203.0.113.7's two pages are one visit; 192.0.2.50's are an hour apart: two
    assert totals["visits"] == 4
    sources = {row["value"]: row["visitors"] for row in stats.breakdown(_query(site), "source", 10)["results"]}
    assert sources["Google"] == 1 and sources["DuckDuckGo"] == 1 and sources["newsletter"] == 1
    browsers = {row["value"] for row in stats.breakdown(_query(site), "browser", 10)["results"]}
    assert {"Firefox", "Safari", "Chrome"} <= browsers
    events = _stored(appliance, site)
    assert min(e.timestamp for e in events) == 1796115600.0  # the log's own time, not now
    appliance.store.sync()
    blob = b"".join(path.read_bytes() for path in Path(appliance.settings.data_dir).rglob("*.mdb"))
    assert b"example.org" in blob and b"/docs/install" in blob  # the file is readable as such
    for private in (b"203.0.113.7", b"198.51.100.23", b"Gecko/20100101"):
        assert private not in blob  # IPs and user agents are never stored


def test_common_log_and_caddy_json(appliance, site):
    importer = Importer.of(appliance)
    common = importer.run("access-log", str(FIXTURES / "apache-common.log"), site)
    assert common.events == 2 and common.skipped == {"static asset": 1}
    caddy = importer.run("access-log", str(FIXTURES / "caddy.json.log"), site)
    assert caddy.events == 2 and caddy.skipped == {"static asset": 1, "bot": 1}
    campaigns = appliance.stats.breakdown(_query(site), "utm_campaign", 10)["results"]
    assert [row["value"] for row in campaigns] == ["launch"]


def test_the_same_log_twice_counts_once_even_gzipped(appliance, site, tmp_path):
    importer = Importer.of(appliance)
    plain = FIXTURES / "nginx-combined.log"
    packed = tmp_path / "access.log.1.gz"
    with open(plain, "rb") as source, gzip.open(packed, "wb") as target:
        shutil.copyfileobj(source, target)
    assert importer.run("access-log", str(plain), site).events == 5
    again = importer.run("access-log", str(packed), site)
    assert again.already_imported and again.events == 0
    assert appliance.stats.aggregate(_query(site))["pageviews"] == 5


def test_a_dry_run_reports_and_writes_nothing(appliance, site):
    report = Importer.of(appliance).run("access-log", str(FIXTURES / "nginx-combined.log"), site, dry_run=True)
    assert report.dry_run and report.events == 5 and report.skipped["bot"] == 1
    assert _stored(appliance, site) == []
    assert Importer.of(appliance).run("access-log", str(FIXTURES / "nginx-combined.log"), site).events == 5


def test_visitor_ids_of_a_day_do_not_depend_on_the_file(appliance, site, tmp_path):
    lines = (FIXTURES / "nginx-combined.log").read_text().splitlines(keepends=True)
    (tmp_path / "morning.log").write_text("".join(lines[:1]))
    (tmp_path / "later.log").write_text("".join(lines[3:4]))
    importer = Importer.of(appliance)
    importer.run("access-log", str(tmp_path / "morning.log"), site)
    importer.run("access-log", str(tmp_path / "later.log"), site)
    events = _stored(appliance, site)
    assert len(events) == 2 and events[0].visitor_id == events[1].visitor_id
    assert appliance.stats.aggregate(_query(site))["visits"] == 1


def test_bad_input_is_refused_whole_naming_file_and_line(appliance, site, tmp_path):
    importer = Importer.of(appliance)
    good = (FIXTURES / "nginx-combined.log").read_text().splitlines(keepends=True)
    broken = tmp_path / "broken.log"
    broken.write_text("".join([*good[:4], "this is not a log line\n", *good[4:]]))
    with pytest.raises(ImportFailure, match=r"broken\.log:5: not an access log line"):
        importer.run("access-log", str(broken), site)
    truncated = tmp_path / "access.log.gz"
    data = gzip.compress("".join(good * 50).encode())
    truncated.write_bytes(data[: len(data) // 2])
    with pytest.raises(ImportFailure, match=r"access\.log\.gz:\d+: truncated or corrupt"):
        importer.run("access-log", str(truncated), site)
    archive = tmp_path / "export.zip"
    with zipfile.ZipFile(archive, "w") as zipped:
        zipped.writestr("events.ndjson", "".join(good))
    archive.write_bytes(archive.read_bytes()[:-30])
    with pytest.raises(ImportFailure, match=r"export\.zip"):
        importer.run("footfall", str(archive), site)
    wrong_columns = tmp_path / "events.csv"
    wrong_columns.write_text("time,page,visitors\n2026-12-01,/,3\n")
    with pytest.raises(ImportFailure, match=r"events\.csv:1: wrong column set.*missing v, t, kind"):
        importer.run("footfall", str(wrong_columns), site)
    assert _stored(appliance, site) == []  # nothing half-imported


def test_footfall_export_round_trip_in_both_formats(make_appliance, tmp_path):
    source = make_appliance()
    site = source.sites.add("shop.example", timezone="Europe/Berlin")
    fill_demo_site(source, site, days=3, visits_per_day=40, seed=7)
    today = date.today() + timedelta(days=1)  # Berlin's today may be tomorrow in UTC
    first = date.fromordinal(today.toordinal() - 4)
    raw = RawEvents(source.stats.scans, source.strings)
    for fmt in ("ndjson", "csv"):
        path = tmp_path / f"export.{fmt}"
        path.write_bytes(b"".join(raw.stream(site, first, today, fmt=fmt)))
        target = make_appliance()
        copy = target.sites.add("shop.example", timezone="Europe/Berlin")
        report = Importer.of(target).run("footfall", str(path), copy)
        assert report.events == len(source.read_events(site, 0, 2**40)) and not report.skipped
        for filters in ([], "page==/pricing", "channel==Organic Search"):
            parsed = parse_filters(filters) if filters else []
            left = Query(site=site, date_from=first, date_to=today, filters=parsed)
            right = Query(site=copy, date_from=first, date_to=today, filters=parsed)
            assert source.stats.aggregate(left) == target.stats.aggregate(right)
            assert source.stats.breakdown(left, "page", 50) == target.stats.breakdown(right, "page", 50)
            assert source.stats.entry_pages(left, 50) == target.stats.entry_pages(right, 50)


def test_a_footfall_line_with_an_over_long_field_is_refused_naming_it(appliance, site, tmp_path):
    an_hour_ago = round((time.time() - 3600) * 1000)
    line = {"v": 1, "id": "00", "t": an_hour_ago, "kind": "pageview", "visitor": "ab12", "path": "/"}
    path = tmp_path / "export.ndjson"
    path.write_text(json.dumps(line) + "\n" + json.dumps({**line, "referrer": "x" * 2001}) + "\n")
    with pytest.raises(ImportFailure, match=r"export\.ndjson:2: .*referrer: longer than 2000 characters"):
        Importer.of(appliance).run("footfall", str(path), site)
    path.write_text(json.dumps({**line, "referrer": "x" * 2000}) + "\n")
    assert Importer.of(appliance).run("footfall", str(path), site, dry_run=True).events == 1


def test_umami_website_event_export(appliance, site):
    report = Importer.of(appliance).run("umami", str(FIXTURES / "umami-website-events.csv"), site)
    assert report.events == 4 and not report.skipped
    stats = appliance.stats
    totals = stats.aggregate(_query(site))
    assert (totals["visitors"], totals["pageviews"], totals["visits"]) == (2, 3, 2)
    rows = lambda dimension: {r["value"]: r["visitors"] for r in stats.breakdown(_query(site), dimension, 10)["results"]}  # noqa: E731
    assert rows("country") == {"DE": 1, "FR": 1}
    assert rows("browser") == {"Firefox": 1, "Safari": 1}
    assert rows("utm_campaign") == {"winter": 1}
    assert rows("source")["Google"] == 1
    assert [e["name"] for e in stats.custom_events(_query(site))] == ["signup"]


def test_goatcounter_csv_export(appliance, site):
    report = Importer.of(appliance).run("goatcounter", str(FIXTURES / "goatcounter-export.csv"), site)
    assert report.events == 4 and report.skipped == {"bot": 1}
    stats = appliance.stats
    totals = stats.aggregate(_query(site))
    assert (totals["visitors"], totals["pageviews"]) == (2, 3)
    rows = lambda dimension: {r["value"]: r["visitors"] for r in stats.breakdown(_query(site), dimension, 10)["results"]}  # noqa: E731
    assert rows("source") == {"Google": 1, "Hacker News": 1}
    assert rows("country") == {"NL": 1, "US": 1}
    assert rows("os") == {"Linux": 1, "Android": 1}


def test_a_tool_export_with_the_wrong_columns_is_refused(appliance, site, tmp_path):
    wrong = tmp_path / "umami.csv"
    wrong.write_text("session_id,url_path,created_at\nabc,/,2026-12-01 10:00:00\n")
    with pytest.raises(ImportFailure, match=r"umami\.csv:1: wrong column set .*missing hostname"):
        Importer.of(appliance).run("umami", str(wrong), site)
    with pytest.raises(ImportFailure, match=r"umami\.csv:1: wrong column set .*missing 2Path"):
        Importer.of(appliance).run("goatcounter", str(wrong), site)


def test_static_asset_patterns_are_configurable(appliance, site):
    report = Importer.of(appliance).run(
        "access-log", str(FIXTURES / "nginx-combined.log"), site, dry_run=True, static_patterns=("/docs*",)
    )
    # the stylesheet and the logo count now; the two /docs pages are the "assets"
    assert report.events == 5 and report.skipped["static asset"] == 2
    everything = Importer.of(appliance).run(
        "access-log", str(FIXTURES / "nginx-combined.log"), site, dry_run=True, static_patterns=()
    )
    assert everything.events == 7 and "static asset" not in everything.skipped
