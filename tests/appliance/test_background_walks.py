"""Day-set walks are the appliance's background work (appliance/query/background.py): owned by
the appliance, stopped by ``close()`` at their next day, abandoned past their ceiling (their
waiters then compute for themselves), and two filters' walks run side by side."""

from __future__ import annotations

import random
import threading
import time
from datetime import timedelta

import pytest
from test_daywise_partials import _events

from appliance.budget import current_deadline
from appliance.errors import QueryTimeout
from appliance.filters import parse_filters
from appliance.periods import local_today
from appliance.query import daysets, daywise
from appliance.query.background import BackgroundWork
from appliance.query.spec import Query

WAIT = 30.0


@pytest.fixture
def filled(make_appliance):
    """``make(**settings)``: an appliance with a site and six days of visits."""

    def make(**environment: str):
        appliance = make_appliance(**environment)
        appliance.jobs.stop()
        site = appliance.sites.add("walks.example", timezone="UTC")
        appliance.record_sync(_events(site, random.Random(7), 6))
        return appliance, site

    return make


def _week(site, text: str) -> Query:
    today = local_today(site.timezone)
    return Query(site=site, date_from=today - timedelta(days=6), date_to=today, filters=parse_filters(text))


def _until(condition, timeout: float = WAIT) -> bool:
    """Wait (on an Event, no sleep) until ``condition()`` holds; False at ``timeout``."""
    pause = threading.Event()
    until = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > until:
            return False
        pause.wait(0.005)
    return True


def _stopped() -> bool:
    deadline = current_deadline()
    return deadline is not None and deadline.remaining() <= 0


class DayGate:
    """Wraps ``daywise._reduce_day``: counts the days reduced, and holds the first one until
    the walk's own deadline has passed (pulled in by close, or its ceiling)."""

    def __init__(self, monkeypatch) -> None:
        self.days = 0
        self.entered = threading.Event()
        real = daywise._reduce_day

        def reduce_day(*args, **kwargs):
            self.days += 1
            if self.days == 1:
                self.entered.set()
                _until(_stopped)
            return real(*args, **kwargs)

        monkeypatch.setattr(daywise, "_reduce_day", reduce_day)


def test_a_walk_stops_at_close(filled, monkeypatch):
    appliance, site = filled()
    scans = appliance.stats.scans
    gate = DayGate(monkeypatch)
    walk = scans.day_sets.start(scans, _week(site, "country==DE"))
    assert gate.entered.wait(WAIT)  # walking its first day
    appliance.close()
    assert walk.done()  # close stopped it and waited for it
    with pytest.raises(QueryTimeout):
        walk.result(0)
    assert gate.days == 1  # stopped at the next day's check
    assert scans.background.abandoned == 1 and scans.background.busy == 0


def test_a_walk_past_its_ceiling_is_abandoned_and_its_waiters_compute_for_themselves(filled, monkeypatch):
    appliance, site = filled(query_time_budget_seconds="1", query_background_seconds="1")  # a ceiling of 1 s
    scans = appliance.stats.scans
    query = _week(site, "source==Google")
    gate = DayGate(monkeypatch)
    walk = scans.day_sets.start(scans, query)
    assert gate.entered.wait(WAIT)
    assert daysets._wait(walk) is None  # a waiter: the walk is abandoned, so it computes itself
    with pytest.raises(QueryTimeout):
        walk.result(0)
    assert gate.days == 1 and scans.background.abandoned == 1
    # asked again: walked again (the abandoned set is not kept), or computed by the asker
    assert scans.timeseries(query) == scans.timeseries_of(scans.select(query))


def test_two_filters_walks_proceed_side_by_side(filled, monkeypatch):
    appliance, site = filled(query_background_workers="2")
    scans = appliance.stats.scans
    first, second = _week(site, "page==/blog/*"), _week(site, "country==FR")
    held, release = threading.Event(), threading.Event()
    real = daysets.day_set

    def day_set(scans, query, frame=None):
        if query == first:
            held.set()
            release.wait(WAIT)  # the first filter's walk is slow
        return real(scans, query, frame)

    monkeypatch.setattr(daysets, "day_set", day_set)
    blocked = scans.day_sets.start(scans, first)
    assert held.wait(WAIT)
    try:
        assert scans.day_sets.start(scans, second).result(WAIT) is not None  # not behind the first
        assert not blocked.done()
    finally:
        release.set()
    assert blocked.result(WAIT) is not None
    assert scans.breakdown(first, "page", 5) == scans.breakdown_of(scans.select(first), "page", 5)
    assert scans.breakdown(second, "page", 5) == scans.breakdown_of(scans.select(second), "page", 5)


def test_walks_wait_for_a_free_worker_and_finishers_are_counted_beside_them():
    background = BackgroundWork(workers=1)
    release = threading.Event()
    running = background.submit(release.wait, WAIT)
    assert _until(running.running)  # the worker took it
    queued = background.submit(release.wait, WAIT)
    dropped = background.submit(release.wait, WAIT)
    assert dropped.cancel()  # pushed out before its turn: never run
    assert background.claim()  # a finisher has its own bound (flights): counted, not queued
    assert (background.queued, background.busy, background.finishing) == (1, 2, 1)
    release.set()
    assert running.result(WAIT) and queued.result(WAIT)
    background.release()
    assert background.join(WAIT) and _until(lambda: background.dropped == 1)  # counted when its turn came
    assert (background.started, background.completed) == (2, 2)
    background.stop()
    assert background.submit(release.wait, WAIT).cancelled() and not background.claim()
