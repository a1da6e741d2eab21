"""Plausible's CSV export imported as daily aggregates: parsing, validation (nothing written on
a bad file), idempotency, and the stats adding imported days — or leaving them out, and saying
so, when a query asks what the tables cannot answer.

The fixture (``tests/fixtures/plausible_export``) is written by hand from the column sets in
Plausible's CSV importer and export queries; the tests zip it.
"""

from __future__ import annotations

import csv
import zipfile
from datetime import date
from pathlib import Path

import pytest

from appliance.exports.site_archive import export_site
from appliance.filters import parse_filters
from appliance.imports.plausible import read_export
from appliance.imports.runner import Importer
from appliance.imports.site_archive import import_site
from appliance.imports.sources import ImportFailure
from appliance.models import Event, EventKind
from appliance.periods import day_number, day_start_timestamp
from appliance.query.spec import Query
from appliance.runtime.jobs import purge_expired

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "plausible_export"
FIRST, LAST = date(2025, 3, 1), date(2025, 3, 3)


def make_zip(path: Path, replace: dict[str, str] | None = None, folder: str = "") -> Path:
    """The fixture as a zip (``replace``: a table's text instead of the fixture's)."""
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        for csv_file in sorted(FIXTURE.glob("*.csv")):
            table = csv_file.name.split("_2025")[0]
            archive.writestr(folder + csv_file.name, (replace or {}).get(table, csv_file.read_text()))
    return path


def fixture_rows(table: str) -> list[dict[str, str]]:
    (found,) = FIXTURE.glob(f"imported_{table}_2*.csv")
    with open(found, newline="") as handle:
        return list(csv.DictReader(handle))


def fixture_sum(table: str, column: str, **where: str) -> int:
    return sum(int(row[column]) for row in fixture_rows(table) if all(row[k] == v for k, v in where.items()))


@pytest.fixture
def appliance(make_appliance):
    return make_appliance()


@pytest.fixture
def site(appliance):
    return appliance.sites.add("example.com", timezone="UTC", retention_days=3650)


def _query(site, **extra) -> Query:
    return Query(site=site, date_from=FIRST, date_to=LAST, **extra)


def test_reads_every_table_and_reports_rows_and_days(tmp_path):
    summaries, digest = read_export(str(make_zip(tmp_path / "export.zip", folder="plausible_export/")), "export.zip")
    assert len(digest) == 64
    assert set(summaries) == {"visitors", "sources", "pages", "entry_pages", "exit_pages", "locations", "devices",
                              "browsers", "operating_systems", "custom_events"}
    assert summaries["visitors"].rows == 3 and len(summaries["visitors"].days) == 3
    assert summaries["sources"].rows == 6 and summaries["custom_events"].rows == 3


@pytest.mark.parametrize(
    ("table", "text", "expected"),
    [
        ("imported_visitors", "date,visitors,pageviews\n2025-03-01,1,2\n",
         "imported_visitors_20250301_20250303.csv:1: wrong column set for imported_visitors: missing bounces"),
        ("imported_devices", "date,device,visitors,visits,visit_duration,bounces,colour\n",
         ":1: wrong column set for imported_devices: unknown colour"),
        ("imported_pages", "date,page,visitors,pageviews\n2025-03-01,/,1,2\n2025-03-02,/,x,2\n",
         "imported_pages_20250301_20250303.csv:3: visitors: not a whole number ≥ 0: 'x'"),
        ("imported_pages", "date,page,visitors,pageviews\n2025-03-01,/,-1,2\n", ":2: visitors: not a whole number"),
        ("imported_exit_pages", "date,exit_page,visitors,exits\n03/01/2025,/,1,1\n",
         ":2: date: not a date (YYYY-MM-DD): '03/01/2025'"),
        ("imported_custom_events", "date,name,visitors,events\n2025-03-01,Signup,1\n", ":2: 3 fields, the header has 4"),
        ("imported_pages", "date,page,visitors,pageviews,time_on_page\n2025-03-01,/,1,2,abc\n",
         ":2: time_on_page: not a number ≥ 0: 'abc'"),
    ],
)
def test_a_bad_file_is_refused_naming_file_and_line_and_nothing_is_written(
    appliance, site, tmp_path, table, text, expected
):
    path = make_zip(tmp_path / "bad.zip", {table: text})
    with pytest.raises(ImportFailure) as failure:
        Importer.of(appliance).run("plausible", str(path), site)
    assert expected in failure.value.message and "bad.zip/" in failure.value.message
    with appliance.store.read() as txn:
        assert appliance.imported.day_range(txn, site.id) is None
    assert appliance.stats.aggregate(_query(site))["visitors"] == 0


def test_a_truncated_zip_or_a_stranger_file_is_refused(appliance, site, tmp_path):
    whole = make_zip(tmp_path / "whole.zip").read_bytes()
    truncated = tmp_path / "truncated.zip"
    truncated.write_bytes(whole[: len(whole) * 2 // 3])
    with pytest.raises(ImportFailure, match="truncated.zip"):
        Importer.of(appliance).run("plausible", str(truncated), site)
    stranger = tmp_path / "stranger.zip"
    with zipfile.ZipFile(stranger, "w") as archive:
        archive.writestr("imported_visitors.csv", (FIXTURE / "imported_visitors_20250301_20250303.csv").read_text())
        archive.writestr("notes.txt", "hello")
    with pytest.raises(ImportFailure, match="stranger.zip/notes.txt: not a table of a Plausible CSV export"):
        Importer.of(appliance).run("plausible", str(stranger), site)
    with appliance.store.read() as txn:
        assert appliance.imported.day_range(txn, site.id) is None


def test_dry_run_writes_nothing_then_import_is_idempotent(appliance, site, tmp_path):
    path = str(make_zip(tmp_path / "export.zip"))
    importer = Importer.of(appliance)
    dry = importer.run("plausible", path, site, dry_run=True)
    assert dry.dry_run and dry.lines == sum(len(fixture_rows(t)) for t in ("visitors", "sources", "pages",
                                                                          "entry_pages", "exit_pages", "locations",
                                                                          "devices", "browsers", "operating_systems",
                                                                          "custom_events"))
    assert dry.tables["visitors"] == {"rows": 3, "days": 3, "first_day": "2025-03-01", "last_day": "2025-03-03"}
    assert appliance.stats.aggregate(_query(site))["visitors"] == 0
    first = importer.run("plausible", path, site)
    assert not first.already_imported
    before = appliance.stats.aggregate(_query(site))
    again = importer.run("plausible", path, site)
    assert again.already_imported
    # the same tables in another zip (another hash): the days' rows are replaced, not added
    other = importer.run("plausible", str(make_zip(tmp_path / "copy.zip", folder="again/")), site)
    assert not other.already_imported
    assert appliance.stats.aggregate(_query(site)) == before


def test_stats_add_imported_days_to_native_ones(appliance, site, tmp_path):
    Importer.of(appliance).run("plausible", str(make_zip(tmp_path / "export.zip")), site)
    # one native page view on the last imported day
    at = day_start_timestamp(LAST, "UTC") + 3600
    appliance.record_sync([Event(kind=EventKind.PAGEVIEW, name="pageview", site_id=site.id, timestamp=at, visitor_id=7,
                                 hostname="example.com", path="/pricing", source="Google", browser="Chrome",
                                 country="DE", device="Desktop", os="Mac")])
    stats = appliance.stats
    totals = stats.aggregate(_query(site))
    assert totals["visitors"] == fixture_sum("visitors", "visitors") + 1
    assert totals["pageviews"] == fixture_sum("visitors", "pageviews") + 1
    assert totals["visits"] == fixture_sum("visitors", "visits") + 1
    assert totals["events"] == fixture_sum("custom_events", "events")
    series = stats.timeseries(_query(site))
    assert [point["visitors"] for point in series] == [10, 8, 12 + 1]
    assert [point["pageviews"] for point in series] == [25, 20, 30 + 1]
    assert stats.timeseries(_query(site, interval="month"))[0]["pageviews"] == 76
    pages = {row["value"]: row for row in stats.breakdown(_query(site), "page", 10)["results"]}
    assert pages["/pricing"]["pageviews"] == fixture_sum("pages", "pageviews", page="/pricing") + 1
    assert pages["/"]["visitors"] == fixture_sum("pages", "visitors", page="/")
    assert pages["/"]["visits"] == fixture_sum("entry_pages", "entrances", entry_page="/")
    sources = {row["value"]: row["visitors"] for row in stats.breakdown(_query(site), "source", 10)["results"]}
    assert sources["Google"] == fixture_sum("sources", "visitors", source="Google") + 1
    assert sources["Twitter"] == 3
    countries = {row["value"]: row["visitors"] for row in stats.breakdown(_query(site), "country", 10)["results"]}
    assert countries == {"DE": 22 + 1, "FR": 4, "US": 4}
    for dimension, table, column in (("device", "devices", "device"), ("browser", "browsers", "browser"),
                                     ("os", "operating_systems", "operating_system")):
        rows = {row["value"]: row["visitors"] for row in stats.breakdown(_query(site), dimension, 10)["results"]}
        expected = {}
        for row in fixture_rows(table):
            expected[row[column]] = expected.get(row[column], 0) + int(row["visitors"])
        expected[{"device": "Desktop", "browser": "Chrome", "os": "Mac"}[dimension]] += 1
        assert rows == expected, dimension
    entries = {row["value"]: row for row in stats.entry_pages(_query(site))}
    assert entries["/"]["visits"] == 30 and entries["/"]["bounce_rate"] == round(100 * 10 / 30, 2)
    exits = {row["value"]: row for row in stats.exit_pages(_query(site))}
    assert exits["/pricing"]["exits"] == 21 + 1
    events = {row["name"]: row for row in stats.custom_events(_query(site))}
    assert events["Signup"] == {"name": "Signup", "events": 5, "visitors": 5}
    assert stats.imported_meta(_query(site), "aggregate") == {
        "start_date": "2025-03-01", "end_date": "2025-03-03", "included": True}


def test_queries_imported_tables_cannot_answer_leave_imported_days_out(appliance, site, tmp_path):
    Importer.of(appliance).run("plausible", str(make_zip(tmp_path / "export.zip")), site)
    stats = appliance.stats
    filtered = _query(site, filters=parse_filters("browser==Firefox"))
    assert stats.aggregate(filtered)["visitors"] == 0
    assert stats.breakdown(filtered, "page", 10)["results"] == []
    meta = stats.imported_meta(filtered, "breakdown", "page")
    assert meta["included"] is False and "cannot be filtered" in meta["reason"]
    assert stats.breakdown(_query(site), "utm_medium", 10)["results"] == []
    assert "no utm_medium breakdown" in stats.imported_meta(_query(site), "breakdown", "utm_medium")["reason"]
    assert all(point["visitors"] == 0 for point in stats.timeseries(_query(site, interval="hour")))
    # a range without imported days: no meta at all
    later = Query(site=site, date_from=date(2025, 4, 1), date_to=date(2025, 4, 2))
    assert stats.imported_meta(later, "aggregate") is None


def test_deleting_the_site_deletes_its_imported_days(appliance, site, tmp_path):
    Importer.of(appliance).run("plausible", str(make_zip(tmp_path / "export.zip")), site)
    appliance.delete_site(site.domain)
    with appliance.store.read() as txn:
        assert appliance.imported.day_range(txn, site.id) is None
        assert list(appliance.imported.items(txn, site.id)) == []


def test_site_archives_carry_imported_aggregates(make_appliance, tmp_path):
    source = make_appliance()
    site = source.sites.add("moving.example", timezone="UTC")
    Importer.of(source).run("plausible", str(make_zip(tmp_path / "export.zip")), site)
    archive = tmp_path / "site.zip"
    counts = export_site(source, site.domain, archive)
    assert counts["imported rows"] > 0
    with zipfile.ZipFile(archive) as zipped:
        assert "imported/imported_visitors.csv" in zipped.namelist()
    target = make_appliance()
    result = import_site(target, archive)
    assert result["imported_rows"] == counts["imported rows"]
    moved = target.sites.get(site.domain)
    with source.store.read() as one, target.store.read() as other:
        assert list(source.imported.items(one, site.id)) == list(target.imported.items(other, moved.id))
    query, moved_query = _query(site), _query(moved)
    for dimension in ("page", "source", "country", "browser"):
        assert source.stats.breakdown(query, dimension, 10) == target.stats.breakdown(moved_query, dimension, 10)
    assert source.stats.aggregate(query) == target.stats.aggregate(moved_query)


def test_the_traffic_reports_totals_include_imported_days(appliance, site, tmp_path):
    Importer.of(appliance).run("plausible", str(make_zip(tmp_path / "export.zip")), site)
    report = appliance.stats.traffic_report(_query(site))
    assert report["total_visitors"] == fixture_sum("visitors", "visitors")
    assert report["total_page_views"] == fixture_sum("visitors", "pageviews")


def test_a_byte_order_mark_and_decimal_extras_are_read(appliance, site, tmp_path):
    pages = "\ufeffdate,page,visitors,pageviews,time_on_page\n2025-03-01,/,1,2,12.5\n2025-03-02,/,2,3,\\N\n"
    path = make_zip(tmp_path / "bom.zip", {"imported_pages": pages})
    report = Importer.of(appliance).run("plausible", str(path), site)
    assert report.tables["pages"]["rows"] == 2
    rows = {row["value"]: row for row in appliance.stats.breakdown(_query(site), "page", 10)["results"]}
    assert rows["/"]["pageviews"] == 5


def test_a_top_imported_value_meets_its_native_side_outside_the_native_top(appliance, site, tmp_path):
    at = day_start_timestamp(LAST, "UTC") + 3600
    events = [Event(kind=EventKind.PAGEVIEW, name="pageview", site_id=site.id, timestamp=at + n, visitor_id=n,
                    hostname="example.com", path=f"/native-{n % 25}") for n in range(50)]
    events.append(Event(kind=EventKind.PAGEVIEW, name="pageview", site_id=site.id, timestamp=at + 60, visitor_id=99,
                        hostname="example.com", path="/big"))
    appliance.record_sync(events)
    pages = "date,page,visitors,pageviews\n2025-03-02,/big,100,150\n"
    entries = "date,entry_page,visitors,entrances,visit_duration,bounces\n"
    path = make_zip(tmp_path / "big.zip", {"imported_pages": pages, "imported_entry_pages": entries})
    Importer.of(appliance).run("plausible", str(path), site)
    result = appliance.stats.breakdown(_query(site), "page", 5)
    assert result["results"][0]["value"] == "/big"
    assert (result["results"][0]["visitors"], result["results"][0]["pageviews"]) == (101, 151)
    assert result["rest"] == {"values": 25 + 1 - 5, "pageviews": 50 + 1 + 150 - sum(
        row["pageviews"] for row in result["results"])}


def test_retention_removes_imported_days_before_the_cutoff(appliance, site, tmp_path):
    Importer.of(appliance).run("plausible", str(make_zip(tmp_path / "export.zip")), site)
    kept_from = date(2025, 3, 2)
    kept = appliance.stats.aggregate(Query(site=site, date_from=kept_from, date_to=LAST, imported=True))
    assert kept["visitors"] > 0
    cutoff = day_start_timestamp(kept_from, site.timezone) + 3600  # inside the 2nd: the 1st expires
    removed = purge_expired(appliance, cutoff + site.retention_days * 86400)
    assert removed["imported"] > 0
    with appliance.store.read() as txn:
        assert appliance.imported.day_range(txn, site.id) == (day_number(kept_from), day_number(LAST))
    whole_month = Query(site=site, date_from=date(2025, 3, 1), date_to=date(2025, 3, 31), imported=True)
    assert appliance.stats.aggregate(_query(site, imported=True)) == kept
    assert appliance.stats.aggregate(whole_month) == kept  # the month rows were rewritten too
    purge_expired(appliance, day_start_timestamp(date(2025, 4, 1), site.timezone) + site.retention_days * 86400)
    with appliance.store.read() as txn:
        assert appliance.imported.day_range(txn, site.id) is None
        assert list(appliance.imported.items(txn, site.id)) == []
