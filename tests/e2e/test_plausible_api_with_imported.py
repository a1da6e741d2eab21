"""Plausible's Stats API v1 over a site holding imported and native data: ``with_imported``
(absent or false leaves imported days out, as Plausible's default; true adds them where the
query allows, and otherwise answers without them and a ``warning``), and the time series'
bounce rate, visit duration and events (Plausible's: page views and custom events), equal to the
aggregate of each bucket's days.

The site gets Plausible's CSV export (2025-03-01 to 03, the fixture) with ``footfall import
plausible`` and native page views of 2025-03-02 and 2025-03-05 from an access log.
"""

from __future__ import annotations

from datetime import date, timedelta

import httpx
import pytest

from tests.appliance.test_plausible_import import fixture_rows, fixture_sum, make_zip
from tests.servers import footfall_cli, start_server

SITE = "plausible-with-imported.test"
CUSTOM = "2025-03-01,2025-03-07"
FIREFOX = "Mozilla/5.0 (X11; Linux x86_64; rv:125.0) Gecko/20100101 Firefox/125.0"
CHROME = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36"
# (address, time, path, referrer, agent): on 2025-03-02 a two-page visit (120 s) and a bounce,
# on 2025-03-05 a two-page visit (330 s)
HITS = [
    ("5.9.0.1", "02/Mar/2025:10:00:00", "/", "https://www.google.com/", FIREFOX),
    ("5.9.0.1", "02/Mar/2025:10:02:00", "/blog/one", "-", FIREFOX),
    ("5.9.0.2", "02/Mar/2025:11:00:00", "/pricing", "-", CHROME),
    ("5.9.0.3", "05/Mar/2025:09:00:00", "/", "-", CHROME),
    ("5.9.0.3", "05/Mar/2025:09:05:30", "/pricing", "-", CHROME),
]
NATIVE = {"visitors": 3, "visits": 3, "pageviews": 5}
IMPORTED = {name: fixture_sum("visitors", name) for name in ("visitors", "visits", "pageviews")}
QUERY_WARNING = ("Imported stats are not included in the results because query parameters are not supported. "
                 "For more information, see: https://plausible.io/docs/stats-api#filtering-imported-stats")


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    folder = tmp_path_factory.mktemp("plausible-with-imported")
    data = folder / "data"
    added = footfall_cli("site", "add", SITE, "--timezone", "UTC", "--retention-days", "3650", data_dir=data)
    assert added.returncode == 0, added.stderr
    export = make_zip(folder / "example_com_20250304.zip")
    imported = footfall_cli("import", "plausible", str(export), "--site", SITE, data_dir=data)
    assert imported.returncode == 0, imported.stderr
    log = folder / "access.log"
    log.write_text("".join(f'{address} - - [{when} +0000] "GET {path} HTTP/1.1" 200 512 "{referrer}" "{agent}"\n'
                           for address, when, path, referrer, agent in HITS))
    native = footfall_cli("import", "access-log", str(log), "--site", SITE, data_dir=data)
    assert native.returncode == 0 and "imported 5 events" in native.stdout, native.stdout + native.stderr
    handle = start_server(data)
    yield handle
    handle.stop()


def api(server, endpoint: str, **params) -> dict:
    answer = httpx.get(f"{server.url}/api/plausible/v1/stats/{endpoint}", params={"site_id": SITE, **params},
                       headers=server.auth(), timeout=30)
    assert answer.status_code == 200, answer.text
    return answer.json()


def values(answer: dict) -> dict[str, object]:
    return {name: entry["value"] for name, entry in answer["results"].items()}


def test_aggregate_leaves_imported_days_out_unless_asked(server):
    metrics = "visitors,visits,pageviews"
    assert values(api(server, "aggregate", period="custom", date=CUSTOM, metrics=metrics)) == NATIVE
    assert values(api(server, "aggregate", period="custom", date=CUSTOM, metrics=metrics, with_imported="false")) == NATIVE
    both = api(server, "aggregate", period="custom", date=CUSTOM, metrics=metrics + ",bounce_rate,events",
               with_imported="true")
    assert "warning" not in both
    assert values(both) == {
        **{name: NATIVE[name] + IMPORTED[name] for name in NATIVE},
        "bounce_rate": round(100 * (1 + fixture_sum("visitors", "bounces")) / (3 + IMPORTED["visits"]), 2),
        # Plausible's events: every page view and custom event, native and imported
        "events": NATIVE["pageviews"] + IMPORTED["pageviews"] + fixture_sum("custom_events", "events"),
    }
    # compared with the week before (nothing there): the change of the imported sums
    compared = api(server, "aggregate", period="custom", date=CUSTOM, metrics="visitors", compare="previous_period",
                   with_imported="true")
    assert compared["results"] == {"visitors": {"value": NATIVE["visitors"] + IMPORTED["visitors"], "change": None}}


def test_a_query_imported_days_cannot_answer_comes_without_them_and_a_warning(server):
    filtered = api(server, "aggregate", period="custom", date=CUSTOM, metrics="visitors",
                   filters="visit:browser==Firefox", with_imported="true")
    assert filtered == {"results": {"visitors": {"value": 1}}, "warning": QUERY_WARNING}
    hourly = api(server, "timeseries", period="day", date="2025-03-02", with_imported="true")
    assert sum(row["visitors"] for row in hourly["results"]) == 2  # native only
    assert hourly["warning"] == ("Imported stats are not included because the time dimension (i.e. the interval) "
                                 "is too short.")
    channels = api(server, "breakdown", period="custom", date=CUSTOM, property="visit:channel", with_imported="true")
    assert channels["warning"] == QUERY_WARNING
    # no warning when not asked for imported data, nor when the range holds none
    assert "warning" not in api(server, "aggregate", period="custom", date=CUSTOM, filters="visit:browser==Firefox")
    assert "warning" not in api(server, "aggregate", period="day", date="2025-03-05", filters="visit:browser==Chrome",
                                with_imported="true")


def test_timeseries_and_breakdown_with_imported(server):
    without = api(server, "timeseries", period="custom", date=CUSTOM, metrics="visitors,pageviews")["results"]
    assert [(row["date"], row["visitors"], row["pageviews"]) for row in without if row["visitors"]] == [
        ("2025-03-02", 2, 3), ("2025-03-05", 1, 2)]
    both = api(server, "timeseries", period="custom", date=CUSTOM, metrics="visitors,pageviews",
               with_imported="true")["results"]
    imported = {row["date"]: (int(row["visitors"]), int(row["pageviews"])) for row in fixture_rows("visitors")}
    for row, native in zip(both, without, strict=True):
        extra = imported.get(row["date"], (0, 0))
        assert (row["visitors"], row["pageviews"]) == (native["visitors"] + extra[0], native["pageviews"] + extra[1])
    sources = api(server, "breakdown", period="custom", date=CUSTOM, property="visit:source")["results"]
    assert {row["source"]: row["visitors"] for row in sources} == {"Google": 1, "Direct / None": 2}
    merged = api(server, "breakdown", period="custom", date=CUSTOM, property="visit:source", with_imported="true")
    assert "warning" not in merged
    by_source = {row["source"]: row["visitors"] for row in merged["results"]}
    assert by_source["Google"] == 1 + fixture_sum("sources", "visitors", source="Google")
    names = api(server, "breakdown", period="custom", date=CUSTOM, property="event:name", metrics="events",
                with_imported="true")["results"]
    assert {"name": "Signup", "events": fixture_sum("custom_events", "events", name="Signup")} in names
    # imported days have no events: a breakdown with `events` answers from events alone, and says so
    counted = api(server, "breakdown", period="custom", date=CUSTOM, property="visit:source", metrics="visitors,events",
                  with_imported="true")
    assert counted["warning"] == QUERY_WARNING
    assert {row["source"]: row["visitors"] for row in counted["results"]} == {"Google": 1, "Direct / None": 2}
    for page_property in ("visit:entry_page", "visit:exit_page"):  # with imported pages; with `events`, without
        pages = api(server, "breakdown", period="custom", date=CUSTOM, property=page_property, metrics="visits",
                    with_imported="true")
        assert pages["results"] and "warning" not in pages, pages
        counted = api(server, "breakdown", period="custom", date=CUSTOM, property=page_property,
                      metrics="visits,events", with_imported="true")
        assert counted["results"] and counted["warning"] == QUERY_WARNING, counted
    goals = api(server, "breakdown", period="custom", date=CUSTOM, property="event:goal", with_imported="true")
    assert goals["warning"] == QUERY_WARNING  # goal completions are counted from events only


def _days(first: str, last: str) -> list[str]:
    start, end = date.fromisoformat(first), date.fromisoformat(last)
    return [(start + timedelta(days=offset)).isoformat() for offset in range((end - start).days + 1)]


@pytest.mark.parametrize("params", [{"with_imported": "true"}, {}, {"filters": "visit:browser==Chrome"}],
                         ids=["with-imported", "native", "filtered"])
def test_timeseries_visit_metrics_equal_the_aggregate_of_each_day(server, params):
    metrics = "visitors,visits,pageviews,views_per_visit,bounce_rate,visit_duration,events"
    series = api(server, "timeseries", period="custom", date=CUSTOM, metrics=metrics, **params)["results"]
    assert [row["date"] for row in series] == _days("2025-03-01", "2025-03-07")
    for row in series:
        day = api(server, "aggregate", period="day", date=row["date"], metrics=metrics, **params)
        assert row == {"date": row["date"], **values(day)}, row["date"]
    busy = {row["date"]: row for row in series}
    if not params:  # the native visits: one of two bounced on the 2nd (120 s), none on the 5th (330 s)
        assert (busy["2025-03-02"]["bounce_rate"], busy["2025-03-02"]["visit_duration"]) == (50.0, 60)
        assert (busy["2025-03-05"]["bounce_rate"], busy["2025-03-05"]["visit_duration"]) == (0.0, 330)
    if params.get("with_imported"):
        assert busy["2025-03-01"]["visit_duration"] == round(600 / 12)
        assert busy["2025-03-01"]["events"] == (fixture_sum("visitors", "pageviews", date="2025-03-01")
                                                + fixture_sum("custom_events", "events", date="2025-03-01"))


def test_timeseries_by_month_and_per_hour(server):
    month = api(server, "timeseries", period="custom", date="2025-03-01,2025-03-31", interval="month",
                metrics="visitors,bounce_rate,visit_duration,events", with_imported="true")["results"]
    whole = values(api(server, "aggregate", period="month", date="2025-03-15",
                       metrics="visitors,bounce_rate,visit_duration,events", with_imported="true"))
    assert month == [{"date": "2025-03-01", **whole}]
    hours = api(server, "timeseries", period="day", date="2025-03-02", metrics="visitors,pageviews,events")["results"]
    assert len(hours) == 24 and sum(row["pageviews"] for row in hours) == 3
    # Plausible's events per hour: the native page views of the hour (no custom events were sent)
    assert [row["events"] for row in hours] == [row["pageviews"] for row in hours]
    refused = httpx.get(f"{server.url}/api/plausible/v1/stats/timeseries", headers=server.auth(),
                        params={"site_id": SITE, "period": "day", "date": "2025-03-02", "metrics": "bounce_rate"})
    assert refused.status_code == 400 and refused.json()["error"]["field"] == "metrics"
    filtered = httpx.get(f"{server.url}/api/plausible/v1/stats/timeseries", headers=server.auth(),
                         params={"site_id": SITE, "period": "day", "date": "2025-03-02", "metrics": "events",
                                 "filters": "visit:browser==Firefox"})
    assert filtered.status_code == 400 and filtered.json()["error"]["field"] == "metrics"
    wrong = httpx.get(f"{server.url}/api/plausible/v1/stats/aggregate", headers=server.auth(),
                      params={"site_id": SITE, "with_imported": "yes"})
    assert wrong.status_code == 400 and wrong.json()["error"]["field"] == "with_imported"
