"""Stats queries over events with known timestamps: every function of the query vocabulary.

One week of hand-made traffic (Monday 2026-03-02 to Sunday 2026-03-08, plus one visit on
Friday 2026-02-27) is recorded once for the module; each test asks one question of it and
compares with numbers worked out by hand. Visitors over any range are unions of daily
visitors, never sums.
"""

from __future__ import annotations

from datetime import UTC, date, datetime

import pytest

from appliance.config import load_settings
from appliance.ingest.drafts import draft_from_event_body
from appliance.models import Event, EventBody, EventKind, RequestContext
from appliance.query.spec import Query, QueryError
from appliance.runtime.appliance import Appliance

MONDAY, SUNDAY = date(2026, 3, 2), date(2026, 3, 8)
LAST_FRIDAY = date(2026, 2, 27)
V1, V2, V3, V4, V5, V6, V7, V8 = range(101, 109)
WEDNESDAY_CROWD = (V3, V4, V5, V6, V7)


def at(day: date, hour: int, minute: int = 0) -> float:
    return datetime(day.year, day.month, day.day, hour, minute, tzinfo=UTC).timestamp()


def on(day_of_week: int) -> date:
    """0 = Monday 2026-03-02 ... 6 = Sunday 2026-03-08."""
    return date(2026, 3, 2 + day_of_week)


def view(
    site: int, visitor: int, timestamp: float, path: str, browser: str, channel: str, **fields
) -> Event:
    return Event(
        kind=EventKind.PAGEVIEW,
        site_id=site,
        timestamp=timestamp,
        name="pageview",
        visitor_id=visitor,
        hostname="stats.example",
        path=path,
        browser=browser,
        channel=channel,
        **fields,
    )


def week_of_traffic(site: int) -> list[Event]:
    events = []
    # V1 reads the home page every morning; on Sunday without a known channel (still direct).
    for day_of_week in range(7):
        channel = "" if day_of_week == 6 else "Direct"
        events.append(view(site, V1, at(on(day_of_week), 9), "/", "Firefox", channel))
    # V2 comes from Google on Monday and Tuesday, then opens the home page without a referrer
    # 30 minutes later: still the visit from Google, so still from Google (a visit property).
    events.append(
        view(site, V2, at(on(0), 10), "/pricing", "Chrome", "Organic Search", source="Google")
    )
    events.append(
        view(site, V2, at(on(1), 10), "/pricing", "Chrome", "Organic Search", source="Google")
    )
    events.append(view(site, V2, at(on(1), 10, 30), "/", "Chrome", "Direct"))
    # Five one-time readers of the blog on Wednesday afternoon.
    for visitor in WEDNESDAY_CROWD:
        channel = "Organic Social" if visitor in (V3, V4, V5) else "Referral"
        events.append(view(site, visitor, at(on(2), 14), "/blog", "Chrome", channel))
    # Someone the Friday before.
    events.append(view(site, V8, at(LAST_FRIDAY, 12), "/", "Safari", "Direct"))

    def custom(visitor, timestamp, name):
        return Event(
            kind=EventKind.CUSTOM, site_id=site, timestamp=timestamp, name=name, visitor_id=visitor
        )

    def conversion(visitor, timestamp, name, revenue=0, currency=""):
        return Event(
            kind=EventKind.CONVERSION,
            site_id=site,
            timestamp=timestamp,
            name=name,
            visitor_id=visitor,
            revenue=revenue,
            currency=currency,
        )

    events += [
        custom(V1, at(on(0), 9, 5), "signup"),
        custom(V2, at(on(1), 10, 5), "signup"),
        custom(V1, at(on(2), 9, 10), "download"),
        custom(V1, at(on(2), 9, 11), "download"),
        conversion(V1, at(on(3), 9, 15), "purchase", 1999, "USD"),
        conversion(V2, at(on(3), 11), "purchase", 500, "EUR"),
        conversion(V3, at(on(2), 14, 5), "trial"),
        Event(
            kind=EventKind.ENGAGEMENT,
            site_id=site,
            timestamp=at(on(0), 9, 20),
            name="engagement",
            visitor_id=V1,
            path="/",
            engaged_ms=30_000,
        ),
    ]
    return events


@pytest.fixture(scope="module")
def recorded(tmp_path_factory):
    settings = load_settings(environ={}, data_dir=str(tmp_path_factory.mktemp("stats") / "data"))
    with Appliance(settings) as appliance:
        site = appliance.sites.add("stats.example", timezone="UTC")
        events = week_of_traffic(site.id)
        # In two commits, so sketches and counters are merged across batches too.
        appliance.record_sync(events[: len(events) // 2])
        appliance.record_sync(events[len(events) // 2 :])
        yield appliance, site


def query(site, first: date = MONDAY, last: date = SUNDAY, interval: str = "day") -> Query:
    return Query(site=site, date_from=first, date_to=last, interval=interval)


def pick(rows: list[dict], *keys: str) -> list[tuple]:
    return [tuple(row[key] for key in keys) for row in rows]


# -- aggregate and timeseries ------------------------------------------------------------


def test_aggregate_over_the_week(recorded):
    appliance, site = recorded

    totals = appliance.stats.aggregate(query(site))

    assert totals["pageviews"] == 15
    assert totals["visitors"] == 7  # V1..V7, each once
    assert totals["events"] == 4
    assert totals["conversions"] == 3
    assert sorted(totals["converting_visitors_by_type"].values()) == [1, 2]


def test_visitors_over_a_week_are_a_union_not_a_sum_of_days(recorded):
    appliance, site = recorded

    days = appliance.stats.timeseries(query(site))
    week = appliance.stats.aggregate(query(site))

    daily_visitors = [row["visitors"] for row in days]
    assert daily_visitors == [2, 2, 6, 2, 1, 1, 1]
    assert sum(daily_visitors) == 15
    assert week["visitors"] == 7


def test_daily_timeseries(recorded):
    appliance, site = recorded

    rows = appliance.stats.timeseries(query(site, LAST_FRIDAY, SUNDAY))

    assert pick(rows, "date", "visitors", "pageviews") == [
        ("2026-02-27", 1, 1),
        ("2026-02-28", 0, 0),
        ("2026-03-01", 0, 0),
        ("2026-03-02", 2, 2),
        ("2026-03-03", 2, 3),
        ("2026-03-04", 6, 6),
        ("2026-03-05", 2, 1),
        ("2026-03-06", 1, 1),
        ("2026-03-07", 1, 1),
        ("2026-03-08", 1, 1),
    ]


def test_weekly_timeseries_starts_on_mondays_and_unions_visitors(recorded):
    appliance, site = recorded

    rows = appliance.stats.timeseries(query(site, LAST_FRIDAY, SUNDAY, "week"))

    assert pick(rows, "date", "visitors", "pageviews") == [
        ("2026-02-23", 1, 1),
        ("2026-03-02", 7, 15),
    ]


def test_monthly_timeseries(recorded):
    appliance, site = recorded

    rows = appliance.stats.timeseries(query(site, LAST_FRIDAY, date(2026, 3, 31), "month"))

    assert pick(rows, "date", "visitors", "pageviews") == [
        ("2026-02-01", 1, 1),
        ("2026-03-01", 7, 15),
    ]


def test_hourly_timeseries(recorded):
    appliance, site = recorded

    rows = appliance.stats.timeseries(query(site, on(2), on(2), "hour"))

    assert len(rows) == 24
    assert rows[0]["date"] == "2026-03-04T00:00:00+00:00"
    busy = {
        row["date"][11:16]: (row["visitors"], row["pageviews"])
        for row in rows
        if row["visitors"] or row["pageviews"]
    }
    assert busy == {"09:00": (1, 1), "14:00": (5, 5)}


# -- breakdowns, events, conversions -----------------------------------------------------


def test_breakdown_by_page_is_ordered_by_visitors_with_the_rest_summed(recorded):
    appliance, site = recorded

    everything = appliance.stats.breakdown(query(site), "page")
    top_two = appliance.stats.breakdown(query(site), "page", limit=2)

    assert pick(everything["results"], "value", "visitors", "pageviews") == [
        ("/blog", 5, 5),
        ("/", 2, 8),
        ("/pricing", 1, 2),
    ]
    assert everything["rest"] == {"values": 0, "pageviews": 0}
    assert pick(top_two["results"], "value") == [("/blog",), ("/",)]
    assert top_two["rest"] == {"values": 1, "pageviews": 2}


def test_breakdown_by_browser_and_source(recorded):
    appliance, site = recorded

    browsers = appliance.stats.breakdown(query(site), "browser")
    sources = appliance.stats.breakdown(query(site, on(1), on(1)), "source")

    assert pick(browsers["results"], "value", "visitors", "pageviews") == [
        ("Chrome", 6, 8),
        ("Firefox", 1, 7),
    ]
    # Tuesday: V1 direct; V2's visit came from Google, both its page views with it.
    assert pick(sources["results"], "value", "visitors", "pageviews") == [
        ("Google", 1, 2),
        ("", 1, 1),
    ]


def test_breakdown_of_an_unknown_dimension_is_refused(recorded):
    appliance, site = recorded

    with pytest.raises(QueryError) as refused:
        appliance.stats.breakdown(query(site), "shoe_size")

    assert refused.value.field == "property"


def test_custom_events(recorded):
    appliance, site = recorded

    rows = appliance.stats.custom_events(query(site))

    assert pick(rows, "name", "events", "visitors") == [("download", 2, 1), ("signup", 2, 2)]
    assert appliance.stats.custom_events(query(site, on(2), on(2))) == [
        {"name": "download", "events": 2, "visitors": 1}
    ]


def test_conversions_with_revenue_per_currency(recorded):
    appliance, site = recorded

    report = appliance.stats.conversions(query(site))

    assert report["visitors"] == 7
    assert report["total_conversions"] == 3
    assert report["converting_visitors"] == 3
    assert report["conversion_rate"] == 42.86
    goals = {goal["name"]: goal for goal in report["goals"]}
    assert list(goals) == ["purchase", "trial"]
    assert (goals["purchase"]["conversions"], goals["purchase"]["visitors"]) == (2, 2)
    assert goals["purchase"]["conversion_rate"] == 28.57
    assert goals["purchase"]["revenue_minor"] == {"USD": 1999, "EUR": 500}
    assert (
        goals["trial"]["conversions"],
        goals["trial"]["visitors"],
        goals["trial"]["revenue_minor"],
    ) == (1, 1, {})


def test_traffic_report(recorded):
    appliance, site = recorded

    report = appliance.stats.traffic_report(query(site))

    assert report["total_visitors"] == 7
    assert report["total_page_views"] == 15
    # "Direct" and an unknown channel are both direct; V1 is counted there once. V2's page
    # view without a referrer belongs to its visit from Google: V2 is search only.
    assert report["traffic_sources"] == {"direct": 1, "referral": 2, "search": 1, "social": 3}


def test_conversions_report(recorded):
    appliance, site = recorded

    assert appliance.stats.conversions_report(query(site)) == {
        "total_conversions": 3,
        "conversion_rate": 42.86,
        "conversion_types": {"purchase": 2, "trial": 1},
    }


def test_a_range_without_traffic_is_all_zeros(recorded):
    appliance, site = recorded
    empty = query(site, date(2025, 1, 1), date(2025, 1, 7))

    assert appliance.stats.aggregate(empty)["visitors"] == 0
    assert appliance.stats.aggregate(empty)["pageviews"] == 0
    assert {row["visitors"] for row in appliance.stats.timeseries(empty)} == {0}
    assert appliance.stats.breakdown(empty, "page")["results"] == []
    assert appliance.stats.traffic_report(empty)["traffic_sources"] == {
        "direct": 0,
        "referral": 0,
        "search": 0,
        "social": 0,
    }
    assert appliance.stats.conversions_report(empty)["conversion_rate"] == 0.0


@pytest.mark.parametrize(
    ("first", "last", "interval", "field"),
    [
        (SUNDAY, MONDAY, "day", "end_date"),
        (MONDAY, SUNDAY, "minute", "interval"),
        (date(2000, 1, 1), SUNDAY, "day", "end_date"),
    ],
)
def test_invalid_queries_are_refused(recorded, first, last, interval, field):
    _, site = recorded

    with pytest.raises(QueryError) as refused:
        query(site, first, last, interval)

    assert refused.value.field == field


# -- time zones and the pipeline ---------------------------------------------------------


def test_days_are_the_sites_local_days(appliance):
    tokyo = appliance.sites.add("tokyo.example", timezone="Asia/Tokyo")
    london = appliance.sites.add("london.example", timezone="UTC")
    instant = datetime(2026, 3, 1, 16, 0, tzinfo=UTC).timestamp()  # 2026-03-02 01:00 in Tokyo
    appliance.record_sync(
        [
            view(tokyo.id, V1, instant, "/", "Firefox", "Direct"),
            view(london.id, V1, instant, "/", "Firefox", "Direct"),
        ]
    )
    march_1, march_2 = date(2026, 3, 1), date(2026, 3, 2)

    assert pick(
        appliance.stats.timeseries(query(tokyo, march_1, march_2)), "date", "pageviews"
    ) == [
        ("2026-03-01", 0),
        ("2026-03-02", 1),
    ]
    assert pick(
        appliance.stats.timeseries(query(london, march_1, march_2)), "date", "pageviews"
    ) == [
        ("2026-03-01", 1),
        ("2026-03-02", 0),
    ]
    assert appliance.stats.aggregate(query(tokyo, march_1, march_1))["visitors"] == 0
    assert appliance.stats.aggregate(query(tokyo, march_2, march_2))["visitors"] == 1
    assert (
        appliance.stats.breakdown(query(tokyo, march_2, march_2), "page")["results"][0]["value"]
        == "/"
    )

    hours = appliance.stats.timeseries(query(tokyo, march_2, march_2, "hour"))
    assert len(hours) == 24
    assert hours[0]["date"] == "2026-03-02T00:00:00+09:00"
    assert [row["date"] for row in hours if row["pageviews"]] == ["2026-03-02T01:00:00+09:00"]


def test_events_through_the_pipeline_are_counted_on_their_own_timestamps(appliance):
    site = appliance.sites.add("piped.example")
    received = datetime(2026, 3, 10, 12, 0, tzinfo=UTC).timestamp()
    agent = "Mozilla/5.0 (X11; Linux x86_64; rv:125.0) Gecko/20100101 Firefox/125.0"
    events = []
    for number, day in enumerate([MONDAY, MONDAY, on(1), on(1), on(4)]):
        body = EventBody(
            event_type="page_view",
            site=site.domain,
            timestamp=datetime(day.year, day.month, day.day, 8, tzinfo=UTC),
            metadata={"page_url": f"https://piped.example/p{number % 2}"},
        )
        ip = f"198.51.100.{1 + number % 3}"  # three people, one of them on two days
        context = RequestContext(client_ip=ip, user_agent=agent, received_at=received)
        events.append(appliance.pipeline.process(draft_from_event_body(body), context))
    appliance.record_sync(events)

    assert appliance.stats.aggregate(query(site))["pageviews"] == 5
    assert appliance.stats.aggregate(query(site))["visitors"] == 3
    assert pick(appliance.stats.timeseries(query(site)), "pageviews") == [
        (2,),
        (2,),
        (0,),
        (0,),
        (1,),
        (0,),
        (0,),
    ]
    assert pick(
        appliance.stats.breakdown(query(site), "page")["results"], "value", "pageviews"
    ) == [("/p0", 3), ("/p1", 2)]
    assert pick(appliance.stats.breakdown(query(site), "browser")["results"], "value") == [
        ("Firefox",)
    ]


# -- date ranges (security review, issue 11) ------------------------------------------------------
@pytest.mark.parametrize(
    ("start", "end", "field"),
    [
        (date(1900, 1, 1), date(1970, 2, 1), "start_date"),
        (date(1970, 1, 1), date(1970, 1, 5), "start_date"),
        (date(1, 1, 1), date(1, 1, 1), "start_date"),
        (date(9998, 12, 1), date(9999, 12, 31), "end_date"),
        (date(9999, 12, 1), date(9999, 12, 31), "start_date"),
        (date(9998, 12, 31), date(9999, 1, 1), "end_date"),
    ],
)
def test_dates_outside_the_calendar_are_refused(appliance, start, end, field):
    from appliance.query.spec import Query, QueryError

    site = appliance.sites.add("dates.test")
    with pytest.raises(QueryError) as raised:
        Query(site=site, date_from=start, date_to=end)
    assert raised.value.field == field
    assert "1970-01-02" in raised.value.message and "9998-12-31" in raised.value.message


@pytest.mark.parametrize(
    ("start", "end", "mode"),
    [
        (date(1970, 1, 2), date(1970, 1, 2), "previous_period"),
        (date(1970, 1, 5), date(1970, 2, 5), "previous_period"),
        (date(1970, 12, 31), date(1971, 1, 5), "year_over_year"),
        (date(1971, 1, 1), date(1971, 1, 5), "year_over_year"),
    ],
)
def test_comparisons_before_1970_are_refused(appliance, start, end, mode):
    from appliance.query.spec import Query, QueryError

    site = appliance.sites.add("compare.test")
    query = Query(site=site, date_from=start, date_to=end, interval="hour")
    with pytest.raises(QueryError) as raised:
        query.compared(mode)
    assert raised.value.field == "compare"
    with pytest.raises(QueryError):
        appliance.stats.aggregate_compared(query, mode)


def test_the_edges_of_the_calendar_answer(appliance):
    from appliance.query.spec import Query

    site = appliance.sites.add("edges.test")
    for start, end in ((date(1970, 1, 2), date(1970, 1, 3)), (date(9998, 12, 30), date(9998, 12, 31))):
        query = Query(site=site, date_from=start, date_to=end, interval="hour")
        assert appliance.stats.timeseries(query)
        assert appliance.stats.aggregate(query)["visitors"] == 0
    later = Query(site=site, date_from=date(1971, 1, 2), date_to=date(1971, 1, 3))
    assert later.compared("year_over_year").date_from == date(1970, 1, 2)
    assert later.compared("previous_period").date_from == date(1970, 12, 31)
