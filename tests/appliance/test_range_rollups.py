"""Week and month rollups: a range read through them equals the same range read day by day.

Events over about ten weeks (crossing month and week boundaries) go to one site; every counted
report over ranges that use whole months, whole weeks and edge days is compared with the
same report read day by day (``use_rollups = False``), then again after late, shuffled events
re-derive closed days' visit figures, after the retention purge cuts a month, and after a
store written without rollups is given them at open.
"""

from __future__ import annotations

import random
import time
from datetime import date, timedelta

import msgspec
import pytest

from appliance.models import Event, EventKind
from appliance.periods import day_bucket, day_from_number
from appliance.query.spec import Query
from appliance.runtime.jobs import purge_expired
from appliance.runtime.rollup_setup import ensure_rollups
from storage import rollups
from storage.keys import DAY, MONTH, WEEK, unpack_bucket_key

PAGES = ["/", "/pricing", "/blog/a", "/docs", "/signup", "/about"]
SOURCES = [("", "Direct"), ("Google", "Organic Search"), ("news.example", "Referral")]
DAYS = 70


def _events(site, first_ts: float, seed: int, per_day: int = 14) -> list[Event]:
    rng = random.Random(seed)
    events = []
    for day in range(DAYS):
        for _ in range(per_day):
            visitor = rng.randrange(1, 400) * 7919 + 1
            moment = first_ts + day * 86400 + rng.randrange(0, 80000)
            source, channel = rng.choice(SOURCES)
            for _ in range(rng.randint(1, 3)):
                kind = EventKind.CONVERSION if rng.random() < 0.05 else EventKind.PAGEVIEW
                events.append(
                    Event(
                        kind=kind, site_id=site.id, timestamp=moment, visitor_id=visitor,
                        name="pageview" if kind is EventKind.PAGEVIEW else "Signup",
                        path=rng.choice(PAGES), source=source, referrer_host=source.lower(), channel=channel,
                        country=rng.choice(["DE", "US", "FR"]), browser=rng.choice(["Chrome", "Firefox"]),
                    )
                )
                moment += rng.choice([60, 300, 2400])
    return sorted(events, key=lambda event: event.timestamp)


def _report(appliance, site, first: date, last: date, use_rollups: bool) -> dict:
    counted = appliance.stats.counted
    counted.use_rollups = use_rollups
    try:
        out = {}
        for interval in ("day", "week", "month"):
            query = Query(site=site, date_from=first, date_to=last, interval=interval)
            out[f"series-{interval}"] = counted.timeseries(query)
        query = Query(site=site, date_from=first, date_to=last)
        out["aggregate"] = counted.aggregate(query)
        for dimension in ("page", "source", "channel", "country", "browser"):
            out[dimension] = counted.breakdown(query, dimension, 20)
        out["entry"] = counted.entry_pages(query, 20)
        out["exit"] = counted.exit_pages(query, 20)
        out["conversions"] = counted.conversions(query)
        out["traffic"] = counted.traffic_report(query)
        return out
    finally:
        counted.use_rollups = True


def _ranges(first: date, last: date) -> list[tuple[date, date]]:
    """Whole months, ranges with weeks and edge days, single days, and everything."""
    month = date(first.year, first.month, 1) + timedelta(days=32)
    month = month.replace(day=1)
    month_end = (month + timedelta(days=32)).replace(day=1) - timedelta(days=1)
    return [
        (first, last),
        (month, month_end),
        (month - timedelta(days=3), month_end + timedelta(days=9)),
        (first + timedelta(days=5), first + timedelta(days=34)),
        (last - timedelta(days=1), last),
        (month + timedelta(days=10), month + timedelta(days=10)),
    ]


def _stored_rollups(appliance, site) -> dict:
    """Every stored week and month bucket of the site, per database: ``{key: value}``."""
    found = {}
    with appliance.store.read() as txn:
        for name in (b"counters", b"sketches"):
            for key, value in txn.cursor(db=appliance.store.db(name)):
                site_id, granularity, *_ = unpack_bucket_key(key)
                if site_id == site.id and granularity in (WEEK, MONTH):
                    found[(name, bytes(key))] = bytes(value)
    return found


def _assert_rollups_equal_days(appliance, site, first, last) -> None:
    # the stored rollups are exactly what rebuilding them from the days gives
    stored = _stored_rollups(appliance, site)
    span = (rollups.month_of(first.toordinal() - date(1970, 1, 1).toordinal()) - 7, 10**6)
    with appliance.store.read() as txn:
        span = appliance.counters.day_span(txn, site.id) or span

    def rebuild(txn):
        appliance.counters.rebuild_rollups(txn, site.id, *span)
        appliance.sketches.rebuild_rollups(txn, site.id, *span)

    appliance.store.write(rebuild)
    assert _stored_rollups(appliance, site) == stored
    for a, b in _ranges(first, last):
        assert _report(appliance, site, a, b, True) == _report(appliance, site, a, b, False), (a, b)


def filled_days(make_appliance, domain: str, days: int, make_events):
    """An appliance with a site of ``days`` closed days ending two days ago, from
    ``make_events(site, first_ts)`` recorded in time order (the incremental path is exact
    for that); ``(appliance, site, first day, last day, first_ts)``."""
    appliance = make_appliance(sites_retention_days=400)
    site = appliance.sites.add(domain)
    now = time.time()
    first_ts = now - now % 86400 - (days + 2) * 86400
    events = make_events(site, first_ts)
    appliance.visits.horizon = 0.0
    for lo in range(0, len(events), 500):
        appliance.record_sync(events[lo : lo + 500])
    appliance.visits.horizon = time.time()
    first = day_from_number(day_bucket(first_ts))
    return appliance, site, first, first + timedelta(days=days - 1), first_ts


@pytest.fixture
def filled(make_appliance):
    return filled_days(make_appliance, "rollups.test", DAYS, lambda site, first_ts: _events(site, first_ts, seed=11))


def test_plan_covers_every_day_once_and_a_year_is_a_handful_of_reads():
    rng = random.Random(5)
    for _ in range(500):
        first = rng.randrange(19_000, 21_000)
        last = first + rng.randrange(0, 800)
        covered = []
        for granularity, first_bucket, last_bucket in rollups.plan(first, last):
            bucket = first_bucket
            while bucket <= last_bucket:
                start, end = rollups.period_span(granularity, bucket)
                covered.extend(range(start, end + 1))
                bucket = end + 1
        assert covered == list(range(first, last + 1))
    year = rollups.plan(20_000, 20_364)
    assert sum(1 for granularity, _, _ in year if granularity == MONTH) == 1  # one run of months
    months = next(run for run in year if run[0] == MONTH)
    assert rollups.period_span(MONTH, months[2])[1] - months[1] > 300


def test_rollups_equal_days_after_in_order_ingest(filled):
    appliance, site, first, last, _ = filled
    with appliance.store.read() as txn:
        kinds = {unpack_bucket_key(key)[1] for key, _ in txn.cursor(db=appliance.store.db(b"counters"))}
    assert {DAY, WEEK, MONTH} <= kinds
    _assert_rollups_equal_days(appliance, site, first, last)


def test_late_events_for_closed_days_bump_their_weeks_and_months(filled):
    appliance, site, first, last, first_ts = filled
    before = _report(appliance, site, first, last, True)
    # late, shuffled events for closed days across the range: visits re-derived, days replaced
    # some in existing visits' first minutes with another source, which moves their
    # visitors from one source's sketch to another's (sketch days replaced, not added to)
    known = _events(site, first_ts, seed=11)[::9]
    late = [
        msgspec.structs.replace(
            event, timestamp=event.timestamp - 120, source="Late", referrer_host="late", channel="Referral",
            path="/late",
        )
        for event in known
        if event.timestamp < first_ts + 40 * 86400
    ]
    late += [event for event in _events(site, first_ts, seed=12, per_day=2) if event.timestamp < first_ts + 40 * 86400]
    random.Random(3).shuffle(late)
    for lo in range(0, len(late), 25):
        appliance.record_sync(late[lo : lo + 25])
    assert appliance.rederiver.days_rederived > 0
    after = _report(appliance, site, first, last, True)
    assert after["aggregate"]["pageviews"] > before["aggregate"]["pageviews"]
    _assert_rollups_equal_days(appliance, site, first, last)


def test_retention_rebuilds_the_month_it_cuts(filled):
    appliance, site, first, last, first_ts = filled
    site = appliance.sites.update(msgspec.structs.replace(site, retention_days=30))
    now = first_ts + 45.5 * 86400  # the cutoff falls inside a month and a week
    purge_expired(appliance, now)
    _assert_rollups_equal_days(appliance, site, first, last)


def test_a_store_without_rollups_gets_them_at_open(filled):
    appliance, site, first, last, _ = filled
    expected = _report(appliance, site, first, last, False)
    store = appliance.store

    def forget(txn):
        for name in (b"counters", b"sketches"):
            cursor = txn.cursor(db=store.db(name))
            doomed = [bytes(key) for key, _ in cursor if unpack_bucket_key(key)[1] in (WEEK, MONTH)]
            for key in doomed:
                txn.delete(key, db=store.db(name))
        appliance.records.delete(txn, "rollups", "built")

    store.write(forget)
    appliance.sketches.forget()
    assert _report(appliance, site, first, last, True) != expected  # the months are gone
    assert ensure_rollups(store, appliance.records, appliance.sites, appliance.counters, appliance.sketches) > 0
    assert _report(appliance, site, first, last, True) == expected
    _assert_rollups_equal_days(appliance, site, first, last)
