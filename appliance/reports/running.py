"""Running a saved report: its results from the stats vocabulary (:mod:`appliance.query.stats`),
so a report's numbers are the dashboard's and the API's for the same period and filters.

The results: the period asked, the totals of the chosen metrics (with the comparison period's
totals and the percent change when a comparison is on), the time series when the chart is on,
and the breakdown by the first dimension (each row broken down by the second, when there is
one). A scheduled send runs the same report over the period it sends (``dates=``).
"""

from __future__ import annotations

from datetime import date

import msgspec

from appliance.filters import make_filter
from appliance.models import Site
from appliance.periods import local_today
from appliance.query.spec import Query
from appliance.query.stats import Stats
from appliance.reports.definitions import ROW_METRICS, SavedReport
from appliance.reports.periods import PERIODS, resolve_period

NESTED_LIMIT = 10  # rows of the second dimension under each row of the first


def report_query(site: Site, report: SavedReport, dates: tuple[date, date] | None = None,
                 today: date | None = None) -> Query:
    """The :class:`Query` the report asks: its period (or ``dates``), interval and filters."""
    if dates is None:
        today = today or local_today(site.timezone)
        dates = resolve_period(report.period, today, report.start_date, report.end_date)
    start, end = dates
    interval = report.interval
    days = (end - start).days + 1
    if interval == "hour" and days > 31:  # an hourly chart of months: days instead
        interval = "day"
    filters = list(report.filters)
    if report.segment is not None:
        filters.append(make_filter("is", "segment", [str(report.segment)]))
    return Query(site=site, date_from=start, date_to=end, interval=interval, filters=filters)


def period_label(report: SavedReport, query: Query) -> str:
    span = f"{query.date_from.isoformat()} – {query.date_to.isoformat()}"
    return span if report.period == "custom" else f"{PERIODS[report.period]} ({span})"


def run_report(stats: Stats, site: Site, report: SavedReport, dates: tuple[date, date] | None = None,
               today: date | None = None) -> dict[str, object]:
    """The report's results as the JSON API answers them (numbers unformatted)."""
    query = report_query(site, report, dates, today)
    metrics = report.metrics
    out: dict[str, object] = {
        "report": {"id": report.id, "title": report.title, "notes": report.notes},
        "site": site.domain,
        "period": {"name": report.period, "label": period_label(report, query),
                   "start_date": query.date_from.isoformat(), "end_date": query.date_to.isoformat()},
        "interval": query.interval,
        "metrics": list(metrics),
        "filters": [msgspec.to_builtins(f) for f in query.filters],
    }
    if report.comparison != "off":
        compared = stats.aggregate_compared(query, report.comparison)
        comparison = compared["comparison"]
        out["totals"] = {m: compared["results"][m] for m in metrics}
        out["comparison"] = {
            "mode": comparison["mode"], "start_date": comparison["start_date"], "end_date": comparison["end_date"],
            "totals": {m: comparison["results"][m] for m in metrics},
            "change": {m: comparison["change"][m] for m in metrics},
        }
    else:
        totals = stats.aggregate(query)
        out["totals"] = {m: totals[m] for m in metrics}
        out["comparison"] = None
    row_metrics = [m for m in metrics if m in ROW_METRICS] or ["visitors"]
    if report.chart:
        out["timeseries"] = [
            {"date": point["date"], **{m: point.get(m, 0) for m in row_metrics if m in point}}
            for point in stats.timeseries(query)
        ]
    else:
        out["timeseries"] = None
    out["breakdown"] = _breakdown(stats, query, report, row_metrics) if report.dimensions else None
    return out


def _rows(result: dict[str, object], metrics: list[str]) -> list[dict[str, object]]:
    return [{"value": row["value"], **{m: row.get(m, 0) for m in metrics}} for row in result["results"]]


def _breakdown(stats: Stats, query: Query, report: SavedReport, metrics: list[str]) -> dict[str, object]:
    first = report.dimensions[0]
    rows = _rows(stats.breakdown(query, first, report.limit), metrics)
    if len(report.dimensions) == 2:
        second = report.dimensions[1]
        for row in rows:
            within = msgspec.structs.replace(query, filters=[*query.filters, make_filter("is", first, [row["value"]])])
            row["breakdown"] = {"dimension": second, "results": _rows(stats.breakdown(within, second, NESTED_LIMIT), metrics)}
    return {"dimension": first, "results": rows}
