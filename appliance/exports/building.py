"""Reports from queries: the dashboard, a chosen set of metrics and dimensions, or any stats
result, turned into an :class:`appliance.extensions.Report` and rendered by an exporter.

Every number comes from :class:`appliance.query.stats.Stats` (the one planner the screen and
the JSON API read), so the CSV, the JSON and the PDF show what the screen shows. The charts
are :mod:`appliance.exports.charts`' SVG, the markup the dashboard draws. Nothing here needs
the web room, so the job runner can build and send a scheduled report on its own.
"""

from __future__ import annotations

import io
import re
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime

import msgspec

from appliance.dimensions import DIMENSIONS
from appliance.errors import DomainError
from appliance.exports.charts import chart_points, line_chart
from appliance.exports.tables import (
    DIMENSION_LABELS,
    METRIC_LABELS,
    describe_filters,
    describe_period,
    rows_table,
    totals_table,
)
from appliance.extensions import Chart, Report, Table
from appliance.filters import make_filter
from appliance.models import Site
from appliance.query.spec import Query

TOP_METRICS = ("visitors", "visits", "pageviews", "views_per_visit", "bounce_rate", "visit_duration")
AGGREGATE_METRICS = (*TOP_METRICS, "events", "conversions")
SERIES_METRICS = ("visitors", "visits", "pageviews")
BREAKDOWN_METRICS = ("visitors", "pageviews", "visits", "bounce_rate", "visit_duration")
# The dashboard's widgets and their tabs, in the order the screen shows them.
DASHBOARD_DIMENSIONS = (
    "channel", "source", "referrer", "utm_source", "utm_medium", "utm_campaign",
    "page", "entry", "exit", "country", "region", "browser", "os", "device", "screen",
)
REPORT_DIMENSIONS = frozenset({*DIMENSIONS, "entry", "exit", "event"})
DASHBOARD_ROWS = 9  # the rows a dashboard widget shows
REPORT_ROWS = 10
PAIR_ROWS = 5  # a two-dimension table: the top values of the first, each split by the second


def _generated() -> datetime:
    return datetime.now(UTC).replace(microsecond=0)


def series_chart(appliance, query: Query, metric: str = "visitors", series: Sequence[Mapping] | None = None) -> Chart:
    """The dashboard's main chart of ``metric`` over the query (printed: no hover targets)."""
    rows = appliance.stats.timeseries(query) if series is None else series
    label = METRIC_LABELS.get(metric, metric)
    title = f"{label} per {query.interval}"
    points = chart_points(rows, metric, query.interval, query.site.timezone)
    return Chart(title=title, svg=str(line_chart(points, metric=label, title=title, interactive=False)))


def dimension_rows(appliance, query: Query, dimension: str, limit: int) -> list[dict[str, object]]:
    """A dimension's top rows as the dashboard lists them, keyed by the dimension's name:
    entry and exit pages have visit and exit figures; the rest are breakdowns. An unknown
    dimension is a 422 naming ``dimensions``."""
    if dimension not in REPORT_DIMENSIONS:
        raise DomainError("dimensions", f"unknown dimension {dimension!r} (known: {', '.join(sorted(REPORT_DIMENSIONS))})", 422)
    stats = appliance.stats
    if dimension == "entry":
        raw = stats.entry_pages(query, limit)
    elif dimension == "exit":
        raw = stats.exit_pages(query, limit)
    elif dimension == "event":
        raw = [{"value": row.pop("name"), **row} for row in stats.custom_events(query)[:limit]]
    else:
        raw = stats.breakdown(query, dimension, limit)["results"]
    return [{dimension: row["value"], **{k: v for k, v in row.items() if k != "value"}} for row in raw]


def dimension_table(appliance, query: Query, dimension: str, metrics: Sequence[str] = (), limit: int = REPORT_ROWS) -> Table:
    rows = dimension_rows(appliance, query, dimension, limit)
    columns = None
    if metrics and rows:
        kept = [metric for metric in metrics if metric in rows[0]]
        columns = [dimension, *(kept or [key for key in rows[0] if key != dimension])]
    return rows_table(DIMENSION_LABELS.get(dimension, dimension), rows, columns)


def pair_table(appliance, query: Query, first: str, second: str, metrics: Sequence[str]) -> Table:
    """The top values of ``first``, each split by its top values of ``second``."""
    rows = []
    for outer in dimension_rows(appliance, query, first, PAIR_ROWS):
        value = str(outer[first])
        scoped = msgspec.structs.replace(query, filters=[*query.filters, make_filter("is", _filter_name(first), [value])])
        rows.extend({first: value, **inner} for inner in dimension_rows(appliance, scoped, second, PAIR_ROWS))
    kept = [metric for metric in metrics if rows and metric in rows[0]]
    columns = [first, second, *(kept or [key for key in (rows[0] if rows else {}) if key not in (first, second)])]
    title = f"{DIMENSION_LABELS.get(first, first)} by {DIMENSION_LABELS.get(second, second).lower()}"
    return rows_table(title, rows, columns)


def _filter_name(dimension: str) -> str:
    return {"entry": "entry_page", "exit": "exit_page"}.get(dimension, dimension)


def _summary(totals: Mapping[str, object], metrics: Sequence[str]) -> tuple[tuple[str, object], ...]:
    return tuple((METRIC_LABELS.get(metric, metric), totals[metric]) for metric in metrics if metric in totals)


def _totals(appliance, query: Query, metrics: Sequence[str]) -> dict[str, object]:
    totals = appliance.stats.aggregate(query)
    totals.pop("converting_visitors_by_type", None)
    return {metric: totals[metric] for metric in metrics if metric in totals}


def report_from_query(
    appliance, site: Site, query: Query, *, metrics: list[str], dimensions: list[str], title: str,
    chart: bool = True, notes: str = "",
) -> Report:
    """A report of ``metrics`` over ``query``: the top line, a chart of the first series metric
    with its time series as a table (``chart=True``), and one table per dimension — or, with
    exactly two dimensions, one table of the first's top values each split by the second."""
    metrics = list(metrics) or list(TOP_METRICS)
    unknown = [metric for metric in metrics if metric not in AGGREGATE_METRICS and metric not in METRIC_LABELS]
    if unknown:
        raise DomainError("metrics", f"unknown metric {unknown[0]!r} (known: {', '.join(AGGREGATE_METRICS)})", 422)
    totals = _totals(appliance, query, metrics)
    tables = [totals_table("Totals", totals)]
    charts = []
    if chart:
        series = appliance.stats.timeseries(query)
        plotted = next((metric for metric in metrics if metric in SERIES_METRICS), "visitors")
        charts.append(series_chart(appliance, query, plotted, series))
        kept = [metric for metric in metrics if metric in SERIES_METRICS] or [plotted]
        tables.append(rows_table("Time series", series, ["date", *kept]))
    if len(dimensions) == 2:
        tables.append(pair_table(appliance, query, dimensions[0], dimensions[1], metrics))
    else:
        tables.extend(dimension_table(appliance, query, dimension, metrics) for dimension in dimensions)
    return Report(
        title=title, site=site.domain, period=describe_period(query), generated_at=_generated(),
        filters=describe_filters(query), summary=_summary(totals, metrics), tables=tuple(tables),
        charts=tuple(charts), notes=notes,
    )


def dashboard_report(appliance, site: Site, query: Query, *, title: str | None = None) -> Report:
    """The whole dashboard: its top line, its main chart and every widget's table (each tab
    of the sources, pages, locations and devices widgets, custom events and goals)."""
    stats = appliance.stats
    totals = _totals(appliance, query, AGGREGATE_METRICS)
    series = stats.timeseries(query)
    tables = [totals_table("Totals", totals), rows_table("Time series", series, ["date", *SERIES_METRICS])]
    tables.extend(dimension_table(appliance, query, dimension, limit=DASHBOARD_ROWS) for dimension in DASHBOARD_DIMENSIONS)
    tables.append(rows_table("Custom events", stats.custom_events(query), ["name", "visitors", "events"]))
    tables.append(goals_table(appliance, query))
    return Report(
        title=title or f"Dashboard of {site.domain}", site=site.domain, period=describe_period(query),
        generated_at=_generated(), filters=describe_filters(query), summary=_summary(totals, TOP_METRICS),
        tables=tuple(tables), charts=(series_chart(appliance, query, "visitors", series),),
    )


def goals_table(appliance, query: Query) -> Table:
    """The conversions widget: a row per defined goal, or per conversion type without goals;
    revenue in minor units per currency (``revenue.EUR.total_minor``)."""
    goals = appliance.goal_reports.report(query)
    if goals:
        rows = [{k: v for k, v in row.items() if k != "backfill"} for row in goals]
        return rows_table("Goals", rows)
    rows = appliance.stats.conversions(query)["goals"]
    return rows_table("Conversions", [{**row, "revenue_minor": dict(row.get("revenue_minor") or {})} for row in rows])


def result_report(site: Site, query: Query, title: str, result: object, *, charts: Sequence[Chart] = ()) -> Report:
    """Any stats result as a report of one table, with the API's own keys as column names: a
    list of rows as they are, a dict of scalars as one row, a breakdown's ``results``."""
    if isinstance(result, Mapping) and isinstance(result.get("results"), list):
        table = rows_table(title, result["results"])
    elif isinstance(result, Mapping):
        table = totals_table(title, {k: v for k, v in result.items() if k != "converting_visitors_by_type"})
    else:
        table = rows_table(title, result)  # type: ignore[arg-type]
    return Report(
        title=title, site=site.domain, period=describe_period(query), generated_at=_generated(),
        filters=describe_filters(query), tables=(table,), charts=tuple(charts),
    )


def table_report(site: Site, query: Query, table: Table, *, charts: Sequence[Chart] = ()) -> Report:
    """One table (a widget's, a details page's) as a report titled after it."""
    return Report(
        title=table.title, site=site.domain, period=describe_period(query), generated_at=_generated(),
        filters=describe_filters(query), tables=(table,), charts=tuple(charts),
    )


def filename(report: Report, extension: str) -> str:
    """``example.com-top-pages-2026-11-01.csv``: site, title and the day it was made, safe in
    any file system and in a ``Content-Disposition`` header."""
    stem = f"{report.site}-{report.title}-{report.generated_at:%Y-%m-%d}"
    return re.sub(r"[^A-Za-z0-9._-]+", "-", stem).strip("-").lower() + f".{extension}"


def export(appliance, report: Report, format_name: str) -> tuple[bytes, str, str]:
    """``report`` rendered by the exporter called ``format_name``: the file's bytes, media type
    and file name. An unknown format is a 422 naming ``format``."""
    exporter = appliance.extensions.exporter(format_name)
    stream = io.BytesIO()
    exporter.render(report, stream)
    return stream.getvalue(), exporter.media_type, filename(report, exporter.extension)
