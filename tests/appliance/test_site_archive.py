"""Moving a whole site: ``site export`` on one data dir, ``site import`` on another, and every
report — top line, breakdowns, goals, funnels, segments — answers the same."""

from __future__ import annotations

import zipfile
from datetime import date, timedelta

import pytest

from appliance.cli.demo import fill_demo_site
from appliance.definitions.funnels import FunnelInput, Step
from appliance.definitions.goals import GoalInput
from appliance.definitions.segments import Condition, SegmentInput
from appliance.exports.site_archive import export_site
from appliance.filters import parse_filters
from appliance.imports.site_archive import import_site
from appliance.imports.sources import ImportFailure
from appliance.query.spec import Query


def _reports(appliance, domain: str, first: date, last: date, segment_id: int) -> dict:
    site = appliance.sites.get(domain)
    stats = appliance.stats
    plain = Query(site=site, date_from=first, date_to=last)
    out = {
        "aggregate": stats.aggregate(plain),
        "timeseries": stats.timeseries(plain),
        "pages": stats.breakdown(plain, "page", 50),
        "sources": stats.breakdown(plain, "source", 50),
        "entry": stats.entry_pages(plain, 50),
        "events": stats.custom_events(plain),
        "goals": [{k: v for k, v in row.items() if k != "goal_id"} for row in appliance.goal_reports.report(plain)],
        "funnels": [{k: v for k, v in stats.funnel(plain, funnel).items() if k not in ("id", "funnel_id")}
                    for funnel in appliance.funnels.list(site.id)],
    }
    for text in ("page==/pricing", "channel==Organic Search", f"segment=={segment_id}"):
        out[text] = stats.aggregate(Query(site=site, date_from=first, date_to=last, filters=parse_filters(text)))
    return out


def test_a_site_moves_between_data_dirs_with_every_report_identical(make_appliance, tmp_path):
    source = make_appliance()
    site = source.sites.add("moving.example", name="Moving", timezone="America/New_York", retention_days=200)
    signup = source.goals.create(site.id, GoalInput(name="Signed up", kind="event", event="Signup"))
    source.goals.create(site.id, GoalInput(name="Pricing", kind="page", page="/pricing"))
    source.funnels.create(site.id, FunnelInput(name="To signup", steps=[
        Step(kind="page", value="/"), Step(kind="goal", value=str(signup.id))]))
    segment = source.segments.create(site.id, SegmentInput(
        name="Converted", conditions=[Condition(kind="completed_goal", value=str(signup.id))], materialised=True))
    source.goals.wait()
    fill_demo_site(source, site, days=3, visits_per_day=40, seed=3)
    source.stats.materialiser.wait()
    archive = tmp_path / "moving.zip"
    counts = export_site(source, "moving.example", archive)
    assert counts["events"] == len(source.read_events(site, 0, 2**40)) and counts["goals"] == 2
    with zipfile.ZipFile(archive) as zipped:
        assert sorted(zipped.namelist()) == ["events.ndjson", "manifest.json"]

    target = make_appliance()
    result = import_site(target, archive)
    assert result["events"] == counts["events"] and (result["goals"], result["funnels"], result["segments"]) == (2, 1, 1)
    moved = target.sites.get("moving.example")
    assert (moved.name, moved.timezone, moved.retention_days) == ("Moving", "America/New_York", 200)
    moved_segment = target.segments.list(moved.id)[0]
    today = date.today()
    first = today - timedelta(days=4)
    assert _reports(source, "moving.example", first, today, segment.id) == _reports(
        target, "moving.example", first, today, moved_segment.id)
    with pytest.raises(Exception, match="already"):
        import_site(target, archive)  # the domain is taken


def test_a_truncated_archive_creates_no_site(make_appliance, tmp_path):
    source = make_appliance()
    site = source.sites.add("cut.example")
    fill_demo_site(source, site, days=2, visits_per_day=30, seed=5)
    archive = tmp_path / "cut.zip"
    export_site(source, "cut.example", archive)
    archive.write_bytes(archive.read_bytes()[:-200])
    target = make_appliance()
    with pytest.raises(ImportFailure, match="cut.zip"):
        import_site(target, archive)
    assert target.sites.get("cut.example") is None
