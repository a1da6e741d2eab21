"""Kept answers of the filtered path (appliance/query/memo.py) and the column-block cache's
eviction order: a kept answer is always what a fresh scan gives, and a period a little larger
than the cache still reads most of its blocks from memory."""

from __future__ import annotations

import gc
import random
import time
from datetime import timedelta

import pytest

from appliance.definitions.goals import GoalInput
from appliance.definitions.segments import Condition, SegmentInput
from appliance.events.blocks import Block
from appliance.filters import parse_filters
from appliance.models import Event, EventKind
from appliance.periods import local_today
from appliance.query.spec import Query
from appliance.runtime.jobs import compact_closed_days
from tests.appliance.test_columns import _events, _reports


@pytest.fixture
def filled(appliance):
    site = appliance.sites.add("memo.test", timezone="Europe/Berlin")
    appliance.record_sync(_events(site, random.Random(9), 3000, time.time() - 5 * 86400, 5 * 86400 - 60))
    return appliance, site


def _week(site, text):
    today = local_today(site.timezone)
    return Query(site=site, date_from=today - timedelta(days=7), date_to=today, filters=parse_filters(text))


def test_a_repeated_filtered_report_is_answered_from_memory_and_equals_a_fresh_scan(filled):
    appliance, site = filled
    memo = appliance.stats.scans.memo
    first = _reports(appliance, site)
    hits = memo.hits
    assert _reports(appliance, site) == first
    assert memo.hits - hits == len(first)  # every report of the second round was kept
    appliance.stats.scans.forget()
    assert len(memo) == 0
    assert _reports(appliance, site) == first  # scanned again: the same answers


def test_a_kept_answer_never_hides_an_acknowledged_event(filled):
    appliance, site = filled
    compact_closed_days(appliance)
    query = _week(site, "page==/memo")
    assert appliance.stats.aggregate(query)["pageviews"] == 0
    assert appliance.stats.aggregate(query)["pageviews"] == 0  # kept
    now = Event(kind=EventKind.PAGEVIEW, site_id=site.id, timestamp=time.time() - 1, name="pageview", visitor_id=11, path="/memo")
    appliance.record_sync([now])
    assert appliance.stats.aggregate(query)["pageviews"] == 1  # today's block changed
    late = Event(kind=EventKind.PAGEVIEW, site_id=site.id, timestamp=time.time() - 3 * 86400, name="pageview", visitor_id=12, path="/memo")
    appliance.record_sync([late])
    assert appliance.stats.aggregate(query)["pageviews"] == 2  # a compacted day's count changed
    result = appliance.stats.aggregate(query)
    result["pageviews"] = -1  # a caller changing its copy changes nothing kept
    assert appliance.stats.aggregate(query)["pageviews"] == 2


def test_a_goal_defined_later_changes_the_kept_answer(filled):
    appliance, site = filled
    query = _week(site, "goal==Pricing")
    assert appliance.stats.aggregate(query)["visitors"] == 0  # no such goal yet
    appliance.goals.create(site.id, GoalInput(kind="page", page="/pricing", name="Pricing"))
    assert appliance.stats.aggregate(query)["visitors"] > 0


def test_a_period_larger_than_the_block_cache_keeps_the_blocks_that_fit(filled, monkeypatch):
    appliance, site = filled
    compact_closed_days(appliance)
    columns, scans = appliance.columns, appliance.stats.scans
    loads = []
    get = columns.blocks.get
    monkeypatch.setattr(columns.blocks, "get", lambda *args: loads.append(args[2:4]) or get(*args))
    query = _week(site, "country==DE")
    scans.forget()
    scans.aggregate(query)
    cold_days = {day for day, _ in loads}
    assert len(cold_days) >= 3
    # two thirds of the stored blocks fit, beside today's block from the log (late in the
    # site's day that one is the largest: a bound on all bytes would leave no room)
    stored = sum(block.nbytes() for block in columns.cache.blocks() if block.day in cold_days)
    columns.cache.limit_bytes = columns.cache.cached_bytes - stored + stored * 2 // 3
    for _ in range(4):
        loads.clear()
        scans.memo.clear()  # scan again: only the block cache is left to help
        scans.aggregate(query)
    # plain LRU would load every block, every time; here a third of them stay in memory
    assert len(cold_days - {day for day, _ in loads}) >= len(cold_days) // 3
    assert columns.cache.cached_bytes <= columns.cache.limit_bytes


def test_blocks_the_cache_lets_go_are_freed_without_the_cycle_collector(filled):
    """The writing process collects cycles rarely (runtime/collector.py): a block the cache
    drops must be freed by reference counting alone, or a query's blocks outlive the budget."""
    appliance, site = filled
    compact_closed_days(appliance)
    columns, scans = appliance.columns, appliance.stats.scans
    scans.forget()
    gc.collect()
    gc.disable()
    try:
        columns.cache.limit_bytes = 1  # one block stays
        for text in ("entry_page==/a", "country==DE;source==Google", "page==/b/*"):  # visits decoded
            scans.aggregate(_week(site, text))
            scans.breakdown(_week(site, text), "source", 10)
        alive = [obj for obj in gc.get_objects() if isinstance(obj, Block)]
        assert len(alive) <= len(columns.cache)
    finally:
        gc.enable()


def test_a_segment_answer_follows_events_before_the_period(filled):
    """A ``visitor_type`` condition reads the 30 days before the period: an event there
    (a visitor seen earlier, so now returning) changes the kept answer."""
    appliance, site = filled
    segment = appliance.segments.create(
        site.id, SegmentInput(name="Returning", conditions=[Condition(kind="visitor_type", value="returning")])
    )
    query = _week(site, f"segment=={segment.id}")
    visit = Event(kind=EventKind.PAGEVIEW, site_id=site.id, timestamp=time.time() - 60, name="pageview", visitor_id=4242, path="/x")
    appliance.record_sync([visit])
    before = appliance.stats.aggregate(query)["visitors"]
    earlier = Event(kind=EventKind.PAGEVIEW, site_id=site.id, timestamp=time.time() - 12 * 86400, name="pageview", visitor_id=4242, path="/x")
    appliance.record_sync([earlier])
    assert appliance.stats.aggregate(query)["visitors"] == before + 1


def test_kept_answers_are_bounded_in_bytes():
    from appliance.query.memo import ReportMemo

    memo = ReportMemo(max_entries=100, max_bytes=10_000, max_entry_bytes=4_000)
    for number in range(50):
        memo.put(("report", number), {"rows": "x" * 1_000})
    assert memo.bytes <= 10_000 and 0 < len(memo) < 50
    assert memo.get(("report", 49)) == {"rows": "x" * 1_000} and memo.get(("report", 0)) is None
    memo.put(("big",), "y" * 5_000)  # over max_entry_bytes: not kept
    assert memo.get(("big",)) is None


def test_a_kept_answer_reads_no_block(filled, monkeypatch):
    """The key is read from counters and block pointers: a kept answer costs no block built
    from the log or loaded (after a bulk load the cache may hold none of the period's)."""
    appliance, site = filled
    query = _week(site, "country==DE;source==Google")
    first = appliance.stats.aggregate(query)

    def no_block(*args):
        raise AssertionError(f"block {args} read for a kept answer")

    monkeypatch.setattr(appliance.columns, "block", no_block)
    assert appliance.stats.aggregate(query) == first


def test_a_filtered_goal_report_is_kept_and_follows_its_goals(filled):
    """The dashboard's goal widget under a filter scans like the reports of the vocabulary:
    asked again with nothing changed, it is a kept answer; a new goal changes it."""
    appliance, site = filled
    appliance.goals.create(site.id, GoalInput(kind="page", page="/pricing", name="Pricing"))
    appliance.goals.wait()  # a finished back-fill changes the goal's definition, hence the key
    memo = appliance.stats.scans.memo
    query = _week(site, "country==DE")

    def figures():
        return appliance.goal_reports.report(query)

    first = figures()
    hits = memo.hits
    assert figures() == first
    assert memo.hits == hits + 1
    appliance.stats.scans.forget()
    assert figures() == first  # scanned again: the same rows
    appliance.goals.create(site.id, GoalInput(kind="event", event="Signup", name="Signup"))
    assert [row["name"] for row in appliance.goal_reports.report(query)] == ["Pricing", "Signup"]
