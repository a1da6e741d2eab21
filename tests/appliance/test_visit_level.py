"""Visit properties and entry / exit pages: the counters kept at aggregation (the live visit
table) and the scans (visits rebuilt from the log or from stored column blocks) agree.

Source, channel, referrer and UTM tags belong to the visit and come from its first event;
an event later in the visit counts with them, whatever it was sent with itself. The entry
page is the first page view's page (the first event's page when the visit has no page
view); the exit page the last page view's (the last event's).
"""

from __future__ import annotations

import time
from datetime import UTC, datetime

import pytest

from appliance.filters import make_filter
from appliance.models import Event, EventKind
from appliance.query.spec import Query

VISITS = {
    # A: from Google; a later page view without a referrer, a custom event with a new one
    101: [(0, EventKind.PAGEVIEW, "/", "Google", "Organic Search", "spring"),
          (60, EventKind.PAGEVIEW, "/a", "", "Direct", ""),
          (90, EventKind.CUSTOM, "/a", "Facebook", "Organic Social", "")],
    # B: a click logged two seconds before its page view, from a referring site
    102: [(0, EventKind.CUSTOM, "/pricing", "news.example", "Referral", ""),
          (2, EventKind.PAGEVIEW, "/pricing", "", "Direct", ""),
          (60, EventKind.PAGEVIEW, "/docs", "", "Direct", "")],
    # C: a server-side conversion alone
    103: [(0, EventKind.CONVERSION, "/pricing", "", "", "")],
    # D: two custom events, no page view
    104: [(0, EventKind.CUSTOM, "/a", "", "", ""), (30, EventKind.CUSTOM, "/b", "", "", "")],
    # E: a click on one page, then the first page view on another
    105: [(0, EventKind.CUSTOM, "/x", "", "Direct", ""), (5, EventKind.PAGEVIEW, "/y", "", "Direct", "")],
}


def _events(site_id: int, base: float) -> list[Event]:
    events = []
    for visitor, rows in VISITS.items():
        for offset, kind, path, source, channel, campaign in rows:
            events.append(Event(
                kind=kind, site_id=site_id, timestamp=base + visitor * 600 + offset,
                name={EventKind.PAGEVIEW: "pageview", EventKind.CUSTOM: "Click"}.get(kind, "purchase"),
                visitor_id=visitor, path=path, source=source, referrer_host=source.lower(),
                channel=channel, utm_campaign=campaign,
            ))
    return events


@pytest.fixture(params=["one batch", "event by event"])
def recorded(appliance, request):
    site = appliance.sites.add(f"visit-props-{request.param.replace(' ', '-')}.test")
    base = time.time() - 3 * 86400
    base -= base % 86400 - 3600  # 01:00 UTC three days ago: every visit on one closed day
    events = _events(site.id, base)
    if request.param == "one batch":
        appliance.record_sync(events)
    else:
        for event in events:
            appliance.record_sync([event])
    day = datetime.fromtimestamp(base, UTC).date()
    return appliance, site, day


EVERYTHING = [make_filter("matches", "event", ["*"])]


def _queries(site, day):
    return Query(site=site, date_from=day, date_to=day), Query(site=site, date_from=day, date_to=day, filters=EVERYTHING)


def _check_reports(appliance, site, day):
    stats = appliance.stats
    for query in _queries(site, day):
        path = "scanned" if query.filters else "counted"
        sources = {row["value"]: (row["visitors"], row["pageviews"], row["visits"]) for row in stats.breakdown(query, "source")["results"]}
        assert sources == {"Google": (1, 2, 1), "news.example": (1, 2, 1), "": (1, 1, 0)}, path
        campaigns = {row["value"]: row["pageviews"] for row in stats.breakdown(query, "utm_campaign")["results"]}
        assert campaigns == {"spring": 2}, path
        assert stats.traffic_report(query)["traffic_sources"] == {"direct": 1, "referral": 1, "search": 1, "social": 0}, path
        entries = {row["value"]: (row["visits"], row["bounce_rate"], row["visit_duration"]) for row in stats.entry_pages(query, 20)}
        assert entries == {"/": (1, 0.0, 90), "/pricing": (2, 0.0, 30), "/a": (1, 0.0, 30), "/y": (1, 0.0, 5)}, path
        exits = {row["value"]: row["exits"] for row in stats.exit_pages(query, 20)}
        assert exits == {"/a": 1, "/docs": 1, "/pricing": 1, "/b": 1, "/y": 1}, path


def test_counters_and_scans_agree_on_visit_properties(recorded):
    appliance, site, day = recorded
    _check_reports(appliance, site, day)
    appliance.columns.compact(site.id, 0, int(time.time() // 86400))  # stored column blocks
    appliance.stats.scans.forget()
    _check_reports(appliance, site, day)


def test_a_source_filter_keeps_whole_visits(recorded):
    appliance, site, day = recorded
    for dimension, value in (("source", "Google"), ("channel", "Organic Search"), ("referrer", "google"), ("utm_campaign", "spring")):
        query = Query(site=site, date_from=day, date_to=day, filters=[make_filter("is", dimension, [value])])
        totals = appliance.stats.aggregate(query)
        assert (totals["visits"], totals["pageviews"], totals["events"]) == (1, 2, 1), dimension
    later = Query(site=site, date_from=day, date_to=day, filters=[make_filter("is", "source", ["Facebook"])])
    assert appliance.stats.aggregate(later)["events"] == 0  # the custom event is in the visit from Google
    negated = Query(site=site, date_from=day, date_to=day, filters=[make_filter("is_not", "source", ["Google"])])
    assert appliance.stats.aggregate(negated)["visits"] == 4


def test_entry_page_filter_and_segment_see_visits_without_a_page_view(recorded):
    appliance, site, day = recorded
    query = Query(site=site, date_from=day, date_to=day, filters=[make_filter("is", "entry_page", ["/pricing"])])
    assert appliance.stats.aggregate(query)["visits"] == 2
    query = Query(site=site, date_from=day, date_to=day, filters=[make_filter("is", "exit_page", ["/b"])])
    assert appliance.stats.aggregate(query)["visits"] == 1


@pytest.mark.parametrize(
    ("filters", "visits", "pageviews"),
    [([["is", "source", ["Google"]]], 1, 2), ([["is", "entry_page", ["/pricing"]]], 2, 2), ([["is", "exit_page", ["/b"]]], 1, 0)],
)
def test_materialised_segments_on_visit_properties(recorded, filters, visits, pageviews):
    from appliance.definitions.segments import SegmentInput

    appliance, site, day = recorded
    for materialised in (False, True):
        segment = appliance.segments.create(site.id, SegmentInput(name=f"m{materialised}", filters=filters, materialised=materialised))
        appliance.stats.materialiser.wait()
        query = Query(site=site, date_from=day, date_to=day, filters=[make_filter("is", "segment", [str(segment.id)])])
        totals = appliance.stats.aggregate(query)
        assert (totals["visits"], totals["pageviews"]) == (visits, pageviews), materialised


def test_goal_breakdown_by_source_uses_the_visits_source(recorded):
    from appliance.definitions.goals import GoalInput

    appliance, site, day = recorded
    goal = appliance.goals.create(site.id, GoalInput(name="Clicked", kind="event", event="Click"))
    appliance.goals.wait()
    rows = appliance.goal_reports.breakdown(Query(site=site, date_from=day, date_to=day), goal, "source")
    assert {row["value"]: (row["visitors"], row["converted_visitors"]) for row in rows} == {
        "Google": (1, 1), "news.example": (1, 1), "": (1, 1)
    }
