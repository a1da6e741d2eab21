"""Plausible's ``events`` metric in breakdowns equals brute force over the stored events.

Hypothesis draws a batch of events of every kind (page views, custom events, conversions,
engagement pings) over a few visitors, pages, sources, channels and countries, with or without
a filter, commits them through the real path, and in half of the examples compacts the closed
days into column blocks. For every property the Plausible API breaks down by, each row's
``events`` must be the number of matching events of every kind but engagement pings in its
group, counted one event at a time by :mod:`tests.appliance.bruteforce` from the event log: a
page's events are those sent from it, a visit property's those of the visits it started, an
entry (exit) page's those of the visits that started (ended) on it.
"""

from __future__ import annotations

import time
from collections import Counter

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from appliance import dimensions as dims
from appliance.filters import make_filter
from appliance.query.plausible import PROPERTIES, PlausibleStats
from appliance.query.spec import Query
from tests.appliance.bruteforce import Reference
from tests.appliance.test_filters_property import _setup, event_strategy, shared  # noqa: F401 - the module's appliance

CHECKED = ("event:page", "visit:source", "visit:referrer", "visit:channel", "visit:country", "visit:entry_page",
           "visit:exit_page")
FILTERS = [None, make_filter("is", "country", ["DE"]), make_filter("is", "source", ["Google"]),
           make_filter("matches", "page", ["/blog/*"]), make_filter("is", "event", ["Signup"])]


def _expected(reference: Reference, property_name: str) -> Counter:
    """Events per group, one event at a time."""
    counts: Counter = Counter()
    for row in reference.active():
        if property_name in ("visit:entry_page", "visit:exit_page"):
            visit = reference.visit_of[id(row)]
            value = visit.entry_page if property_name == "visit:entry_page" else visit.exit_page
        else:
            value = reference.value(row, dims.DIMENSIONS[PROPERTIES[property_name]][0])
        if property_name == "visit:source" and value == "":
            value = "Direct / None"
        counts[value] += 1
    return counts


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(
    specs=st.lists(event_strategy, min_size=1, max_size=80),
    condition=st.sampled_from(FILTERS),
    compacted=st.booleans(),
)
def test_breakdown_events_equal_brute_force(shared, specs, condition, compacted):  # noqa: F811 - the fixture
    appliance = shared
    site, first, last = _setup(appliance, specs, "UTC")
    filters = [condition] if condition is not None else []
    query = Query(site=site, date_from=first, date_to=last, filters=filters)
    reference = Reference(appliance, site, first, last, filters, appliance.goals.list(site.id))
    if compacted:  # closed days move into column blocks and leave the log
        appliance.columns.compact(site.id, 0, int(time.time() // 86400))
        appliance.stats.scans.forget()
    plausible = PlausibleStats(appliance.stats)
    for property_name in CHECKED:
        key = property_name.split(":")[-1]
        metrics = "visits,events" if property_name in ("visit:entry_page", "visit:exit_page") else "visitors,pageviews,events"
        answer = plausible.breakdown(query, property_name, metrics, 1000, 1)
        expected = _expected(reference, property_name)
        for row in answer["results"]:
            assert row["events"] == expected[row[key]], (property_name, row, expected)
        # every visit has an entry and an exit page, so those rows hold every event
        if property_name in ("visit:entry_page", "visit:exit_page"):
            assert sum(row["events"] for row in answer["results"]) == sum(
                count for value, count in expected.items() if value), property_name
