"""Property: a filtered query equals brute force over the same events.

Hypothesis draws a batch of events (visitors, kinds, pages, sources, countries, properties,
client session ids, times spread over three days around midnight, so visits split on the
timeout and on session ids) and a list of filters over every kind of dimension and operator.
The events go through the real commit path (counters, visits, event log), and in half of the
examples the closed days are then compacted into stored column blocks (leaving the log); the
reports of :mod:`appliance.query.stats` with those filters — served from column blocks — must equal
:mod:`tests.appliance.bruteforce`, which decodes the log and applies the documented semantics
one event at a time.
"""

from __future__ import annotations

import itertools
import time
from datetime import timedelta

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from appliance.definitions.goals import GoalInput
from appliance.filters import make_filter
from appliance.models import Event, EventKind
from appliance.periods import local_today
from appliance.query.spec import Query
from tests.appliance.bruteforce import Reference

PAGES = ["/", "/pricing", "/blog/a", "/blog/b", "/docs/x"]
SOURCES = ["", "Google", "Facebook", "news.example"]
CHANNELS = ["Direct", "Organic Search", "Organic Social", "Referral", ""]
COUNTRIES = ["DE", "FR", "US", ""]
NAMES = ["Signup", "Download"]
CONVERSIONS = ["purchase", "trial"]
TIMEZONES = ["UTC", "Europe/Berlin", "America/New_York"]
_sites = itertools.count(1)


@pytest.fixture(scope="module")
def shared(tmp_path_factory):
    from appliance.config import load_settings
    from appliance.runtime.appliance import Appliance

    settings_ = load_settings(environ={}, data_dir=str(tmp_path_factory.mktemp("prop") / "data"))
    with Appliance(settings_) as appliance:
        yield appliance


event_strategy = st.fixed_dictionaries(
    {
        "kind": st.sampled_from([EventKind.PAGEVIEW] * 4 + [EventKind.CUSTOM, EventKind.CONVERSION, EventKind.ENGAGEMENT]),
        "visitor": st.integers(1, 8),
        "minute": st.integers(0, 3 * 24 * 60 // 7),  # in steps of 7 minutes: gaps over and under 30
        "page": st.sampled_from(PAGES),
        "source": st.sampled_from(SOURCES),
        "channel": st.sampled_from(CHANNELS),
        "country": st.sampled_from(COUNTRIES),
        "name": st.sampled_from(NAMES),
        "conversion": st.sampled_from(CONVERSIONS),
        "plan": st.sampled_from(["", "pro", "free"]),
        "hint": st.sampled_from(["", "", "", "s1", "s2"]),
        "amount": st.sampled_from([0, 0, 500, 1999]),
        "currency": st.sampled_from(["EUR", "USD"]),
    }
)

DIMENSION_VALUES = {
    "page": PAGES + ["/blog/*", "*/b", "blog"],
    "source": SOURCES + ["Goo", "*.example"],
    "channel": CHANNELS + ["Organic*", "Search"],
    "country": COUNTRIES,
    "event": NAMES + CONVERSIONS + ["pageview", "Sign*"],
    "prop:plan": ["pro", "free", "p*"],
    "entry_page": PAGES + ["/blog/*"],
    "exit_page": PAGES + ["/docs*"],
    "goal": ["Pricing", "Signed up", "Pro purchase", "*"],
}
filter_strategy = st.tuples(
    st.sampled_from(["is", "is_not", "contains", "does_not_contain", "matches", "does_not_match"]),
    st.sampled_from(sorted(DIMENSION_VALUES)),
).flatmap(
    lambda pair: st.lists(st.sampled_from(DIMENSION_VALUES[pair[1]]), min_size=1, max_size=3).map(
        lambda values: make_filter(pair[0], pair[1], values)
    )
)


def _event(site, base, spec) -> Event:
    kind = spec["kind"]
    name = {EventKind.PAGEVIEW: "pageview", EventKind.CUSTOM: spec["name"], EventKind.CONVERSION: spec["conversion"]}.get(
        kind, "engagement"
    )
    props = {"plan": spec["plan"]} if spec["plan"] and kind in (EventKind.CUSTOM, EventKind.CONVERSION) else {}
    paid = kind is EventKind.CONVERSION and spec["amount"]
    return Event(
        kind=kind,
        site_id=site.id,
        timestamp=base + spec["minute"] * 7 * 60 + 0.123 + spec.get("tie", 0) / 1000,
        name=name,
        visitor_id=spec["visitor"] * 7919,
        session_hint=spec["hint"],
        path=spec["page"],
        source=spec["source"],
        referrer_host=spec["source"].lower(),
        channel=spec["channel"],
        country=spec["country"],
        props=props,
        revenue=spec["amount"] if paid else 0,
        currency=spec["currency"] if paid else "",
        engaged_ms=1500 if kind is EventKind.ENGAGEMENT else 0,
        scroll_depth=40 if kind is EventKind.ENGAGEMENT else 0,
    )


def _setup(appliance, specs, timezone):
    site = appliance.sites.add(f"prop{next(_sites)}.example", timezone=timezone)
    today = local_today(timezone)
    base = time.time() - 4 * 86400
    appliance.record_sync([_event(site, base, spec) for spec in specs])
    for goal in (
        GoalInput(name="Pricing", kind="page", page="/pricing"),
        GoalInput(name="Signed up", kind="event", event="Signup"),
        GoalInput(name="Pro purchase", kind="conversion", event="purchase", prop_key="plan", prop_value="pro"),
    ):
        appliance.goals.create(site.id, goal)
    appliance.goals.wait()
    return site, today - timedelta(days=6), today


def _names(appliance, by_id):
    return {appliance.strings.text(i): n for i, n in by_id.items()}


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(
    specs=st.lists(event_strategy, min_size=1, max_size=120),
    filters=st.lists(filter_strategy, min_size=1, max_size=3),
    timezone=st.sampled_from(TIMEZONES),
    interval=st.sampled_from(["day", "week", "month"]),
    compacted=st.booleans(),
)
def test_filtered_reports_equal_brute_force(shared, specs, filters, timezone, interval, compacted):
    appliance = shared
    site, first, last = _setup(appliance, specs, timezone)
    query = Query(site=site, date_from=first, date_to=last, interval=interval, filters=filters)
    stats = appliance.stats
    # the reference decodes the event log, so it is built before any day is compacted
    reference = Reference(appliance, site, first, last, filters, appliance.goals.list(site.id))
    if compacted:  # closed days move into column blocks and leave the log
        appliance.columns.compact(site.id, 0, int(time.time() // 86400))
        appliance.stats.scans.forget()

    got = stats.aggregate(query)
    got["converting_visitors_by_type"] = _names(appliance, got["converting_visitors_by_type"])
    assert got == reference.aggregate()
    assert stats.timeseries(query) == reference.timeseries(interval)
    for dimension in ("page", "source", "country", "channel"):
        assert stats.breakdown(query, dimension, 3) == reference.breakdown(dimension, 3)
    entries, exits = reference.entry_exit()
    assert {row["value"]: row for row in stats.entry_pages(query, 100)} == entries
    assert {row["value"]: row for row in stats.exit_pages(query, 100)} == exits
    assert stats.custom_events(query) == reference.custom_events()
    assert stats.conversions(query) == reference.conversions()
    assert stats.traffic_report(query) == reference.traffic()


def test_no_filter_matches_the_counters(shared):
    """With a filter that keeps everything, the scan agrees with the pre-aggregated counters
    wherever both are exact (small sets: sketches are exact below 256 visitors)."""
    specs = [
        {"kind": EventKind.PAGEVIEW, "visitor": v, "minute": m, "page": PAGES[m % 5], "source": "", "channel": "Direct",
         "country": "DE", "name": "", "conversion": "", "plan": "", "hint": "", "amount": 0, "currency": ""}
        for v in range(1, 6) for m in range(0, 40, 3)
    ]
    site, first, last = _setup(shared, specs, "UTC")
    plain = Query(site=site, date_from=first, date_to=last)
    everything = Query(site=site, date_from=first, date_to=last, filters=[make_filter("matches", "page", ["*"])])
    fast, scanned = shared.stats.aggregate(plain), shared.stats.aggregate(everything)
    for key in ("visitors", "visits", "pageviews", "bounce_rate", "views_per_visit"):
        assert fast[key] == scanned[key], key
    fast_pages = {r["value"]: r["pageviews"] for r in shared.stats.breakdown(plain, "page", 10)["results"]}
    scanned_pages = {r["value"]: r["pageviews"] for r in shared.stats.breakdown(everything, "page", 10)["results"]}
    assert fast_pages == scanned_pages


def _unfiltered(appliance, site, first, last):
    stats = appliance.stats
    query = Query(site=site, date_from=first, date_to=last, interval="day")
    got = {"aggregate": stats.aggregate(query), "timeseries": stats.timeseries(query)}
    got["aggregate"]["converting_visitors_by_type"] = _names(appliance, got["aggregate"]["converting_visitors_by_type"])
    for dimension in ("page", "source", "channel", "country"):
        got[dimension] = stats.breakdown(query, dimension, 100)
    got["entry"] = {row["value"]: row for row in stats.entry_pages(query, 100)}
    got["exit"] = {row["value"]: row for row in stats.exit_pages(query, 100)}
    got["traffic"] = stats.traffic_report(query)
    return got


def _without_duration(report):
    """A report without visit durations: the counters keep whole seconds per visit, the
    brute force milliseconds, so an average may round one second apart."""
    if isinstance(report, dict):
        return {k: _without_duration(v) for k, v in report.items() if k != "visit_duration"}
    if isinstance(report, list):
        return [_without_duration(v) for v in report]
    return report


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(
    specs=st.lists(event_strategy, min_size=1, max_size=120),
    timezone=st.sampled_from(TIMEZONES),
    order=st.randoms(use_true_random=False),
    batches=st.integers(1, 6),
    compacted=st.booleans(),
)
def test_unfiltered_reports_do_not_depend_on_arrival_order(shared, specs, timezone, order, batches, compacted):
    """The counted path (counters and sketches) gives the same reports whether the events
    arrive in time order or in a random permutation, in several batches, and whether some
    arrive late for days already closed and compacted into column blocks; and it equals
    brute force over the time-ordered events."""
    appliance = shared
    # Events of the same millisecond are ordered by arrival on every path (the log sequence),
    # so which of two tied events starts a visit is the arrival order's to decide: give each
    # event a millisecond of its own (far below the 7-minute steps and the visit timeout).
    specs = [{**spec, "tie": index} for index, spec in enumerate(specs)]
    in_order = appliance.sites.add(f"prop{next(_sites)}.example", timezone=timezone)
    shuffled = appliance.sites.add(f"prop{next(_sites)}.example", timezone=timezone)
    base = time.time() - 4 * 86400
    horizon = appliance.visits.horizon
    appliance.visits.horizon = 0.0  # the time-ordered site on the live incremental path alone
    appliance.record_sync(sorted((_event(in_order, base, spec) for spec in specs), key=lambda event: event.timestamp))
    appliance.visits.horizon = horizon
    events = [_event(shuffled, base, spec) for spec in specs]
    order.shuffle(events)
    size = -(-len(events) // batches)
    for index in range(0, len(events), size):
        if compacted and index:  # what came so far moves into column blocks: the rest is late
            appliance.columns.compact(shuffled.id, 0, int(time.time() // 86400))
        appliance.record_sync(events[index : index + size])
    if compacted:
        appliance.columns.compact(shuffled.id, 0, int(time.time() // 86400))
    today = local_today(timezone)
    first = today - timedelta(days=6)
    expected = _unfiltered(appliance, in_order, first, today)
    assert _unfiltered(appliance, shuffled, first, today) == expected
    reference = Reference(appliance, shuffled, first, today, [])
    assert _without_duration(expected["aggregate"]) == _without_duration(reference.aggregate())
    assert expected["timeseries"] == reference.timeseries("day")
    for dimension in ("page", "source", "channel", "country"):
        assert _without_duration(expected[dimension]) == _without_duration(reference.breakdown(dimension, 100))
    entries, exits = reference.entry_exit()
    assert _without_duration(expected["entry"]) == _without_duration(entries)
    assert expected["exit"] == exits
    assert expected["traffic"] == reference.traffic()
