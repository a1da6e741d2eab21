"""Plausible's Stats API v1 vocabulary, answered from Footfall's one query vocabulary.

:class:`PlausibleStats` takes Plausible's parameters (``period`` and ``date``, ``metrics``,
``property``, ``filters``, ``compare``, ``interval``, ``limit``, ``page``, ``with_imported``) and answers in
Plausible's shapes (``{"results": ...}``) by calling :class:`~appliance.query.stats.Stats`:
the numbers are the dashboard's. The mapping tables below are the documentation (README,
"Plausible-compatible Stats API"); whatever they do not name is refused with a
:class:`~appliance.query.spec.QueryError` naming the parameter (answered 400).
"""

from __future__ import annotations

import calendar
from datetime import date, timedelta

import msgspec

from appliance.filters import Filter, FilterError, parse_filters
from appliance.models import Site
from appliance.periods import local_today
from appliance.query.spec import Query, QueryError

PERIODS = ("day", "7d", "30d", "month", "6mo", "12mo", "custom")
# Plausible metric -> how Footfall answers it (every one from the same aggregate / rows)
AGGREGATE_METRICS = (
    "visitors", "visits", "pageviews", "views_per_visit", "bounce_rate", "visit_duration", "events", "conversion_rate",
)
TIMESERIES_METRICS = ("visitors", "visits", "pageviews", "views_per_visit", "bounce_rate", "visit_duration", "events")
HOURLY_METRICS = ("visitors", "pageviews", "events")  # visits are counted per day
# the time series metrics the filtered paths leave out: taken from an aggregate per bucket
BUCKET_AGGREGATE_METRICS = ("bounce_rate", "visit_duration", "events")
BREAKDOWN_METRICS = ("visitors", "visits", "pageviews", "views_per_visit", "bounce_rate", "visit_duration", "events")
# Plausible property -> Footfall breakdown dimension
PROPERTIES = {
    "event:page": "page",
    "event:hostname": "hostname",
    "visit:source": "source",
    "visit:referrer": "referrer",
    "visit:channel": "channel",
    "visit:utm_source": "utm_source",
    "visit:utm_medium": "utm_medium",
    "visit:utm_campaign": "utm_campaign",
    "visit:utm_term": "utm_term",
    "visit:utm_content": "utm_content",
    "visit:device": "device",
    "visit:browser": "browser",
    "visit:browser_version": "browser_version",
    "visit:os": "os",
    "visit:os_version": "os_version",
    "visit:country": "country",
    "visit:region": "region",
    "visit:screen": "screen",
    "visit:language": "language",
}
# answered by their own reports rather than the breakdown
SPECIAL_PROPERTIES = ("event:name", "event:goal", "visit:entry_page", "visit:exit_page")
# event:goal: per goal, its unique converters, its completions and their share of all visitors
GOAL_BREAKDOWN_METRICS = ("visitors", "events", "conversion_rate")
REPORT_OF = {"event:name": "custom_events", "visit:entry_page": "entry_pages", "visit:exit_page": "exit_pages"}
GOAL_DIMENSIONS = ("goal", "event")  # filters whose visitors convert (conversion_rate)
# the ``warning`` of an answer asked with_imported=true that could not include imported days
IMPORTED_WARNINGS = {
    "interval": "Imported stats are not included because the time dimension (i.e. the interval) is too short.",
    "query": "Imported stats are not included in the results because query parameters are not supported. "
             "For more information, see: https://plausible.io/docs/stats-api#filtering-imported-stats",
}


def _error(field: str, message: str) -> QueryError:
    return QueryError(field, message, 400)


def parse_day(text: str, field: str = "date") -> date:
    try:
        return date.fromisoformat(text.strip())
    except ValueError:
        raise _error(field, f"not a date (YYYY-MM-DD): {text!r}") from None


def _month_end(day: date) -> date:
    return day.replace(day=calendar.monthrange(day.year, day.month)[1])


def _months_back(day: date, months: int) -> date:
    index = day.year * 12 + day.month - 1 - months
    return date(index // 12, index % 12 + 1, 1)


def date_range(site: Site, period: str, date_text: str | None) -> tuple[date, date]:
    """Plausible's ``period`` and ``date`` as an inclusive local date range."""
    if period == "custom":
        first, comma, last = (date_text or "").partition(",")
        if not comma:
            raise _error("date", "custom period needs date=YYYY-MM-DD,YYYY-MM-DD")
        return parse_day(first), parse_day(last)
    anchor = parse_day(date_text) if date_text else local_today(site.timezone)
    if period == "day":
        return anchor, anchor
    if period in ("7d", "30d"):
        return anchor - timedelta(days=int(period[:-1]) - 1), anchor
    if period == "month":
        return anchor.replace(day=1), _month_end(anchor)
    if period in ("6mo", "12mo"):
        return _months_back(anchor, int(period[:-2]) - 1), _month_end(anchor)
    raise _error("period", f"Invalid period {period!r}: use one of {', '.join(PERIODS)}")


def with_imported(text: str | None) -> bool:
    """Plausible's ``with_imported``: ``true`` adds imported days where the query allows; absent
    or ``false`` (Plausible's default) leaves them out."""
    if text is None or text.strip().lower() == "false":
        return False
    if text.strip().lower() == "true":
        return True
    raise _error("with_imported", f"Invalid with_imported {text!r}: use true or false")


def metric_list(text: str | None, allowed: tuple[str, ...]) -> list[str]:
    metrics = [name.strip() for name in (text or "visitors").split(",") if name.strip()]
    for name in metrics:
        if name not in allowed:
            raise _error("metrics", f"The metric `{name}` is not supported here; supported: {', '.join(allowed)}")
    return metrics or ["visitors"]


def plausible_filters(text: str | None) -> list[Filter]:
    """``visit:browser==Firefox;event:page==/blog*`` (Plausible's v1 syntax is Footfall's short
    form with prefixed names, which :func:`~appliance.filters.parse_filters` reads)."""
    try:
        filters = parse_filters(text)
    except FilterError as error:
        raise _error("filters", error.message) from None
    if any(condition.dimension == "segment" for condition in filters):  # segments may be private
        raise _error("filters", "segments are not part of Plausible's API; use Footfall's /api/v1/stats")
    return filters


def _per_visit(pageviews: int, visits: int) -> float:
    return round(pageviews / visits, 2) if visits else 0.0


def plausible_events(totals: dict[str, object]) -> int:
    """Plausible's ``events``: every event but engagement pings, i.e. page views plus Footfall's
    ``events`` (custom events) plus its ``conversions`` (custom events carrying revenue, and
    conversions). Under a goal filter the matching events are the goal's, so this is the
    dashboard's total conversions. Footfall's own ``events`` (custom events only) is unchanged."""
    return sum(int(totals.get(name, 0)) for name in ("pageviews", "events", "conversions"))  # type: ignore[call-overload]


def _pick(row: dict[str, object], metrics: list[str]) -> dict[str, object]:
    picked = {}
    for name in metrics:
        if name == "views_per_visit":
            picked[name] = _per_visit(int(row.get("pageviews", 0)), int(row.get("visits", 0)))  # type: ignore[call-overload]
        else:
            picked[name] = row.get(name, 0)
    return picked


class PlausibleStats:
    """The three Stats API v1 endpoints over one :class:`~appliance.query.stats.Stats`."""

    def __init__(self, stats, goal_reports=None) -> None:
        self._stats = stats
        self._goal_reports = goal_reports  # :class:`~appliance.query.goal_reports.GoalReports`, for event:goal

    def query(self, site: Site, period: str | None, date_text: str | None, filters: str | None,
              interval: str = "day", imported: str | None = None) -> Query:
        first, last = date_range(site, period or "30d", date_text)
        try:
            return Query(site=site, date_from=first, date_to=last, interval=interval, filters=plausible_filters(filters),
                         imported=with_imported(imported))
        except QueryError as error:
            if error.field not in ("start_date", "end_date"):
                raise
            raise _error("date", error.message) from None  # Plausible names its one date parameter

    def _totals(self, query: Query, metrics: list[str]) -> dict[str, object]:
        totals = dict(self._stats.aggregate(query))
        totals["events"] = plausible_events(totals)
        if "conversion_rate" in metrics:
            goals = [f for f in query.filters if f.dimension in GOAL_DIMENSIONS]
            if not goals:
                raise _error("metrics", "Metric `conversion_rate` can only be queried with a goal filter "
                                        "(event:goal==NAME or event:name==NAME)")
            others = [f for f in query.filters if f.dimension not in GOAL_DIMENSIONS]
            # the goal-filtered visitors never include imported days: nor may the whole they are part of
            everyone = self._stats.aggregate(msgspec.structs.replace(query, filters=others, imported=False))
            whole = int(everyone.get("visitors", 0))
            totals["conversion_rate"] = round(100 * int(totals.get("visitors", 0)) / whole, 1) if whole else 0.0
        return _pick(totals, metrics)

    def aggregate(self, query: Query, metrics_text: str | None, compare: str | None) -> dict[str, object]:
        metrics = metric_list(metrics_text, AGGREGATE_METRICS)
        current = self._totals(query, metrics)
        if not compare:
            return self._warned({"results": {name: {"value": value} for name, value in current.items()}}, query, "aggregate")
        if compare != "previous_period":
            raise _error("compare", f"Invalid compare {compare!r}: use previous_period")
        previous = self._totals(query.compared("previous_period"), metrics)
        return self._warned({"results": {name: {"value": value, "change": _change(value, previous[name])}
                                         for name, value in current.items()}}, query, "aggregate")

    def _warned(self, answer: dict[str, object], query: Query, report: str, dimension: str | None = None) -> dict[str, object]:
        """``answer`` with Plausible's ``warning`` when it was asked with imported data and the
        range has imported days it could not include."""
        if query.imported:
            meta = self._stats.imported_meta(query, report, dimension)
            if meta is not None and not meta["included"]:
                hourly = report == "timeseries" and query.interval == "hour"
                answer["warning"] = IMPORTED_WARNINGS["interval" if hourly else "query"]
        return answer

    def timeseries(self, site: Site, period: str | None, date_text: str | None, filters: str | None,
                   metrics_text: str | None, interval: str | None, imported: str | None = None) -> dict[str, object]:
        metrics = metric_list(metrics_text, TIMESERIES_METRICS)
        period = period or "30d"
        buckets = {None: "hour" if period == "day" else "day", "date": "day", "day": "day", "hour": "hour",
                   "month": "month", "week": "week"}
        if interval not in buckets:
            raise _error("interval", f"Invalid interval {interval!r}: use date or month")
        query = self.query(site, period, date_text, filters, buckets[interval], imported)
        if query.interval == "hour":
            for name in metrics:
                if name not in HOURLY_METRICS:
                    raise _error("metrics", f"The metric `{name}` is counted per day: use interval=date "
                                            f"(per hour: {', '.join(HOURLY_METRICS)})")
        rows = self._stats.timeseries(query, visit_metrics=any(name in BUCKET_AGGREGATE_METRICS for name in metrics))
        rows = self._bucket_totals(query, rows, metrics)
        return self._warned({"results": [{"date": row["date"], **_pick(row, metrics)} for row in rows]},
                            query, "timeseries")

    def _bucket_totals(self, query: Query, rows: list[dict[str, object]], metrics: list[str]) -> list[dict[str, object]]:
        """``rows`` with the metrics the series left out (the filtered paths count visitors,
        visits and page views per bucket) taken from the aggregate of each bucket's days, and
        with Plausible's ``events`` (:func:`plausible_events`) in place of Footfall's."""
        if "events" in metrics and rows and "conversions" in rows[0]:  # the counted series: every kind of event
            for row in rows:
                row["events"] = plausible_events(row)
        missing = [name for name in BUCKET_AGGREGATE_METRICS if name in metrics and rows and name not in rows[0]]
        if not missing:
            return rows
        if query.interval == "hour":  # the filtered paths count no events per hour
            raise _error("metrics", f"The metric `{missing[0]}` per hour needs a query without filters; use interval=date")
        starts = [date.fromisoformat(str(row["date"])) for row in rows]
        for index, row in enumerate(rows):
            first = max(starts[index], query.date_from)
            last = starts[index + 1] - timedelta(days=1) if index + 1 < len(rows) else query.date_to
            totals = self._stats.aggregate(msgspec.structs.replace(query, date_from=first, date_to=last))
            for name in missing:
                row[name] = plausible_events(totals) if name == "events" else totals[name]
        return rows

    def breakdown(self, query: Query, property_name: str | None, metrics_text: str | None,
                  limit: int, page: int) -> dict[str, object]:
        if not property_name:
            raise _error("property", "The `property` parameter is required for breakdowns")
        key = property_name.split(":")[-1]
        wanted = limit * page
        report, dimension = REPORT_OF.get(property_name, "breakdown"), PROPERTIES.get(property_name)
        counts_events = property_name not in ("event:name", "event:goal") and "events" in [
            name.strip() for name in (metrics_text or "").split(",")]
        # imported days have no events (nor goal completions): such a breakdown leaves them out, and says so
        events_only = counts_events or property_name == "event:goal"
        imported_left_out = events_only and query.imported and self._stats.imported_meta(query, report, dimension) is not None
        if events_only:
            query = msgspec.structs.replace(query, imported=False)
        if property_name == "event:name":
            metrics = metric_list(metrics_text, ("visitors", "events"))
            totals = self._stats.aggregate(query)
            rows = [{"value": "pageview", "visitors": totals.get("visitors", 0), "events": totals.get("pageviews", 0)}]
            by_name = {row["name"]: {"value": row["name"], **row} for row in self._stats.custom_events(query)}
            for goal in self._stats.conversions(query)["goals"]:  # custom events with revenue, and conversions
                row = by_name.setdefault(goal["name"], {"value": goal["name"], "visitors": 0, "events": 0})
                # a name sent both with and without revenue: its visitors are at least those of each kind
                row["visitors"] = max(int(row["visitors"]), int(goal["visitors"]))
                row["events"] = int(row["events"]) + int(goal["conversions"])
            rows += list(by_name.values())
            rows.sort(key=lambda row: (-int(row["visitors"]), str(row["value"])))
        elif property_name == "event:goal" and self._goal_reports is not None:
            metrics = metric_list(metrics_text, GOAL_BREAKDOWN_METRICS)
            rows = [{"value": row["name"], "visitors": row["visitors"], "events": row["conversions"],
                     "conversion_rate": round(float(row["conversion_rate"]), 1)} for row in self._goal_reports.report(query)]
            rows.sort(key=lambda row: (-int(row["visitors"]), -int(row["events"]), str(row["value"])))
        elif property_name in ("visit:entry_page", "visit:exit_page"):
            metrics = metric_list(metrics_text, ("visits", "bounce_rate", "visit_duration", "exits", "pageviews", "events"))
            pages = self._stats.entry_pages if property_name == "visit:entry_page" else self._stats.exit_pages
            rows = pages(query, wanted)
        elif property_name.startswith("event:props:"):
            raise _error("property", f"Breaking down by custom property {property_name!r} is not supported")
        elif property_name in PROPERTIES:
            metrics = metric_list(metrics_text, BREAKDOWN_METRICS)
            rows = self._stats.breakdown(query, PROPERTIES[property_name], wanted)["results"]
        else:
            raise _error("property", f"Invalid property {property_name!r}; see README, Plausible-compatible Stats API")
        shown = rows[limit * (page - 1): wanted]
        if counts_events:  # Plausible's `events`: the events of every kind in each row's group
            counts = self._stats.event_counts(query, dimension or key)
            for row in shown:
                row["events"] = counts.get(str(row["value"]), 0)
        answer = {"results": [{key: _value(property_name, row["value"]), **_pick(row, metrics)} for row in shown]}
        if imported_left_out:
            answer["warning"] = IMPORTED_WARNINGS["query"]
        return self._warned(answer, query, report, dimension)


def _value(property_name: str, value: object) -> object:
    if property_name == "visit:source" and value == "":
        return "Direct / None"  # Plausible's name for visits without a source
    return value


def _change(current: object, previous: object) -> float | None:
    if not isinstance(current, int | float) or not isinstance(previous, int | float) or not previous:
        return None
    return round(100 * (current - previous) / previous)
