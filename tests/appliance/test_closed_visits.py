"""Visits closed in this process are remembered per visitor, so in-order history stays exact
without re-derivation, and a late event for a closed visit still marks its days.

History goes through the real writer and recorder (``record_sync``) into a fresh appliance,
one visitor at a time and day by day (each visitor's events in time order, the visitors not),
with every open visit closed between visitors, as the jobs' expiry closes a bulk load's history
visits (all idle by the wall clock) once no longer touched. No day may be marked *visits dirty*, and re-deriving every
day from the time-ordered events must change nothing: counters, sketches and reports.
"""

from __future__ import annotations

import random
import time

import msgspec

from appliance.ingest import rederive
from appliance.ingest.closed_visits import ClosedVisits
from appliance.ingest.visits import RECENT_SECONDS
from appliance.memory import BYTES_PER_CLOSED_VISIT, SHARES, plan_memory
from appliance.models import Event, EventKind
from appliance.periods import day_bucket, day_from_number
from appliance.query.spec import Query

SOURCES = [("", "Direct"), ("Google", "Organic Search"), ("news.example", "Referral")]
PAGES = ["/", "/pricing", "/blog/a", "/docs"]
DAYS = 4


def history(seed: int, first_day_start: float, visitors: int = 30) -> dict[int, dict[int, list[dict]]]:
    """``{day index: {visitor: events in time order}}``: 1-3 visits a visitor a day between
    06:00 and 21:00 (no visit crosses midnight), gaps inside a visit up to 29 minutes."""
    rng = random.Random(seed)
    days: dict[int, dict[int, list[dict]]] = {}
    for day in range(DAYS):
        for visitor in range(1, visitors + 1):
            if rng.random() < 0.25:
                continue  # not every visitor comes every day
            moment = first_day_start + day * 86400 + 6 * 3600 + rng.randrange(0, 3 * 3600)
            events = days.setdefault(day, {}).setdefault(visitor, [])
            for _ in range(rng.randint(1, 3)):
                source, channel = rng.choice(SOURCES)
                for index in range(rng.randint(1, 4)):
                    kind = EventKind.CUSTOM if index and rng.random() < 0.2 else EventKind.PAGEVIEW
                    events.append({"visitor": visitor, "ts": moment, "kind": kind, "path": rng.choice(PAGES),
                                   "source": source, "channel": channel})
                    moment += rng.choice([60, 300, 1200, 1740])
                moment += rng.choice([1860, 3600, 7200])  # more than the timeout: a new visit
    return days


def _event(site, spec) -> Event:
    kind = spec["kind"]
    return Event(
        kind=kind, site_id=site.id, timestamp=spec["ts"], name="pageview" if kind is EventKind.PAGEVIEW else "Signup",
        visitor_id=spec["visitor"] * 7919 + 1, path=spec["path"], source=spec["source"],
        referrer_host=spec["source"].lower(), channel=spec["channel"], country="DE",
    )


def report(appliance, site, first, last):
    stats = appliance.stats
    query = Query(site=site, date_from=first, date_to=last)
    aggregate = stats.aggregate(query)
    return {
        "aggregate": {k: aggregate[k] for k in ("visitors", "visits", "pageviews", "bounce_rate", "visit_duration")},
        "timeseries": stats.timeseries(query),
        "source": stats.breakdown(query, "source", 20),
        "page": stats.breakdown(query, "page", 20),
        "entry": stats.entry_pages(query, 20),
        "exit": stats.exit_pages(query, 20),
    }


def _start() -> float:
    moment = time.time() - (DAYS + 2) * 86400
    return moment - moment % 86400


def _later() -> float:
    """A moment when every visit written so far is closed: idle, and not touched recently."""
    return time.time() + RECENT_SECONDS + 1


def _load_in_order(appliance, site, days) -> None:
    """Day by day, one visitor's events per batch, every open visit closed after each."""
    for day in sorted(days):
        for specs in days[day].values():
            appliance.record_sync([_event(site, spec) for spec in specs])
            appliance.visits.expire(_later())  # every history visit idle, none touched recently


def test_in_order_history_marks_no_day_and_equals_its_rederivation(make_appliance):
    appliance = make_appliance()
    site = appliance.sites.add("history.test", timezone="UTC")
    start = _start()
    days = history(3, start)
    _load_in_order(appliance, site, days)
    assert not appliance.rederiver.dirty and appliance.rederiver.days_rederived == 0
    assert len(appliance.visits) == 0 and len(appliance.visits.closed) == 30
    first, last = day_from_number(day_bucket(start)), day_from_number(day_bucket(start) + DAYS - 1)
    counted = report(appliance, site, first, last)
    assert counted["aggregate"]["visits"] > 100
    # re-derived from the time-ordered events, every day's visit figures stay as counted
    with appliance.coordinator.mutex:
        changed = [appliance.rederiver.rederive_day(site.id, day) for day in range(day_bucket(start), day_bucket(start) + DAYS)]
    assert changed == [False] * DAYS
    assert report(appliance, site, first, last) == counted


def _marked(appliance, monkeypatch) -> list:
    """The ``(site, day)`` pairs the aggregation step marks visits dirty from now on (small days
    are re-derived at once, so no longer dirty when the test looks)."""
    marked: list = []
    mark = appliance.rederiver.mark

    def spy(txn, keys):
        marked.extend(keys)
        mark(txn, keys)

    monkeypatch.setattr(appliance.rederiver, "mark", spy)
    return marked


def test_a_late_event_for_a_closed_visit_marks_its_day(make_appliance, monkeypatch):
    appliance = make_appliance()
    marked = _marked(appliance, monkeypatch)
    late_site = appliance.sites.add("late.test", timezone="UTC")
    ordered_site = appliance.sites.add("ordered.test", timezone="UTC")
    start = _start()
    days = history(5, start)
    _load_in_order(appliance, late_site, days)
    assert not marked
    # a visitor's closed visits on day 1: an event inside one (between two of its events), and
    # one a minute after its end (extending it); both were written as closed visits
    specs = days[1][next(iter(days[1]))]
    inside = dict(specs[0], ts=specs[0]["ts"] + 30, kind=EventKind.CUSTOM)
    extending = dict(specs[-1], ts=specs[-1]["ts"] + 60)
    for late in (inside, extending):
        del marked[:]
        appliance.record_sync([_event(late_site, late)])
        appliance.visits.expire(_later())
        assert (late_site.id, day_bucket(start) + 1) in marked
    appliance.rederiver.run(force=True)
    assert not appliance.rederiver.dirty
    # the same events in time order on another site: the late site's figures equal them
    everything = [spec for day in days.values() for events in day.values() for spec in events] + [inside, extending]
    appliance.record_sync([_event(ordered_site, spec) for spec in sorted(everything, key=lambda spec: spec["ts"])])
    first, last = day_from_number(day_bucket(start)), day_from_number(day_bucket(start) + DAYS - 1)
    assert report(appliance, late_site, first, last) == report(appliance, ordered_site, first, last)


def test_an_open_visit_replaced_by_a_late_session_keeps_its_end_known(make_appliance, monkeypatch):
    """A late event with another session id replaces the open visit by an earlier one: the
    replaced visit's end is remembered, so an event soon after it is still judged late."""
    appliance = make_appliance()
    marked = _marked(appliance, monkeypatch)
    site = appliance.sites.add("sessions.test", timezone="UTC")
    t0 = _start() + 10 * 3600
    base = {"visitor": 1, "kind": EventKind.PAGEVIEW, "path": "/", "source": "", "channel": "Direct"}

    def send(at: float, session: str) -> None:
        appliance.record_sync([msgspec.structs.replace(_event(site, dict(base, ts=at)), session_hint=session)])

    send(t0, "a")
    send(t0 + 1200, "a")
    assert not marked
    monkeypatch.setattr(rederive, "IMMEDIATE_EVENTS", 0)  # the hourly job's: not re-derived yet
    send(t0 + 300, "b")  # late, another session: a new open visit that ends before the first
    assert marked
    appliance.visits.expire(_later())
    del marked[:]
    send(t0 + 1200 + 1500, "a")  # 25 minutes after the first visit's end: it joins that visit
    assert (site.id, day_bucket(t0)) in marked


def test_the_map_is_bounded_and_a_dropped_visitor_is_judged_by_the_horizon():
    closed = ClosedVisits(timeout_seconds=1800, limit=3)
    for visitor in range(1, 6):
        closed.note(1, visitor, 10_000.0 + visitor)
    assert len(closed) == 3 and closed.dropped == 2
    assert closed.dropped_until == 10_002.0 + 1800  # the latest dropped end, plus the timeout
    # visitor 1's record is gone: an event that might extend its visit is not in order
    assert not closed.in_order(1, 1, 10_500.0)
    assert closed.in_order(1, 1, 10_002.0 + 1801)
    # a kept visitor is judged by its own record
    assert not closed.in_order(1, 5, 10_005.0 + 1800)
    assert closed.in_order(1, 5, 10_005.0 + 1801)
    closed.note(1, 5, 9_000.0)  # an earlier end never lowers the record
    assert not closed.in_order(1, 5, 10_005.0 + 1800)
    closed.delete_site(1)
    assert len(closed) == 0


def test_over_a_large_bound_a_64th_goes_at_once_oldest_first():
    closed = ClosedVisits(timeout_seconds=1800, limit=6400)
    for visitor in range(1, 6402):
        closed.note(1, visitor, 10_000.0 + visitor)
    # the 6,401st note went over: the 100 oldest went, not one
    assert len(closed) == 6301 and closed.dropped == 100
    assert closed.dropped_until == 10_100.0 + 1800  # the latest of them, plus the timeout
    assert not closed.in_order(1, 100, 10_100.0 + 1800) and closed.in_order(1, 100, 10_100.0 + 1801)
    assert not closed.in_order(1, 101, 10_101.0 + 1800)  # kept: judged by its own record
    for visitor in range(6402, 6501):  # under the bound again until the next note over it
        closed.note(1, visitor, 10_000.0 + visitor)
    assert len(closed) == 6400 and closed.dropped == 100


def test_the_bound_comes_from_the_memory_budget(make_appliance):
    plan = plan_memory(160, 500_000)
    assert plan.max_closed_visits == int((160 << 20) * SHARES["closed_visits"]) // BYTES_PER_CLOSED_VISIT
    appliance = make_appliance(memory_budget_mb=64)
    assert appliance.visits.closed.limit == plan_memory(64, 500_000).max_closed_visits


def test_a_late_conversion_inside_its_open_visit_is_not_marked(make_appliance, monkeypatch):
    """A conversion sent later (a server-side queue) but stamped strictly inside its open visit
    (not a page view, same session) changes nothing order-dependent there."""
    appliance = make_appliance()
    marked = _marked(appliance, monkeypatch)
    site = appliance.sites.add("inside.test", timezone="UTC")
    t0 = _start() + 10 * 3600
    page = {"visitor": 1, "kind": EventKind.PAGEVIEW, "path": "/", "source": "Google", "channel": "Organic Search"}
    appliance.record_sync([_event(site, dict(page, ts=t0 + offset, path=f"/{offset}")) for offset in (0, 600, 1200)])
    appliance.record_sync([_event(site, dict(page, visitor=2, ts=t0))])  # a bounce, so far
    appliance.record_sync([_event(site, dict(page, visitor=2, ts=t0 + 900, kind=EventKind.CUSTOM, source=""))])
    conversion = dict(page, kind=EventKind.CONVERSION, source="", channel="Direct", path="/checkout")
    appliance.record_sync([_event(site, dict(conversion, ts=t0 + 300)), _event(site, dict(conversion, visitor=2, ts=t0 + 60))])
    assert not marked
    day = day_from_number(day_bucket(t0))
    counted = report(appliance, site, day, day)
    assert counted["aggregate"]["bounce_rate"] == 0  # visitor 2's visit: no bounce any more
    with appliance.coordinator.mutex:  # (it may change: a bounce counter gone to 0 is deleted)
        appliance.rederiver.rederive_day(site.id, day_bucket(t0))
    assert report(appliance, site, day, day) == counted
    # what does change a written visit is marked: a page view inside it, an event before it
    appliance.record_sync([_event(site, dict(page, ts=t0 + 700, path="/late"))])
    assert (site.id, day_bucket(t0)) in marked
    del marked[:]
    appliance.record_sync([_event(site, dict(conversion, ts=t0 - 60))])
    assert (site.id, day_bucket(t0)) in marked


def test_a_history_visit_touched_recently_stays_open_at_the_expiry(make_appliance, monkeypatch):
    """Idle by the wall clock at once, a history visit whose next events are still to come is
    not closed by the expiry right after it was written: they join it, nothing is marked."""
    appliance = make_appliance()
    marked = _marked(appliance, monkeypatch)
    site = appliance.sites.add("recent.test", timezone="UTC")
    t0 = _start() + 10 * 3600
    page = {"visitor": 1, "kind": EventKind.PAGEVIEW, "path": "/", "source": "", "channel": "Direct"}
    appliance.record_sync([_event(site, dict(page, ts=t0))])
    assert appliance.visits.expire(time.time()) == 0
    appliance.record_sync([_event(site, dict(page, ts=t0 + 600))])
    assert not marked and len(appliance.visits) == 1
    assert appliance.visits.expire(_later()) == 1
