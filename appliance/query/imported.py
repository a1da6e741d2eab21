"""Imported daily aggregates in the stats: what they can answer, and their sums for a query.

Another tool's export (Plausible's CSV export, :mod:`appliance.imports.plausible`) leaves daily
tables (:mod:`storage.imported`). The counted path (:mod:`appliance.query.counted`) adds them
to the native figures of their days, as Plausible does: visitors of imported days are the
*sum* of each day's visitors (there is no sketch to union). They cannot answer everything:

- a query with any filter (the tables hold one dimension at a time, so "browser is Firefox"
  has no answer for pages);
- an hourly time series (the tables hold days);
- a breakdown by a dimension no table holds (channel, referrer, UTM tags, screen, …);
- a query that asks without them (``Query.imported`` false: the Plausible API's
  ``with_imported=false``, its default).

Such queries leave imported days out, and :meth:`ImportedData.meta` says so. Every read first
looks up the site's imported day range (one key): a site without imported data pays that one
lookup and nothing more.
"""

from __future__ import annotations

from appliance.periods import day_from_number
from appliance.query.spec import Query
from storage.imported import METRICS, ImportedAggregates

M = {name: index for index, name in enumerate(METRICS)}
# breakdown dimension -> imported table
BREAKDOWN_TABLES = {
    "page": "pages",
    "source": "sources",
    "country": "locations",
    "device": "devices",
    "browser": "browsers",
    "os": "operating_systems",
}
# the stats reports imported data takes part in
REPORTS = ("aggregate", "timeseries", "breakdown", "entry_pages", "exit_pages", "custom_events")


def exclusion(query: Query, report: str, dimension: str | None = None) -> str | None:
    """Why imported days cannot answer ``report`` for ``query``, or ``None`` if they can."""
    if not query.imported:
        return "imported data left out on request"
    if query.filters:
        return "imported data cannot be filtered"
    if report not in REPORTS:
        return f"imported data has no {report.replace('_', ' ')}"
    if report == "timeseries" and query.interval == "hour":
        return "imported data has no hours"
    if report == "breakdown" and dimension not in BREAKDOWN_TABLES:
        return f"imported data has no {dimension} breakdown"
    return None


class ImportedData:
    def __init__(self, aggregates: ImportedAggregates) -> None:
        self._aggregates = aggregates

    def span(self, txn, query: Query) -> tuple[int, int] | None:
        """The query's days that have imported data (first, last day numbers), or ``None``."""
        known = self._aggregates.day_range(txn, query.site.id)
        if known is None:
            return None
        first, last = max(known[0], query.first_day), min(known[1], query.last_day)
        return (first, last) if first <= last else None

    def has_data(self, site_id: int) -> bool:
        with self._aggregates.read() as txn:
            return self._aggregates.day_range(txn, site_id) is not None

    def meta(self, query: Query, report: str, dimension: str | None = None) -> dict[str, object] | None:
        """The ``imported`` part of an answer's meta: the imported days the answer includes,
        or why they are left out; ``None`` when the query covers no imported day."""
        with self._aggregates.read() as txn:
            span = self.span(txn, query)
        if span is None:
            return None
        answer: dict[str, object] = {
            "start_date": day_from_number(span[0]).isoformat(),
            "end_date": day_from_number(span[1]).isoformat(),
        }
        reason = exclusion(query, report, dimension)
        answer["included"] = reason is None
        if reason is not None:
            answer["reason"] = reason
        return answer

    # -- sums, for the counted path (each returns nothing when it may not answer) -------------
    def _usable(self, txn, query: Query, report: str, dimension: str | None = None) -> tuple[int, int] | None:
        span = self.span(txn, query)
        if span is None or exclusion(query, report, dimension) is not None:
            return None
        return span

    def totals(self, txn, query: Query) -> dict[str, int] | None:
        span = self._usable(txn, query, "aggregate")
        if span is None:
            return None
        out = dict.fromkeys(METRICS, 0)
        for metrics in self._aggregates.days(txn, query.site.id, "visitors", *span).values():
            for name in ("visitors", "visits", "pageviews", "bounces", "visit_duration"):
                out[name] += metrics[M[name]]
        for metrics in self._aggregates.sums(txn, query.site.id, "custom_events", *span).values():
            out["events"] += metrics[M["events"]]
        return out

    def by_day(self, txn, query: Query) -> dict[int, list[int]] | None:
        """Per day: the ``visitors`` table's metrics, with the day's custom events as ``events``."""
        span = self._usable(txn, query, "timeseries")
        if span is None:
            return None
        out = self._aggregates.days(txn, query.site.id, "visitors", *span)
        for metrics in out.values():  # events as the totals count them: from custom_events
            metrics[M["events"]] = 0
        for day, metrics in self._aggregates.days(txn, query.site.id, "custom_events", *span).items():
            out.setdefault(day, [0] * len(METRICS))[M["events"]] += metrics[M["events"]]
        return out

    def by_value(self, txn, query: Query, report: str, table: str, dimension: str | None = None) -> dict[str, list[int]] | None:
        span = self._usable(txn, query, report, dimension)
        if span is None:
            return None
        return self._aggregates.sums(txn, query.site.id, table, *span)

    def breakdown(self, txn, query: Query, dimension: str) -> dict[str, dict[str, int]] | None:
        """Per value: visitors, pageviews, visits, bounces, duration (for pages the visit
        figures are by entry page, as the native breakdown's are)."""
        table = BREAKDOWN_TABLES.get(dimension, "")
        sums = self.by_value(txn, query, "breakdown", table, dimension)
        if sums is None:
            return None
        out = {
            value: {"visitors": m[M["visitors"]], "pageviews": m[M["pageviews"]], "visits": m[M["visits"]],
                    "bounces": m[M["bounces"]], "duration": m[M["visit_duration"]]}
            for value, m in sums.items()
        }
        if dimension == "page":
            for row in out.values():
                row["visits"] = row["bounces"] = row["duration"] = 0
            entries = self._aggregates.sums(txn, query.site.id, "entry_pages", *self.span(txn, query))
            for value, m in entries.items():
                row = out.setdefault(value, {"visitors": 0, "pageviews": 0, "visits": 0, "bounces": 0, "duration": 0})
                row["visits"] += m[M["entrances"]]
                row["bounces"] += m[M["bounces"]]
                row["duration"] += m[M["visit_duration"]]
        return out


def merge_breakdown(rows: list[dict], raw: dict[str, tuple[int, int]], extra: dict[str, dict[str, int]]) -> int:
    """Add imported figures to breakdown ``rows`` (native rows, with their ``(bounces,
    duration)`` in ``raw`` by value) in place, appending imported-only values; returns how
    many values were appended."""
    by_value = {row["value"]: row for row in rows}
    appended = 0
    for value, figures in extra.items():
        row = by_value.get(value)
        bounces, duration = raw.get(value, (0, 0))
        if row is None:
            row = {"value": value, "visitors": 0, "pageviews": 0, "visits": 0}
            rows.append(row)
            appended += 1
        row["visitors"] += figures["visitors"]
        row["pageviews"] += figures["pageviews"]
        row["visits"] += figures["visits"]
        bounces += figures["bounces"]
        duration += figures["duration"]
        visits = row["visits"]
        row["bounce_rate"] = round(100 * bounces / visits, 2) if visits else 0.0
        row["visit_duration"] = round(duration / visits) if visits else 0
    return appended
