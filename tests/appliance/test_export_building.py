"""Report building (appliance/exports/building.py): what a report says it was asked, the names
of its tables' columns, and the errors a caller gets, on an appliance with a few page views."""

from __future__ import annotations

from datetime import UTC, date, datetime

import pytest

from appliance.errors import DomainError
from appliance.exports.building import export, filename, report_from_query, result_report
from appliance.filters import make_filter
from appliance.models import Event, EventKind
from appliance.query.spec import Query

DAY = date(2026, 3, 2)


@pytest.fixture
def site_with_views(appliance):
    site = appliance.sites.add("build.example", timezone="UTC")
    stamp = datetime(2026, 3, 2, 12, tzinfo=UTC).timestamp()
    appliance.record_sync([
        Event(kind=EventKind.PAGEVIEW, site_id=site.id, timestamp=stamp + n, name="pageview", visitor_id=50 + n,
              hostname="build.example", path=("/", "/a")[n % 2], browser="Firefox", channel="Direct")
        for n in range(6)
    ])
    return appliance, site


def test_a_report_says_what_it_was_asked(site_with_views):
    appliance, site = site_with_views
    query = Query(site=site, date_from=DAY, date_to=DAY, filters=[make_filter("is", "page", ["/a"])])
    report = report_from_query(appliance, site, query, metrics=["visitors", "pageviews"], dimensions=["browser"],
                               title="Firefox on /a", notes="weekly")
    assert report.site == "build.example" and report.period == "2026-03-02 (UTC, by day)"
    assert report.filters == ("page is /a",) and report.notes == "weekly"
    assert report.summary == (("Unique visitors", 3), ("Total page views", 3))
    assert [table.title for table in report.tables] == ["Totals", "Time series", "Browser"]
    assert report.tables[2].columns == ("browser", "visitors", "pageviews")
    assert report.tables[2].rows == (("Firefox", 3, 3),)
    assert report.charts and report.charts[0].svg.startswith("<svg") and "<g class=\"point\"" not in report.charts[0].svg


def test_errors_name_the_field(site_with_views):
    appliance, site = site_with_views
    query = Query(site=site, date_from=DAY, date_to=DAY)
    with pytest.raises(DomainError) as raised:
        report_from_query(appliance, site, query, metrics=["happiness"], dimensions=[], title="x")
    assert raised.value.field == "metrics"
    with pytest.raises(DomainError) as raised:
        report_from_query(appliance, site, query, metrics=["visitors"], dimensions=["shoe_size"], title="x")
    assert raised.value.field == "dimensions"
    with pytest.raises(DomainError) as raised:
        export(appliance, result_report(site, query, "Totals", {"visitors": 1}), "docx")
    assert (raised.value.field, raised.value.status) == ("format", 422)


def test_file_names_are_safe(site_with_views):
    appliance, site = site_with_views
    report = result_report(site, Query(site=site, date_from=DAY, date_to=DAY), 'Top "pages"/../x', [])
    name = filename(report, "csv")
    assert name.endswith(".csv") and "/" not in name and '"' not in name and name.startswith("build.example-top-pages-")
