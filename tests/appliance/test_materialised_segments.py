"""Materialised segments answer from counters and sketches exactly what the scan path answers
for the same segment (small sets, where sketches are exact), through late events, today's
open tail, compaction and a changed definition."""

from __future__ import annotations

import random
import time
from datetime import timedelta

import pytest

from appliance.definitions.common import DefinitionError
from appliance.definitions.goals import GoalInput
from appliance.definitions.segments import Condition, SegmentInput
from appliance.filters import make_filter
from appliance.models import Event, EventKind
from appliance.periods import day_number, local_today
from appliance.query.spec import Query
from appliance.runtime.jobs import compact_closed_days, materialise_segments

DEFINITIONS = [
    {"conditions": [Condition(kind="did_event", value="Signup")]},
    {"filters": [["is_not", "country", ["DE"]]]},
    {"filters": [["matches", "page", ["/blog/*"]]], "conditions": [Condition(kind="min_pageviews", value="2")]},
    {"filters": [["is", "exit_page", ["/pricing"]]]},
    {"conditions": [Condition(kind="channel", value="Organic Search"), Condition(kind="min_duration", value="60")]},
]


def _visits(site, rng, start: float, end: float, visitors: int = 60) -> list[Event]:
    events = []
    for visitor in range(1, visitors + 1):
        when = start + rng.random() * (end - start)
        channel = rng.choice(["Direct", "Organic Search", "Referral"])
        country = rng.choice(["DE", "FR", "US"])
        for _ in range(rng.randint(1, 3)):  # visits of this visitor
            for step in range(rng.randint(1, 5)):
                kind = rng.choice([EventKind.PAGEVIEW] * 4 + [EventKind.CUSTOM, EventKind.CONVERSION, EventKind.ENGAGEMENT])
                if step == 0:
                    kind = EventKind.PAGEVIEW
                name = {EventKind.PAGEVIEW: "pageview", EventKind.CUSTOM: "Signup", EventKind.CONVERSION: "purchase"}
                events.append(
                    Event(
                        kind=kind,
                        site_id=site.id,
                        timestamp=when,
                        name=name.get(kind, "engagement"),
                        visitor_id=visitor * 7919,
                        path=rng.choice(["/", "/blog/a", "/blog/b", "/pricing"]),
                        channel=channel,
                        country=country,
                        revenue=500 if kind is EventKind.CONVERSION else 0,
                        currency="EUR" if kind is EventKind.CONVERSION else "",
                    )
                )
                when += rng.choice([20, 90, 400])
            when += rng.choice([3600, 4 * 3600])  # the next visit, after the timeout
    return sorted(events, key=lambda e: e.timestamp)


def _pair(appliance, site, definition):
    segments = appliance.segments
    plain = segments.create(site.id, SegmentInput(name="scan", **definition))
    kept = segments.create(site.id, SegmentInput(name="kept", materialised=True, **definition))
    appliance.stats.materialiser.wait()
    return plain, kept


def _through(site, segment, first, last, interval="day"):
    return Query(site=site, date_from=first, date_to=last, interval=interval, filters=[make_filter("is", "segment", [str(segment.id)])])


def _same(appliance, site, plain, kept, first, last):
    stats = appliance.stats
    for interval in ("day", "week", "month"):
        scanned = stats.timeseries(_through(site, plain, first, last, interval))
        assert stats.timeseries(_through(site, kept, first, last, interval)) == scanned
    scanned = stats.aggregate(_through(site, plain, first, last))
    assert stats.aggregate(_through(site, kept, first, last)) == scanned
    return scanned


@pytest.fixture
def site_with_history(appliance):
    site = appliance.sites.add("kept.test", timezone="Europe/Berlin")
    rng = random.Random(11)
    now = time.time()
    appliance.record_sync(_visits(site, rng, now - 6 * 86400, now - 2 * 86400))
    return appliance, site


@pytest.mark.parametrize("definition", DEFINITIONS)
def test_materialised_answers_equal_the_scan_path(site_with_history, definition):
    appliance, site = site_with_history
    plain, kept = _pair(appliance, site, definition)
    materialiser = appliance.stats.materialiser
    assert materialiser.status(kept)["status"] == "complete"
    today = local_today(site.timezone)
    first, last = today - timedelta(days=8), today
    assert appliance.stats.materialised.aggregate(_through(site, kept, first, last), kept) is not None  # served from counters
    result = _same(appliance, site, plain, kept, first, last)
    assert result["visits"] > 0
    # today's open visits come from a scan of the days after the last materialised one
    rng = random.Random(12)
    appliance.record_sync(_visits(site, rng, time.time() - 600, time.time() - 10, visitors=20))
    _same(appliance, site, plain, kept, first, last)
    # compaction changes nothing
    compact_closed_days(appliance)
    appliance.stats.scans.forget()
    _same(appliance, site, plain, kept, first, last)


def test_a_late_event_makes_its_day_stale_until_materialised_again(site_with_history):
    appliance, site = site_with_history
    plain, kept = _pair(appliance, site, DEFINITIONS[0])
    today = local_today(site.timezone)
    first, last = today - timedelta(days=8), today
    late = Event(
        kind=EventKind.CUSTOM, site_id=site.id, timestamp=time.time() - 4 * 86400, name="Signup", visitor_id=999_983, path="/"
    )
    appliance.record_sync([late])
    assert appliance.stats.materialised.aggregate(_through(site, kept, first, last), kept) is None  # stale: the scan answers
    _same(appliance, site, plain, kept, first, last)
    assert materialise_segments(appliance)["days"] >= 1
    assert appliance.stats.materialised.aggregate(_through(site, kept, first, last), kept) is not None
    _same(appliance, site, plain, kept, first, last)


def test_a_changed_definition_is_materialised_again(site_with_history):
    appliance, site = site_with_history
    segments = appliance.segments
    _, kept = _pair(appliance, site, DEFINITIONS[0])
    changed = segments.change(site.id, kept.id, SegmentInput(name="kept", materialised=True, **DEFINITIONS[1]))
    assert changed.counter_id != kept.counter_id
    plain = segments.create(site.id, SegmentInput(name="scan 2", **DEFINITIONS[1]))
    appliance.stats.materialiser.wait()
    today = local_today(site.timezone)
    _same(appliance, site, plain, changed, today - timedelta(days=8), today)
    segments.delete(site.id, changed.id)
    assert not [key for key, _ in appliance.records.scan("segment-day") if key.startswith(f"{site.id:010d}/{changed.counter_id:010d}/")]


def test_period_dependent_segments_cannot_be_materialised(appliance):
    site = appliance.sites.add("refused.test")
    with pytest.raises(DefinitionError) as raised:
        appliance.segments.create(
            site.id, SegmentInput(name="new", materialised=True, conditions=[Condition(kind="visitor_type", value="new")])
        )
    assert raised.value.field == "materialised"


def test_a_changed_goal_makes_a_segment_that_tests_it_stale(site_with_history):
    appliance, site = site_with_history
    goal = appliance.goals.create(site.id, GoalInput(name="Pricing", kind="page", page="/pricing"))
    appliance.goals.wait()
    plain, kept = _pair(appliance, site, {"conditions": [Condition(kind="completed_goal", value=str(goal.id))]})
    materialiser = appliance.stats.materialiser
    today = local_today(site.timezone)
    first, last = today - timedelta(days=8), today
    assert appliance.stats.materialised.aggregate(_through(site, kept, first, last), kept) is not None
    appliance.goals.change(site.id, goal.id, GoalInput(name="Pricing", kind="page", page="/blog/*"))
    appliance.goals.wait()
    first_day, last_day = day_number(first), day_number(today) - 3

    def fresh():
        with appliance.store.read() as txn:
            return materialiser.fresh_days(txn, site, kept, first_day, last_day)

    assert fresh() != set(range(first_day, last_day + 1))  # the days it materialised are stale now
    _same(appliance, site, plain, kept, first, last)  # (the scan answers for them)
    materialise_segments(appliance)
    assert fresh() == set(range(first_day, last_day + 1))
    _same(appliance, site, plain, kept, first, last)


def test_a_century_of_retention_materialises_from_1970(appliance):
    """Retention reaches back before 1970 (up to 36 500 days): materialising starts at the
    first day a query may cover instead of failing on the days before it."""
    site = appliance.sites.add("century.test", retention_days=36_500)
    segment = appliance.segments.create(
        site.id, SegmentInput(name="century", materialised=True, filters=[["is", "page", ["/"]]])
    )
    progress: dict = {}
    appliance.segments.materialiser.run(segment, progress)
    assert progress["status"] == "complete"
