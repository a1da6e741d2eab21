"""Closed days a bulk load has moved past are compacted during the load
(:mod:`appliance.runtime.passed_days`), not two sweeps after it: a month of history sent
oldest day first through the batch path leaves no closed day in the event log, and every
answer is the one the same events give read from the log. A late event for a compacted day
stays a log row beside its block, counted as ever."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime

from appliance.filters import parse_filters
from appliance.models import Event, EventKind
from appliance.query.spec import Query
from appliance.runtime.passed_days import LOADING_SECONDS, QUIET_SECONDS, PassedDays

SOURCES = ("Google", "Twitter", "")


def _day(site_id: int, day: int, count: int, now: float, visitors: int = 37) -> list[Event]:
    """A day of page views in time order (the last of them before ``now``: in the first hours
    of a UTC day today's share one second, and a visitor's then make one visit)."""
    return [
        Event(kind=EventKind.PAGEVIEW, site_id=site_id, timestamp=min(day * 86400 + 3600 + 60 * i, now - 1),
              name="pageview", visitor_id=3000 + i % visitors, path=f"/p/{i % 5}", source=SOURCES[i % 3])
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
    loaded.flush_aggregates()  # folded: in the event log
    assert loaded.jobs.compactions.wait(timeout=60)
    assert _stored(loaded, site.id, today - 7, today - 1) == (days, [today - 4])
    assert _answers(loaded, site, today - 7, today)[0]["pageviews"] == 5 * 40 + 2


class _Columns:
    """What PassedDays reads of the column store: the threshold and which days are closed."""

    compact_read_rows = 10
    open_day = 99  # days before it are closed

    def is_closed(self, day: int) -> bool:
        return day < self.open_day


def test_a_passed_day_waits_for_its_stragglers_and_for_its_close():
    clock = [0.0]
    asked: list[tuple[int, int, int]] = []
    wake = threading.Event()
    columns = _Columns()
    passed = PassedDays(lambda *days: asked.append(days), columns, wake, clock=lambda: clock[0])

    def commit(day_number: int, count: int) -> None:
        passed.committed(_day(1, day_number, count, float("inf")))

    commit(98, 30)
    commit(97, 5)  # a few late ones for an older day: never worth a block by themselves
    assert passed.next_poll() is None and not wake.is_set()  # nothing passed yet
    commit(99, 12)  # the load moves on: 98 is passed
    assert wake.is_set() and passed.next_poll() == clock[0] + QUIET_SECONDS
    clock[0] += 3
    commit(98, 2)  # a straggler of 98: quiet again from now
    clock[0] += 3
    assert passed.poll() == 0 and asked == []
    clock[0] += 2
    assert passed.poll() == 1 and asked == [(1, 98, 98)]
    commit(100, 1)  # 99 is passed too, but not closed yet: looked at again a minute on
    clock[0] += QUIET_SECONDS
    assert passed.poll() == 0 and passed.next_poll() == clock[0] + 60
    columns.open_day = 100  # 99 closes
    assert passed.poll() == 1 and asked[-1] == (1, 99, 99)
    commit(98, 3)  # late for a handed-over day: below the threshold, left to the sweep
    clock[0] += QUIET_SECONDS
    assert passed.poll() == 0 and passed.next_poll() is None


class _OpenDays:
    checkpoint_rows = 20


def test_the_open_day_a_load_ends_on_is_checkpointed_once_quiet():
    clock = [0.0]
    compacted: list[tuple[int, int, int]] = []
    checkpointed: list[tuple[int, int]] = []
    wake = threading.Event()
    columns = _Columns()
    columns.open_days = _OpenDays()
    passed = PassedDays(lambda *days: compacted.append(days), columns, wake, clock=lambda: clock[0],
                        checkpoint=lambda *day: checkpointed.append(day))

    def commit(day_number: int, count: int) -> None:
        passed.committed(_day(1, day_number, count, float("inf")))

    commit(99, 15)  # the open day (99), below the checkpoint's rows
    clock[0] += QUIET_SECONDS
    assert passed.poll() == 0 and passed.next_poll() is None and not wake.is_set()
    commit(99, 10)  # 25 rows: the runner is woken to look once the day is quiet
    assert wake.is_set() and passed.next_poll() == clock[0] + QUIET_SECONDS
    clock[0] += QUIET_SECONDS - 1
    commit(99, 5)  # still loading
    clock[0] += QUIET_SECONDS - 1
    assert passed.poll() == 0 and checkpointed == []
    clock[0] += 1
    assert passed.poll() == 1 and checkpointed == [(1, 99)] and compacted == []
    assert passed.open_days_handed_over == 1
    commit(99, 19)  # counted afresh after a hand-over: not enough for another
    clock[0] += QUIET_SECONDS
    assert passed.poll() == 0 and passed.next_poll() is None
    commit(99, 1)
    clock[0] += QUIET_SECONDS
    assert passed.poll() == 1 and checkpointed == [(1, 99), (1, 99)]
    commit(99, 30)
    commit(100, 1)  # the day is passed before it was quiet: compaction's, never checkpointed
    clock[0] += QUIET_SECONDS
    columns.open_day = 100
    passed.poll()
    assert checkpointed == [(1, 99), (1, 99)] and compacted == [(1, 99, 99)]


def test_a_load_ending_today_leaves_a_checkpoint_of_the_open_day(make_appliance):
    appliance = make_appliance()
    appliance.columns.compact_read_rows = 100
    appliance.columns.open_days.checkpoint_rows = 100
    appliance.jobs.passed_days.quiet_seconds = 0
    site = appliance.sites.add("today.example")
    now = time.time()
    today = int(now // 86400)
    events = _day(site.id, today, 150, now, visitors=150)  # a visit each, at any hour: 50 from Google
    for start in range(0, len(events), 40):
        appliance.writer.write_sync(events[start : start + 40])
    assert appliance.jobs.compactions.wait(timeout=60)
    assert appliance.columns.open_days.days(site.id) == [today]
    assert appliance.jobs.compactions.checkpoints_taken == 1
    appliance.stats.scans.forget()
    resumed = appliance.columns.open_days.resumed
    assert _answers(appliance, site, today, today)[0]["pageviews"] == 50
    assert appliance.columns.open_days.resumed == resumed + 1


def test_a_day_is_loading_while_a_closed_day_of_its_window_waits_to_be_handed_over():
    clock = [0.0]
    columns = _Columns()
    passed = PassedDays(lambda *days: None, columns, threading.Event(), clock=lambda: clock[0])
    passed.committed(_day(1, 97, 4, float("inf")))  # a few late events: not a load
    assert not any(passed.loading(1, day) for day in range(95, 101))
    passed.committed(_day(1, 97, 30, float("inf")))  # the load writes 97
    assert [day for day in range(94, 101) if passed.loading(1, day)] == [96, 97, 98]
    assert not passed.loading(2, 97)  # another site's
    passed.committed(_day(1, 99, 30, float("inf")))  # and today's, 99 (open): not what loading asks
    assert [day for day in range(94, 102) if passed.loading(1, day)] == [96, 97, 98]
    clock[0] += QUIET_SECONDS
    assert passed.poll() == 1  # 97 handed over to compaction: the load is past it
    assert not any(passed.loading(1, day) for day in range(94, 102))


def test_the_last_day_of_a_load_is_not_loading_long_after_its_last_event():
    clock = [0.0]
    passed = PassedDays(lambda *days: None, _Columns(), threading.Event(), clock=lambda: clock[0])
    passed.committed(_day(1, 97, 30, float("inf")))  # a load of history that ends on 97: never passed
    assert passed.loading(1, 97)
    clock[0] += LOADING_SECONDS - 1
    assert passed.loading(1, 97)
    clock[0] += 1
    assert not passed.loading(1, 97) and passed.poll() == 0  # not handed over: the sweep's and the hourly job's
