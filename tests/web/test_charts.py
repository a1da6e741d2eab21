"""The SVG charts (web/charts.py) and the dashboard's URL state (web/views.py)."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from datetime import date

import pytest

from appliance.models import Site
from web.charts import Point, compact_number, line_chart, nice_ceiling, sparkline
from web.views import parse_view, period_range

SVG = "{http://www.w3.org/2000/svg}"


def parse(markup) -> ET.Element:
    return ET.fromstring(str(markup))


@pytest.mark.parametrize(
    ("value", "ceiling"),
    [(0, 4), (3, 4), (5, 8), (9, 20), (99, 200), (286, 400), (1234, 2000), (40_000, 40_000)],
)
def test_axis_ceiling_is_four_whole_steps_at_or_above_the_value(value, ceiling):
    assert nice_ceiling(value) == ceiling
    assert nice_ceiling(value) >= value
    assert (nice_ceiling(value) / 4).is_integer()


@pytest.mark.parametrize(
    ("value", "text"),
    [(0, "0"), (7, "7"), (999, "999"), (1000, "1k"), (1234, "1.2k"), (25_500, "25.5k"), (250_000, "250k"),
     (2_500_000, "2.5M"), (1.5, "1.5")],
)
def test_compact_numbers(value, text):
    assert compact_number(value) == text


def test_line_chart_is_standalone_svg_with_one_hover_target_per_point():
    points = [Point(label=f"Day {i}", tick=f"D{i}", value=v) for i, v in enumerate([3, 10, 0, 7])]
    root = parse(line_chart(points, metric="Visitors", title="Visitors per day"))
    assert root.tag == f"{SVG}svg"
    assert root.get("viewBox") == "0 0 800 260"
    assert root.get("role") == "img" and root.get("aria-label") == "Visitors per day"
    line = root.find(f"{SVG}polyline[@class='line']")
    assert line is not None and len(line.get("points").split()) == 4
    # colours are attributes, so a PDF renderer without our stylesheet draws the same chart
    assert line.get("stroke").startswith("#")
    hover = root.findall(f"{SVG}g[@class='point']")
    assert len(hover) == 4
    assert [g.find(f"{SVG}title").text for g in hover] == ["Day 0: 3", "Day 1: 10", "Day 2: 0", "Day 3: 7"]
    assert all(g.get("tabindex") == "0" for g in hover)  # keyboard users reach the values too
    assert all(g.find(f"{SVG}g[@class='tip']").get("visibility") == "hidden" for g in hover)
    # the highest point touches the top of a 0..20 axis
    labels = [t.text for t in root.findall(f"{SVG}text[@class='axis']")]
    assert labels[:5] == ["0", "5", "10", "15", "20"]


def test_line_chart_draws_the_compared_period_dashed_and_mentions_it_on_hover():
    points = [Point(label="Mon", value=4), Point(label="Tue", value=6)]
    root = parse(line_chart(points, compare=[2, 9]))
    compare = root.find(f"{SVG}polyline[@class='compare']")
    assert compare is not None and compare.get("stroke-dasharray")
    titles = [g.find(f"{SVG}title").text for g in root.findall(f"{SVG}g[@class='point']")]
    assert titles == ["Mon: 4 (was 2)", "Tue: 6 (was 9)"]


def test_line_chart_escapes_labels_and_handles_empty_and_single_points():
    root = parse(line_chart([Point(label="<script>&", value=1)], title="a <b>"))
    assert root.find(f"{SVG}title").text == "a <b>"
    assert root.find(f"{SVG}g[@class='point']/{SVG}title").text == "<script>&: 1"
    empty = parse(line_chart([]))
    assert empty.find(f"{SVG}polyline") is None


def test_long_series_are_not_all_tab_stops():
    points = [Point(label=str(i), value=i) for i in range(720)]  # 30 days of hours
    root = parse(line_chart(points))
    assert not any(g.get("tabindex") for g in root.findall(f"{SVG}g[@class='point']"))
    assert len(root.findall(f"{SVG}text[@class='axis']")) <= 5 + 8  # y labels + about seven ticks


def test_sparkline():
    root = parse(sparkline([0, 5, 2, 8], width=100, height=20, label="last 30 days"))
    assert root.get("aria-label") == "last 30 days"
    assert len(root.find(f"{SVG}polyline").get("points").split()) == 4
    assert parse(sparkline([])).find(f"{SVG}polyline") is None


# -- the view in the URL ----------------------------------------------------------------
SITE = Site(id=1, domain="example.com")
TODAY = date(2026, 3, 15)


class Params(dict):
    """A query-string multidict as Litestar gives it."""

    def __init__(self, pairs):
        super().__init__()
        self.pairs = pairs
        for key, value in pairs:
            self.setdefault(key, value)

    def getall(self, key, default=None):
        return [value for name, value in self.pairs if name == key] or (default or [])


@pytest.mark.parametrize(
    ("period", "start", "end"),
    [("day", date(2026, 3, 15), date(2026, 3, 15)), ("yesterday", date(2026, 3, 14), date(2026, 3, 14)),
     ("7d", date(2026, 3, 9), date(2026, 3, 15)), ("30d", date(2026, 2, 14), date(2026, 3, 15)),
     ("month", date(2026, 3, 1), date(2026, 3, 15)), ("last_month", date(2026, 2, 1), date(2026, 2, 28)),
     ("year", date(2026, 1, 1), date(2026, 3, 15)), ("12mo", date(2025, 4, 1), date(2026, 3, 15))],
)
def test_period_ranges(period, start, end):
    assert period_range(period, TODAY) == (start, end)


def test_the_url_round_trips_the_whole_view():
    params = Params([("period", "custom"), ("from", "2026-03-10"), ("to", "2026-03-01"), ("compare", "off"),
                     ("interval", "month"), ("metric", "pageviews"), ("filter", "source:Google"),
                     ("filter", "country:DE"), ("filter", "bogus:x"), ("sources", "utm_campaign")])
    view = parse_view(SITE, params, TODAY)
    assert (view.date_from, view.date_to) == (date(2026, 3, 1), date(2026, 3, 10))  # swapped into order
    assert view.interval == "day"  # "month" is not offered for ten days
    assert view.metric == "pageviews" and not view.comparing
    assert view.filters == (("source", "Google"), ("country", "DE"))
    assert view.tab("sources") == "utm_campaign" and view.tab("pages") == "page"
    again = parse_view(SITE, Params(view.params()), TODAY)
    assert again == view
    assert view.url().startswith("/sites/example.com?period=custom&from=2026-03-01&to=2026-03-10")


def test_filters_are_added_replaced_and_removed_in_the_url():
    view = parse_view(SITE, Params([("filter", "source:Google")]), TODAY)
    assert "filter=source%3AGoogle" in view.url()
    replaced = view.with_filter("source", "Bing")
    assert "Google" not in replaced and "filter=source%3ABing" in replaced
    both = parse_view(SITE, Params([("filter", "source:Google"), ("filter", "page:/a b&c")]), TODAY)
    removed = both.without_filter("source", "Google")
    assert "source" not in removed and "filter=page%3A%2Fa+b%26c" in removed


def test_bad_parameters_fall_back_to_defaults():
    view = parse_view(SITE, Params([("period", "forever"), ("compare", "x"), ("interval", "minute"),
                                    ("metric", "x"), ("devices", "nope")]), TODAY)
    assert (view.period, view.compare, view.interval, view.metric) == ("30d", "previous_period", "day", "visitors")
    assert view.tab("devices") == "browser"
    assert parse_view(SITE, Params([("period", "custom"), ("from", "garbage")]), TODAY).period == "30d"
