"""Closed days a bulk load has moved past are compacted during the load
(:mod:`appliance.runtime.passed_days`), not two sweeps after it: a month of history sent
oldest day first through the batch path leaves no closed day in the event log, and every
answer is the one the same events give read from the log. A late event for a compacted day
stays a log row beside its block, counted as ever."""

from __future__ import annotations

import time
from datetime import UTC, datetime

from appliance.filters import parse_filters
from appliance.models import Event, EventKind
from appliance.query.spec import Query

SOURCES = ("Google", "Twitter", "")


def _day(site_id: int, day: int, count: int, now: float) -> list[Event]:
    """A day of page views in time order (the last of them before ``now``)."""
    return [
        Event(kind=EventKind.PAGEVIEW, site_id=site_id, timestamp=min(day * 86400 + 3600 + 60 * i, now - 1),
              name="pageview", visitor_id=3000 + i % 37, path=f"/p/{i % 5}", source=SOURCES[i % 3])
        for i in range(count)
    ]


def _load(appliance, site_id: int, days: list[int], now: float) -> None:
    """The batch path: each day in batches of 40, oldest first, then a few of today's."""
    for day in days:
        events = _day(site_id, day, 120, now)
        for start in range(0, len(events), 40):
            appliance.writer.write_sync(events[start : start + 40])
    appliance.writer.write_sync(_day(site_id, int(now // 86400), 3, now))


def _answers(appliance, site, first: int, last: int) -> tuple:
    query = Query(
        site=site, date_from=datetime.fromtimestamp(first * 86400, UTC).date(),
        date_to=datetime.fromtimestamp(last * 86400, UTC).date(), filters=parse_filters("source==Google"),
    )
    stats = appliance.stats
    return stats.aggregate(query), stats.breakdown(query, "page"), stats.timeseries(query)


def _stored(appliance, site_id: int, first: int, last: int) -> tuple[list[int], list[int]]:
    with appliance.store.read() as txn:
        return appliance.columns.blocks.days(txn, site_id, first, last), appliance.columns.log_days(txn, site_id, first, last)


def test_a_bulk_load_has_the_closed_days_it_moved_past_compacted(make_appliance):
    loaded = make_appliance()
    unwatched = make_appliance()  # the same events, left in the log: the uncompacted path
    now = time.time()
    today = int(now // 86400)
    days = [today - 6, today - 5, today - 4, today - 3, today - 2]  # closed whatever the hour
    answers = []
    for appliance in (loaded, unwatched):
        appliance.columns.compact_read_rows = 100  # small days here; 20,000 log rows by default
        appliance.columns.compaction_wanted = None  # no query asks: only the load's days are compacted
        appliance.jobs.passed_days.quiet_seconds = 0  # the test's batches have no stragglers
        site = appliance.sites.add("load.example")
        if appliance is unwatched:
            appliance.recorder.on_commit = None
        _load(appliance, site.id, days, now)
        assert appliance.jobs.compactions.wait(timeout=60)
        answers.append(_answers(appliance, site, today - 7, today))
    site = loaded.sites.get("load.example")

    # every closed day is a block at once: no sweep looked, the hourly run has not happened
    assert _stored(loaded, site.id, today - 7, today - 1) == (days, [])
    assert loaded.jobs.passed_days.days_handed_over == 5
    assert loaded.jobs.last_run == {}
    assert _stored(unwatched, unwatched.sites.get("load.example").id, today - 7, today - 1) == ([], days)
    assert answers[0] == answers[1]
    assert answers[0][0]["pageviews"] == 5 * 40 + 1  # Google's third of each day, and one of today's

    # a late event for a compacted day: a log row beside the block, counted as ever
    late = _day(site.id, today - 4, 1, now)
    loaded.writer.write_sync(late)
    assert loaded.jobs.compactions.wait(timeout=60)
    assert _stored(loaded, site.id, today - 7, today - 1) == (days, [today - 4])
    assert _answers(loaded, site, today - 7, today)[0]["pageviews"] == 5 * 40 + 2
