"""The tracker first (appliance/tracker_first.py): a fold steps aside while a tracker request
is in flight, never longer than its share, and never where a commit waits for it."""

from __future__ import annotations

import threading
import time
from datetime import timedelta

import pytest

from appliance.models import Event, EventKind
from appliance.periods import day_bucket, day_from_number
from appliance.query.spec import Query
from appliance.tracker_first import TRACKER_FIRST, TrackerFirst


def _until(condition, limit: float = 10.0) -> None:
    deadline = time.monotonic() + limit
    while not condition():
        assert time.monotonic() < deadline, "condition not reached"
        time.sleep(0.001)


def _views(site, count: int) -> list[Event]:
    now = time.time()
    return [Event(kind=EventKind.PAGEVIEW, site_id=site.id, timestamp=now, name="pageview", visitor_id=i + 1,
                  path=f"/p{i % 3}") for i in range(count)]


def _pageviews(appliance, domain: str) -> int:
    """The site's page views: all stamped during the test, so from yesterday (UTC) on, which
    counts them on either side of a midnight the test crosses."""
    today = day_from_number(day_bucket(time.time()))
    query = Query(site=appliance.sites.get(domain), date_from=today - timedelta(days=1), date_to=today)
    return appliance.stats.aggregate(query)["pageviews"]


@pytest.fixture
def request_in_flight():
    """A tracker request in flight in the process's own gauge (the served app's front door
    counts them), answered when the test ends."""
    TRACKER_FIRST.enter()
    try:
        yield
    finally:
        TRACKER_FIRST.leave()


def test_a_step_aside_returns_at_once_when_no_tracker_request_is_in_flight():
    first = TrackerFirst(longest=30)
    first.step_aside()
    assert first.steps == 0


def test_a_step_aside_waits_until_every_request_in_flight_is_answered():
    first = TrackerFirst(longest=30)
    first.enter()
    first.enter()
    stepper = threading.Thread(target=first.step_aside, daemon=True)
    stepper.start()
    _until(lambda: first._waiting == 1)
    first.leave()  # one still in flight: the step goes on
    assert first._waiting == 1 and stepper.is_alive()
    first.leave()
    stepper.join(10)
    assert not stepper.is_alive() and first.steps == 1 and first._waiting == 0


def test_a_thread_goes_on_once_it_has_waited_its_budget():
    first = TrackerFirst(longest=0.2, share=0.5)  # a thread starts with twice the longest step to spend
    first.enter()
    began = time.monotonic()
    first.step_aside()
    first.step_aside()
    assert time.monotonic() - began >= 0.39 and first.steps == 2
    began = time.monotonic()
    first.step_aside()  # its budget is spent: it goes on
    assert time.monotonic() - began < 0.1


def test_folds_step_aside_while_commits_go_to_the_intake(make_appliance, request_in_flight):
    appliance = make_appliance(ingest_aggregate_interval_ms=3_600_000, ingest_aggregate_max_events=1_000_000)
    site = appliance.sites.add("first.test")
    appliance.writer.write_sync(_views(site, 5))
    assert appliance.recorder.folds_may_step_aside()
    steps = TRACKER_FIRST.steps
    assert appliance.coordinator.flush() == 5  # as a settled read folds
    assert TRACKER_FIRST.steps > steps
    assert appliance.recorder.waiting == 0 and _pageviews(appliance, "first.test") == 5


def test_no_fold_steps_aside_while_a_commit_may_wait_for_it(make_appliance, request_in_flight):
    appliance = make_appliance(ingest_aggregate_interval_ms=3_600_000, ingest_aggregate_max_events=1_000_000)
    site = appliance.sites.add("bound.test")
    appliance.writer.write_sync(_views(site, 5))
    appliance.recorder.max_waiting = 5  # the backlog at its bound: the next commit waits for the fold
    assert not appliance.recorder.folds_may_step_aside()
    steps = TRACKER_FIRST.steps
    appliance.coordinator.flush()
    assert TRACKER_FIRST.steps == steps


@pytest.mark.parametrize("setting", [{"ingest_intake": "false"}, {"ingest_tracker_first": "false"}])
def test_folds_never_step_aside_without_the_intake_or_with_the_setting_off(make_appliance, request_in_flight, setting):
    appliance = make_appliance(ingest_aggregate_interval_ms=3_600_000, ingest_aggregate_max_events=1_000_000, **setting)
    site = appliance.sites.add("plain.test")
    appliance.writer.write_sync(_views(site, 5))
    assert not appliance.recorder.folds_may_step_aside()
    steps = TRACKER_FIRST.steps
    appliance.coordinator.flush()
    assert TRACKER_FIRST.steps == steps
