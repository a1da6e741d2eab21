"""Sealed periods: only weeks and months that have ended keep rollups (storage.rollups).

Writes to a day keep only its sealed week and month; reads of an open period read its days;
the job runner seals each period that ended by the site's yesterday, built from its days. Every
report must read the same through the rollups as day by day at each step, and every sealed
period must hold exactly what rebuilding it from its days gives.
"""

from __future__ import annotations

import random
import time
from datetime import timedelta

import msgspec

from appliance.models import Event, EventKind
from appliance.periods import day_bucket, day_from_number
from appliance.runtime.jobs import Jobs
from appliance.runtime.rollup_setup import seal_rollups
from storage import rollups
from storage.keys import DAY, MONTH, WEEK, unpack_bucket_key
from tests.appliance.test_range_rollups import (
    _events,
    _ranges,
    _report,
    _stored_rollups,
    filled_days,
)


def _seal(appliance, now: float) -> int:
    return seal_rollups(appliance.store, appliance.sites, appliance.counters, appliance.sketches, now)


def _through(appliance, site) -> int | None:
    with appliance.store.read() as txn:
        return appliance.counters.sealed_through(txn, site.id)


def _period_last(key: bytes) -> int:
    _, granularity, _, bucket, _ = unpack_bucket_key(key)
    return rollups.period_span(granularity, bucket)[1]


def _assert_sealed_equal_days(appliance, site, first, last) -> None:
    """Every sealed period's stored rollup is what rebuilding it from its days gives; none
    is stored for an open period; every report reads the same as day by day."""
    through = _through(appliance, site)
    stored = _stored_rollups(appliance, site)
    assert all(_period_last(key) <= through for _, key in stored)
    with appliance.store.read() as txn:
        span = appliance.counters.day_span(txn, site.id)
    periods = [
        (granularity, start)
        for granularity, start in rollups.periods_between(*span)
        if rollups.period_span(granularity, start)[1] <= through
    ]

    def rebuild(txn):
        appliance.counters.rebuild_periods(txn, site.id, periods)
        appliance.sketches.rebuild_periods(txn, site.id, periods)

    appliance.store.write(rebuild)
    assert _stored_rollups(appliance, site) == stored
    for a, b in _ranges(first, last):
        assert _report(appliance, site, a, b, True) == _report(appliance, site, a, b, False), (a, b)


def _filled_sealed_early(make_appliance, domain: str):
    """``filled_days`` of 70 days, the site sealed through the 20th before any event is
    recorded (the later days' weeks and months open while they are written)."""
    made = []

    def factory(**settings):
        made.append(make_appliance(**settings))
        return made[0]

    def events(site, first_ts):
        _seal(made[0], first_ts + 20.5 * 86400)
        return _events(site, first_ts, seed=11)

    return filled_days(factory, domain, 70, events)


def test_a_plan_reads_open_periods_as_days():
    rng = random.Random(7)
    for _ in range(500):
        first = rng.randrange(19_000, 21_000)
        last = first + rng.randrange(0, 400)
        through = rng.randrange(first - 40, last + 40)
        covered = []
        for granularity, first_bucket, last_bucket in rollups.plan(first, last, through):
            for bucket in rollups.buckets_of_run(granularity, first_bucket, last_bucket):
                start, end = rollups.period_span(granularity, bucket)
                assert granularity == DAY or end <= through
                covered.extend(range(start, end + 1))
        assert covered == list(range(first, last + 1))
    assert rollups.plan(20_000, 20_364, 20_364) == rollups.plan(20_000, 20_364)
    assert rollups.ended_between(20_000, 20_000) == []
    ended = rollups.ended_between(20_000, 20_100)
    assert ended and all(20_000 < rollups.period_span(g, b)[1] <= 20_100 for g, b in ended)
    assert len(ended) == len(set(ended))


def test_writes_skip_open_periods_and_sealing_builds_them(make_appliance, monkeypatch):
    # sealed through the history's 20th day before any event: the later days write no rollup
    appliance, site, first, last, first_ts = _filled_sealed_early(make_appliance, "sealed.test")
    through = _through(appliance, site)
    assert through == day_bucket(first_ts) + 19
    stored = _stored_rollups(appliance, site)
    assert stored and all(_period_last(key) <= through for _, key in stored)
    _assert_sealed_equal_days(appliance, site, first, last)

    # the job seals every period that ended since, from its days (built beforehand, metric by
    # metric, not inside the transaction that moves the day)
    inside = []
    monkeypatch.setattr(appliance.counters, "rebuild_periods", lambda *args: inside.append(args))
    now = time.time()
    assert _seal(appliance, now) > 0
    assert not inside
    monkeypatch.undo()
    assert _through(appliance, site) == day_bucket(now) - 1
    assert len(_stored_rollups(appliance, site)) > len(stored)
    _assert_sealed_equal_days(appliance, site, first, last)
    assert _seal(appliance, now) == 0  # nothing more to build

    # late events for sealed periods bump them as before
    known = _events(site, first_ts, seed=11)[::9]
    late = [
        msgspec.structs.replace(event, timestamp=event.timestamp - 120, source="Late", referrer_host="late",
                                channel="Referral", path="/late")
        for event in known
        if event.timestamp < first_ts + 40 * 86400
    ]
    random.Random(3).shuffle(late)
    before = _report(appliance, site, first, last, True)
    for lo in range(0, len(late), 25):
        appliance.record_sync(late[lo : lo + 25])
    assert _report(appliance, site, first, last, True)["aggregate"]["pageviews"] > before["aggregate"]["pageviews"]
    _assert_sealed_equal_days(appliance, site, first, last)


def test_todays_events_write_no_rollup_once_the_site_is_sealed(make_appliance):
    appliance = make_appliance()
    site = appliance.sites.add("today.test")
    now = time.time()  # one moment for the seal and the events: today, at any hour (even 00:00:01)
    results = Jobs(appliance).run_once(now)
    assert results["seal_rollups"] == 0  # a new site: sealed through yesterday, nothing to build
    assert _through(appliance, site) == day_bucket(now) - 1
    appliance.record_sync([
        Event(kind=EventKind.PAGEVIEW, site_id=site.id, timestamp=now, visitor_id=n + 1, name="pageview",
              path=f"/p{n % 3}", country="DE", browser="Chrome")
        for n in range(20)
    ])
    assert _stored_rollups(appliance, site) == {}
    with appliance.store.read() as txn:
        kinds = {unpack_bucket_key(key)[1] for key, _ in txn.cursor(db=appliance.store.db(b"counters"))}
    assert DAY in kinds and not kinds & {WEEK, MONTH}
    day = day_from_number(day_bucket(now))
    for a, b in ((day, day), (day - timedelta(days=6), day), (day.replace(day=1), day + timedelta(days=40))):
        assert _report(appliance, site, a, b, True) == _report(appliance, site, a, b, False)
    assert _report(appliance, site, day, day, True)["aggregate"]["pageviews"] == 20
    appliance.delete_site("today.test")  # its sealed-through day goes with it
    assert _through(appliance, site) is None


def test_a_day_written_while_periods_are_built_has_them_built_again_where_the_day_moves(make_appliance, monkeypatch):
    import appliance.runtime.rollup_setup as setup

    appliance, site, first, last, first_ts = _filled_sealed_early(make_appliance, "meanwhile.test")
    late = [
        msgspec.structs.replace(event, timestamp=event.timestamp - 90, path="/meanwhile", visitor_id=event.visitor_id + 2)
        for event in _events(site, first_ts, seed=11)[::40]
        if first_ts + 30 * 86400 < event.timestamp < first_ts + 50 * 86400
    ]
    assert late
    built_open = setup._build_open
    rebuilt = []

    def build_then_write_a_day(*args):
        token = built_open(*args)
        appliance.record_sync(late)  # a day of a period being sealed written after its build
        return token

    def counting(txn, site_id, periods, original=appliance.counters.rebuild_periods):
        rebuilt.append(len(periods))
        return original(txn, site_id, periods)

    monkeypatch.setattr(setup, "_build_open", build_then_write_a_day)
    monkeypatch.setattr(appliance.counters, "rebuild_periods", counting)
    assert _seal(appliance, time.time()) > 0
    assert rebuilt  # the moving transaction saw the day written and built the periods itself
    assert _report(appliance, site, first, last, True)["page"] == _report(appliance, site, first, last, False)["page"]
    _assert_sealed_equal_days(appliance, site, first, last)
