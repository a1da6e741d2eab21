"""A dashboard view: everything the URL says about what to show, and how to change it.

The site dashboard keeps its whole state in the query string, so a view can be bookmarked
and shared and reproduces without JavaScript: the period (``period=7d`` or
``period=custom&from=...&to=...``), the comparison (``compare=off|previous_period|
year_over_year``), the chart's interval and metric, the filters (``filter=source:Google``,
repeatable) and each widget's tab (``sources=channel``). :func:`parse_view` reads it,
:meth:`View.url` writes it back with one change, and :meth:`View.query` turns it into the
:class:`~appliance.query.stats.Query` every stats function takes.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field, replace
from datetime import date, timedelta
from urllib.parse import quote_plus, urlencode

from appliance import dimensions as dims
from appliance.models import Site
from appliance.periods import local_today
from appliance.query.spec import Query, check_day
from appliance.reports.periods import PERIODS, resolve_period

DEFAULT_PERIOD = "30d"
COMPARISONS: dict[str, str] = {
    "previous_period": "Previous period",
    "year_over_year": "Year over year",
    "off": "No comparison",
}
CHART_METRICS: dict[str, str] = {"visitors": "Unique visitors", "visits": "Visits", "pageviews": "Page views"}
TABS: dict[str, tuple[str, ...]] = {
    "sources": ("channel", "source", "referrer", "utm_source", "utm_medium", "utm_campaign"),
    "pages": ("page", "entry", "exit"),
    "locations": ("country", "region"),
    "devices": ("browser", "os", "device", "screen"),
}
FILTERABLE = (*dims.DIMENSIONS, "event", "entry_page", "exit_page")
MAX_FILTERS = 8


@dataclass(frozen=True)
class View:
    site: Site
    period: str
    date_from: date
    date_to: date
    compare: str  # "previous_period", "year_over_year" or "off"
    interval: str
    metric: str
    filters: tuple[tuple[str, str], ...] = ()
    tabs: dict[str, str] = field(default_factory=dict)

    # -- reading ------------------------------------------------------------------------
    @property
    def label(self) -> str:
        if self.period != "custom":
            return PERIODS[self.period]
        return f"{self.date_from:%-d %b %Y} – {self.date_to:%-d %b %Y}"

    @property
    def days(self) -> int:
        return (self.date_to - self.date_from).days + 1

    @property
    def intervals(self) -> tuple[str, ...]:
        if self.days <= 2:
            return ("hour",)
        if self.days <= 7:
            return ("hour", "day")
        if self.days <= 92:
            return ("day", "week")
        return ("day", "week", "month")

    @property
    def comparing(self) -> bool:
        return self.compare != "off"

    def tab(self, widget: str) -> str:
        return self.tabs.get(widget) or TABS[widget][0]

    def query(self, interval: str | None = None) -> Query:
        extra = {"filters": query_filters(self.filters)} if self.filters else {}
        return Query(
            site=self.site, date_from=self.date_from, date_to=self.date_to,
            interval=interval or self.interval, **extra,
        )

    # -- writing ------------------------------------------------------------------------
    def params(self, **changes) -> list[tuple[str, str]]:
        # A page draws a hundred links or more (a filter link per row, a period link per
        # choice): the view's own parameters are worked out once, and a change is applied
        # field by field instead of copying the whole view (dataclasses.replace) per link.
        if not changes:
            return list(self._own_params)
        unknown = changes.keys() - self.__dataclass_fields__.keys()
        if unknown:
            raise TypeError(f"View has no field {sorted(unknown)[0]!r}")
        view = {**{name: getattr(self, name) for name in _LINK_FIELDS}, **changes}
        view["tabs"] = {**self.tabs, **changes.get("tabs", {})}
        return self._params_of(view)

    @functools.cached_property
    def _own_params(self) -> tuple[tuple[str, str], ...]:
        return tuple(self._params_of({name: getattr(self, name) for name in _LINK_FIELDS}))

    @staticmethod
    def _params_of(view: dict) -> list[tuple[str, str]]:
        period, date_from, date_to = view["period"], view["date_from"], view["date_to"]
        out: list[tuple[str, str]] = [("period", period)]
        if period == "custom":
            out += [("from", date_from.isoformat()), ("to", date_to.isoformat())]
        if view["compare"] != "previous_period":
            out.append(("compare", view["compare"]))
        if view["interval"] != default_interval((date_to - date_from).days + 1):
            out.append(("interval", view["interval"]))
        if view["metric"] != "visitors":
            out.append(("metric", view["metric"]))
        out += [("filter", f"{dimension}:{value}") for dimension, value in view["filters"]]
        out += [(widget, tab) for widget, tab in sorted(view["tabs"].items()) if tab and tab != TABS[widget][0]]
        return out

    def qs(self, **changes) -> str:
        return urlencode(self.params(**changes), quote_via=_quoted) if changes else self._own_query

    @functools.cached_property
    def _own_query(self) -> str:
        return urlencode(self.params(), quote_via=_quoted)

    def url(self, path: str = "", **changes) -> str:
        """The dashboard's URL (or ``path`` under the site) with ``changes`` applied."""
        base = f"/sites/{self.site.domain}{path}"
        query = self.qs(**changes)
        return f"{base}?{query}" if query else base

    def with_period(self, period: str) -> str:
        start, end = period_range(period, local_today(self.site.timezone))
        days = (end - start).days + 1
        return self.url(period=period, date_from=start, date_to=end, interval=default_interval(days))

    def with_filter(self, dimension: str, value: str) -> str:
        kept = tuple(f for f in self.filters if f[0] != dimension)
        return self.url(filters=(*kept, (dimension, value))[:MAX_FILTERS])

    def without_filter(self, dimension: str, value: str) -> str:
        return self.url(filters=tuple(f for f in self.filters if f != (dimension, value)))


@functools.lru_cache(maxsize=4096)
def _quoted(text: str, safe: str = "", encoding: str | None = None, errors: str | None = None) -> str:
    """``quote_plus``, remembered: a page's links repeat the same names and values."""
    return quote_plus(text, safe, encoding, errors)


# What a link writes back (``params``); ``tabs`` merge with the view's own.
_LINK_FIELDS = ("period", "date_from", "date_to", "compare", "interval", "metric", "filters", "tabs")


def default_interval(days: int) -> str:
    if days <= 2:
        return "hour"
    if days <= 92:
        return "day"
    return "month"


def period_range(period: str, today: date) -> tuple[date, date]:
    """The dates of a relative period on ``today``; anything unknown reads as the last 30 days."""
    return resolve_period(period if period in PERIODS and period != "custom" else "30d", today)


def _date(text: str | None) -> date | None:
    try:
        return date.fromisoformat(text) if text else None
    except ValueError:
        return None


def parse_filters(raw: list[str]) -> tuple[tuple[str, str], ...]:
    """``["source:Google", "country:DE"]`` → pairs; unknown dimensions are ignored, and
    one value per dimension (the last) is kept."""
    found: dict[str, str] = {}
    for item in raw[: MAX_FILTERS * 2]:
        dimension, sep, value = item.partition(":")
        if sep and dimension in FILTERABLE and len(value) <= 500:
            found.pop(dimension, None)
            found[dimension] = value
    return tuple(found.items())[:MAX_FILTERS]


def query_filters(filters: tuple[tuple[str, str], ...]) -> list:
    """The filters as ``Query.filters`` takes them: one ``is`` condition per dimension."""
    from appliance.filters import make_filter  # present once Query takes filters

    return [make_filter("is", dimension, [value]) for dimension, value in filters]


def parse_view(site: Site, params, today: date | None = None) -> View:
    """The view a request's query parameters describe; anything invalid falls back to a default."""
    today = today or local_today(site.timezone)
    period = params.get("period") or DEFAULT_PERIOD
    if period not in PERIODS:
        period = DEFAULT_PERIOD
    start, end = period_range(period, today)
    if period == "custom":
        custom_from, custom_to = _date(params.get("from")), _date(params.get("to"))
        if custom_from and custom_to:
            start, end = sorted((custom_from, custom_to))
            check_day("start_date", start)
            check_day("end_date", end)
            if (end - start).days > 3660:
                start = end - timedelta(days=3660)
        else:
            period = DEFAULT_PERIOD
    days = (end - start).days + 1
    compare = params.get("compare") or "previous_period"
    if compare not in COMPARISONS:
        compare = "previous_period"
    view = View(site=site, period=period, date_from=start, date_to=end, compare=compare,
                interval=default_interval(days), metric="visitors")
    interval = params.get("interval")
    if interval in view.intervals:
        view = replace(view, interval=interval)
    elif view.interval not in view.intervals:
        view = replace(view, interval=view.intervals[0])
    metric = params.get("metric")
    if metric in CHART_METRICS:
        view = replace(view, metric=metric)
    getall = getattr(params, "getall", None)
    raw_filters = getall("filter", []) if getall else ([params["filter"]] if params.get("filter") else [])
    tabs = {widget: params.get(widget) for widget, choices in TABS.items() if params.get(widget) in choices}
    view = replace(view, filters=parse_filters(list(raw_filters)), tabs=tabs)
    if view.comparing:
        view.query().compared(view.compare)  # a comparison period before 1970: QueryError("compare")
    return view
