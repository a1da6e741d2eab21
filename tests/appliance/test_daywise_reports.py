"""The filtered time series, breakdowns, custom events and conversions computed day by day
(:mod:`appliance.query.daywise_reports`) equal the plain scan over the whole period
(``Scans.timeseries_of``, ``breakdown_of``, ``custom_events_of``, ``conversions_of`` of a
``Selection``) exactly, on the varied
data of ``test_daywise_partials``: visits across midnights, engagement pings, sites in time
zones whose local days cut UTC blocks, days read from the log, from stored blocks and from
blocks written before format 5; every interval, every breakdown dimension, filters of every
kind but segments (which the plain path answers)."""

from __future__ import annotations

import pickle
import threading
import time
from datetime import timedelta

import pytest
from test_daywise_partials import FILTERS, loaded  # noqa: F401 - the module's data, shared

from appliance import dimensions as dims
from appliance.definitions.goals import GoalInput
from appliance.filters import parse_filters
from appliance.periods import local_today
from appliance.query import daysets, daywise, daywise_reports
from appliance.query.background import BackgroundWork
from appliance.query.goal_reports import filtered_goal_figures_of
from appliance.query.spec import Query

DIMENSIONS = list(dims.DIMENSIONS)


def _queries(sites, filters=FILTERS):
    for site in sites:
        today = local_today(site.timezone)
        for first in (today - timedelta(days=6), today - timedelta(days=2)):
            for text in filters:
                yield Query(site=site, date_from=first, date_to=today, filters=parse_filters(text))


def _compare(scans, sites, dimensions, intervals=("day", "hour", "week", "month"), filters=FILTERS) -> int:
    compared = 0
    for query in _queries(sites, filters):
        scans.forget()
        selection = scans.select(query)
        for interval in intervals:
            shaped = Query(site=query.site, date_from=query.date_from, date_to=query.date_to, interval=interval,
                           filters=query.filters)
            expected = scans.timeseries_of(scans.select(shaped))
            assert daywise_reports.timeseries(scans, shaped) == expected, (query.site.timezone, interval, query.filters)
            compared += sum(bucket["visitors"] for bucket in expected) > 0
        expected = scans.custom_events_of(selection)
        assert daywise_reports.custom_events(scans, query) == expected, (query.site.timezone, query.filters)
        compared += len(expected) > 0
        expected = scans.conversions_of(selection)
        assert daywise_reports.conversions(scans, query) == expected, (query.site.timezone, query.filters)
        compared += expected["total_conversions"] > 0
        for dimension in dimensions:
            expected = scans.breakdown_of(selection, dimension, 5)
            assert daywise_reports.breakdown(scans, query, dimension, 5) == expected, (query.site.timezone, dimension, query.filters)
            compared += len(expected["results"]) > 0
    return compared


def _week(site, text: str) -> Query:
    """The last seven days of ``site`` under the filters ``text``."""
    today = local_today(site.timezone)
    return Query(site=site, date_from=today - timedelta(days=6), date_to=today, filters=parse_filters(text))


def _walks(monkeypatch) -> list:
    """The queries the day-set walker walks from now on, in order."""
    walks = []
    real = daysets.day_set
    monkeypatch.setattr(daysets, "day_set", lambda *args: walks.append(args[1]) or real(*args))
    return walks


def test_series_and_breakdowns_day_by_day_equal_the_plain_scan(loaded):  # noqa: F811
    appliance, sites = loaded
    scans = appliance.stats.scans
    # from the log: the dashboard's dimensions on every site
    assert _compare(scans, sites, ["page", "source", "country", "device"]) >= 100
    for site in sites:
        appliance.columns.compact(site.id, 0, int(time.time() // 86400))
    # from stored blocks: every dimension, every interval
    assert _compare(scans, sites, DIMENSIONS) >= 300
    for site in sites:  # blocks written before format 5 (no edge rows stored): the same answers
        frame = scans.columns.frame(site.id, *daywise.span_ms(next(_queries([site]))))
        for block, _, _ in frame.parts:
            block.format = 4
    assert _compare(scans, sites, ["page", "source", "channel"], ("day", "hour"), FILTERS[:5]) >= 20
    scans.forget()


def test_segments_take_the_plain_path(loaded):  # noqa: F811
    appliance, sites = loaded
    scans = appliance.stats.scans
    site = sites[0]
    today = local_today(site.timezone)
    segmented = Query(site=site, date_from=today - timedelta(days=6), date_to=today, filters=parse_filters("segment==1"))
    assert daywise_reports.timeseries(scans, segmented) is None
    assert daywise_reports.breakdown(scans, segmented, "page", 10) is None
    assert daywise_reports.custom_events(scans, segmented) is None
    assert daywise_reports.conversions(scans, segmented) is None


@pytest.mark.parametrize("interval", ["day", "hour"])
def test_the_stats_path_answers_day_by_day(loaded, interval):  # noqa: F811
    """``Scans.timeseries`` / ``breakdown`` (what the dashboard asks) give the day-by-day answers."""
    appliance, sites = loaded
    scans = appliance.stats.scans
    site = sites[1]
    today = local_today(site.timezone)
    query = Query(site=site, date_from=today - timedelta(days=6), date_to=today, interval=interval,
                  filters=parse_filters("source==Google;device==Mobile"))
    scans.forget()
    assert scans.timeseries(query) == scans.timeseries_of(scans.select(query))
    assert scans.breakdown(query, "source", 10) == scans.breakdown_of(scans.select(query), "source", 10)
    assert scans.conversions(query) == scans.conversions_of(scans.select(query))
    assert scans.conversions(query)["goals"][0]["revenue_minor"]  # the data has revenue
    scans.forget()


def test_one_walk_answers_the_dashboard_set_as_the_plain_scan(loaded):  # noqa: F811
    """A :class:`DaySet` (every report of a dashboard in one walk) gives each report's plain answer."""
    appliance, sites = loaded
    scans = appliance.stats.scans
    for site in sites:  # goals of every kind, one with revenue
        for goal in (GoalInput(name="Purchase", kind="conversion", event="purchase"),
                     GoalInput(name="Signups", kind="event", event="Signup"), GoalInput(name="Blog", kind="page", page="/blog/*")):
            if goal.name not in {known.name for known in appliance.goals.list(site.id)}:
                appliance.goals.create(site.id, goal)
    appliance.goals.wait()
    compared = 0
    for query in _queries(sites, FILTERS[::2]):
        scans.forget()
        found = daysets.day_set(scans, query)
        selection = scans.select(query)
        goal_figures = filtered_goal_figures_of(scans, query)
        assert pickle.loads(found["goal_figures"]) == goal_figures, (query.site.timezone, query.filters)
        compared += any(revenue for _, _, revenue in goal_figures[1].values())
        assert pickle.loads(found["aggregate"]) == scans.aggregate_of(selection)
        assert pickle.loads(found["timeseries"]) == scans.timeseries_of(selection)
        assert pickle.loads(found["custom_events"]) == scans.custom_events_of(selection)
        assert pickle.loads(found["conversions"]) == scans.conversions_of(selection)
        for dimension in daysets.SET_DIMENSIONS:
            for limit in (3, 10):
                expected = scans.breakdown_of(selection, dimension, limit)
                assert found["breakdown"](dimension, limit) == expected, (query.site.timezone, dimension, query.filters)
                compared += len(expected["results"]) > 0
    assert compared >= 50
    scans.forget()


def test_a_dashboards_reports_share_one_walk_and_concurrent_askers_wait_for_it(loaded, monkeypatch):  # noqa: F811
    from concurrent.futures import ThreadPoolExecutor

    appliance, sites = loaded
    scans = appliance.stats.scans
    site = sites[1]
    query = _week(site, "country==DE")
    walks = _walks(monkeypatch)
    scans.forget()
    asks = [
        lambda: scans.timeseries(query), lambda: scans.breakdown(query, "page", 10), lambda: scans.breakdown(query, "os", 4),
        lambda: scans.custom_events(query), lambda: scans.conversions(query), lambda: scans.breakdown(query, "country", 10),
    ]
    with ThreadPoolExecutor(max_workers=3) as pool:
        answers = list(pool.map(lambda ask: ask(), asks))
    assert len(walks) == 1
    selection = scans.select(query)
    assert answers[1] == scans.breakdown_of(selection, "page", 10)
    assert answers[2] == scans.breakdown_of(selection, "os", 4)
    assert scans.aggregate(Query(site=site, date_from=query.date_from, date_to=query.date_to, filters=query.filters)) \
        == scans.aggregate_of(selection)
    scans.aggregate(query)["visitors"] = -1  # a caller changing its answer changes no kept one
    scans.memo.clear()
    assert scans.aggregate(query) == scans.aggregate_of(selection)
    assert len(walks) == 1
    scans.forget()


def test_pairs_merged_across_days_count_as_brute_force():
    """Distinct visitors per group: the same with the days' pairs merged as they come (a tiny
    merge threshold) as counted by brute force."""
    import numpy as np

    from appliance.query.daywise import PeriodVisitors
    from appliance.query.daywise_reports import Pairs

    rng = np.random.default_rng(5)
    for merge_at, wide in ((1, 1 << 40), (50, -2), (1 << 20, 1 << 31), (50, None)):
        days = [np.unique(np.concatenate([  # each day's sorted visitor hashes, the top bit set or not
            rng.integers(0, 1 << 63, 40, dtype=np.int64).astype(np.uint64) | np.uint64(1 << 63),
            rng.integers(1, 60, 30).astype(np.uint64),
        ])) for _ in range(12)]
        period = PeriodVisitors([lambda day=day: day for day in days])
        pairs, seen = Pairs(merge_at), set()
        for number, dictionary in enumerate(days):  # visitors coming back; a wide group first on the 7th day
            codes = rng.integers(0, len(dictionary), 200)
            choices = [0, 3, 7, 1 << 20] + ([wide] if wide is not None and number >= 6 else [])
            groups = rng.choice(choices, 200)
            pairs.add(groups, period.numbers(dictionary)[codes])
            seen |= set(zip(groups.tolist(), dictionary[codes].tolist(), strict=True))
        expected: dict[int, int] = {}
        for group, _ in seen:
            expected[group] = expected.get(group, 0) + 1
        assert pairs.counts() == expected


def test_a_prefetched_set_is_walked_once_in_the_background_and_answers_the_reports(loaded, monkeypatch):  # noqa: F811
    appliance, sites = loaded
    scans = appliance.stats.scans
    site = sites[0]
    query = _week(site, "page==/blog/*")
    walks = _walks(monkeypatch)
    scans.forget()
    appliance.stats.prefetch(query)
    appliance.stats.prefetch(query)  # under way or kept: not walked again
    scans.day_sets.start(scans, query).result(timeout=60)
    assert scans.aggregate(query) == scans.aggregate_of(scans.select(query))  # taken from the set
    assert appliance.stats.breakdown(query, "device", 10) == scans.breakdown_of(scans.select(query), "device", 10)
    assert len(walks) == 1
    segmented = Query(site=site, date_from=query.date_from, date_to=query.date_to, filters=parse_filters("segment==1"))
    appliance.stats.prefetch(segmented)  # the frame path's: nothing started
    appliance.stats.prefetch(Query(site=site, date_from=query.date_from, date_to=query.date_to))  # unfiltered: counters
    assert len(walks) == 1
    scans.forget()


def test_a_set_dropped_before_its_turn_is_not_walked(loaded, monkeypatch):  # noqa: F811
    appliance, sites = loaded
    scans = appliance.stats.scans
    first, second = _week(sites[0], "page==/blog/*"), _week(sites[0], "country==DE")
    walks = _walks(monkeypatch)
    background = BackgroundWork(workers=1)
    sets = daysets.DaySets(background, size=1)
    busy = threading.Event()
    held = background.submit(busy.wait, 60)  # the only worker is busy with another set
    try:
        dropped = sets.start(scans, first)
        kept = sets.start(scans, second)  # one set kept: the first is dropped before its turn
        assert dropped.cancelled()
        assert daysets._wait(dropped) is None  # a waiter scans for itself instead
    finally:
        busy.set()
    held.result(timeout=60)
    assert kept.result(timeout=60) is not None
    assert walks == [second]

