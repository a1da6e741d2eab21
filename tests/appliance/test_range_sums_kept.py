"""Kept sums of closed day ranges (storage.range_sums) answer exactly what reading every
counter gives: after in-order ingest, a late event into a closed day, re-derived visits, the
day rollover (yesterday's live day becoming part of the kept range), the retention purge,
and under a memory bound too small to keep anything."""

from __future__ import annotations

import random
import struct
from datetime import date, timedelta

import msgspec
import pytest

from appliance.memory import SHARES
from appliance.models import Event, EventKind
from appliance.periods import day_bucket
from appliance.query.spec import Query
from appliance.runtime.jobs import purge_expired
from tests.appliance.test_range_rollups import filled_days

# more pages than four times a breakdown's candidates: their visit counters are read by point
PAGES = ["/", "/pricing", "/blog/a", "/docs", "/signup", "/about"] + [f"/p/{n}" for n in range(150)]
SOURCES = [("", "Direct"), ("Google", "Organic Search"), ("news.example", "Referral")]
DAYS = 40
DIMENSIONS = ("page", "source", "channel", "country", "browser")


def _event(site, moment: float, rng: random.Random, visitor: int, **changes) -> Event:
    source, channel = rng.choice(SOURCES)
    kind = EventKind.CONVERSION if rng.random() < 0.05 else EventKind.PAGEVIEW
    event = Event(
        kind=kind, site_id=site.id, timestamp=moment, visitor_id=visitor,
        name="pageview" if kind is EventKind.PAGEVIEW else "Signup",
        path=rng.choice(PAGES), source=source, referrer_host=source.lower(), channel=channel,
        country=rng.choice(["DE", "US", "FR"]), browser=rng.choice(["Chrome", "Firefox"]),
    )
    return msgspec.structs.replace(event, **changes) if changes else event


def _events(site, first_ts: float, days: range, seed: int, per_day: int = 12) -> list[Event]:
    rng = random.Random(seed)
    events = []
    for day in days:
        for _ in range(per_day):
            visitor = rng.randrange(1, 300) * 7919 + 1
            moment = first_ts + day * 86400 + rng.randrange(0, 80000)
            for _ in range(rng.randint(1, 3)):
                events.append(_event(site, moment, rng, visitor))
                moment += rng.choice([60, 300, 2400])
    return sorted(events, key=lambda event: event.timestamp)


def _report(appliance, site, first: date, last: date, kept: bool) -> dict:
    """The counted reports over the range; ``kept=False`` reads every day's counters (no
    rollups, no kept sums): the plain path."""
    counted = appliance.stats.counted
    counted.use_rollups = kept
    try:
        query = Query(site=site, date_from=first, date_to=last)
        out = {dimension: counted.breakdown(query, dimension, 8) for dimension in DIMENSIONS}
        out["aggregate"] = counted.aggregate(query)
        out["entry"] = counted.entry_pages(query, 10)
        out["exit"] = counted.exit_pages(query, 10)
        out["conversions"] = counted.conversions(query)
        return out
    finally:
        counted.use_rollups = True


def _assert_exact(appliance, site, ranges) -> None:
    for a, b in ranges:
        plain = _report(appliance, site, a, b, False)
        assert _report(appliance, site, a, b, True) == plain, (a, b)
        assert _report(appliance, site, a, b, True) == plain, (a, b)  # now from the kept sum


@pytest.fixture
def filled(make_appliance):
    return filled_days(make_appliance, "kept.test", DAYS, lambda site, first_ts: _events(site, first_ts, range(DAYS), seed=7))


def _ranges(first: date, last: date) -> list[tuple[date, date]]:
    return [(first, last), (last - timedelta(days=29), last), (first + timedelta(days=3), first + timedelta(days=20))]


def test_kept_sums_equal_the_plain_path_and_are_used(filled):
    appliance, site, first, last, _ = filled
    sums = appliance.counters.sums
    hits = sums.hits
    _assert_exact(appliance, site, _ranges(first, last))
    assert sums.hits > hits  # the repeated reports were answered from kept sums
    pages = _report(appliance, site, first, last, True)["page"]
    assert pages["rest"]["values"] + len(pages["results"]) > 4 * 20  # the point-read path was taken
    assert 0 < sums.size_bytes <= sums.max_bytes


def test_a_late_event_into_a_closed_day_is_counted_at_once(filled):
    appliance, site, first, last, first_ts = filled
    ranges = _ranges(first, last)
    _assert_exact(appliance, site, ranges)
    before = _report(appliance, site, first, last, True)
    # late events for closed days inside every kept range: a new page, and visits re-derived
    rng = random.Random(5)
    late = [
        _event(site, first_ts + day * 86400 + 3600, rng, 99_991 + day, path="/late", source="Late",
               referrer_host="late", channel="Referral")
        for day in (5, 12, 19)
    ]
    late += _events(site, first_ts, range(4, 21), seed=8, per_day=1)
    for event in late:
        appliance.record_sync([event])
    after = _report(appliance, site, first, last, True)
    assert after["aggregate"]["pageviews"] > before["aggregate"]["pageviews"]
    assert after["page"]["rest"] != before["page"]["rest"]  # "/late" is one more page
    _assert_exact(appliance, site, ranges)


def test_the_day_rollover_reads_yesterday_into_the_kept_range(filled):
    appliance, site, first, last, first_ts = filled
    # "today" is the day after the data: a range ending today keeps every earlier day
    today = last + timedelta(days=1)
    today_ts = first_ts + DAYS * 86400
    _assert_exact(appliance, site, [(today - timedelta(days=29), today)])
    appliance.record_sync(_events(site, first_ts, range(DAYS, DAYS + 1), seed=9))  # today's traffic
    _assert_exact(appliance, site, [(today - timedelta(days=29), today)])
    # the day rolls over: yesterday (written just now, kept from here on) and a new today
    tomorrow = today + timedelta(days=1)
    _assert_exact(appliance, site, [(tomorrow - timedelta(days=29), tomorrow)])
    appliance.record_sync(_events(site, first_ts, range(DAYS + 1, DAYS + 2), seed=10))
    before = _report(appliance, site, tomorrow - timedelta(days=29), tomorrow, True)
    # a late event for yesterday, now inside the kept part of the range
    rng = random.Random(3)
    appliance.record_sync([_event(site, today_ts + 7200, rng, 424_243, path="/yesterday-late")])
    after = _report(appliance, site, tomorrow - timedelta(days=29), tomorrow, True)
    assert after["aggregate"]["pageviews"] == before["aggregate"]["pageviews"] + 1
    _assert_exact(appliance, site, [(tomorrow - timedelta(days=29), tomorrow)])


def test_retention_purge_drops_kept_sums_of_deleted_days(filled):
    appliance, site, first, last, first_ts = filled
    ranges = [(first, last), (first + timedelta(days=2), first + timedelta(days=25))]
    _assert_exact(appliance, site, ranges)
    site = appliance.sites.update(msgspec.structs.replace(site, retention_days=30))
    before = _report(appliance, site, first, last, True)
    now = first_ts + (30 + 20.5) * 86400  # the cutoff falls inside the kept ranges
    purge_expired(appliance, now)
    assert _report(appliance, site, first, last, True)["aggregate"]["pageviews"] < before["aggregate"]["pageviews"]
    _assert_exact(appliance, site, ranges)
    cutoff_day = day_bucket(now - 30 * 86400, site.timezone)
    with appliance.store.read() as txn:  # the deleted days' generations went with them
        days = [struct.unpack(">II", key)[1] for key, _ in txn.cursor(db=appliance.store.db(b"day_generations"))]
    assert days and min(days) >= cutoff_day, (cutoff_day, sorted(days)[:3])


def test_kept_sums_stay_inside_their_memory_bound(filled):
    appliance, site, first, last, _ = filled
    sums = appliance.counters.sums
    sums.clear()
    sums.max_bytes = 4_000  # room for a few small sums; the pages' are refused
    _assert_exact(appliance, site, _ranges(first, last))
    assert sums.size_bytes <= 4_000
    assert appliance.memory.range_sums_bytes == int(appliance.memory.budget_bytes * SHARES["range_sums"])
