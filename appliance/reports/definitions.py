"""Saved reports: a named, stored question — site, metrics, one or two dimensions, filters
and/or a segment, a period (relative or fixed), a comparison, an interval, chart on or off,
a title and notes.

A report is site-wide: everyone who can read the site lists and runs it; analysts and admins
create, change and delete it (the web room's guards). It lives in LMDB records
(``report/<site>/<id>``) beside goals, funnels and segments, and goes with its site. Running
it is :mod:`appliance.reports.running`.
"""

from __future__ import annotations

import time
from datetime import date

import msgspec

from appliance import dimensions as dims
from appliance.definitions.common import DefinitionError, checked_filters, checked_name
from appliance.definitions.segments import Segments
from appliance.filters import Filter
from appliance.query.spec import INTERVALS, QueryError
from appliance.reports.periods import COMPARISONS, PERIODS, resolve_period
from storage import Store
from storage.records import Records

# The stats vocabulary's totals (Stats.aggregate); breakdown rows carry the first five.
METRICS: dict[str, str] = {
    "visitors": "Visitors",
    "visits": "Visits",
    "pageviews": "Page views",
    "views_per_visit": "Views per visit",
    "bounce_rate": "Bounce rate",
    "visit_duration": "Visit duration",
    "events": "Events",
    "conversions": "Conversions",
}
ROW_METRICS = ("visitors", "visits", "pageviews", "bounce_rate", "visit_duration")
DIMENSIONS = tuple(name for name in dims.DIMENSIONS if name != "visitor_type")
MAX_NOTES = 2000
MAX_REPORTS_PER_SITE = 200
_RECORD = "report"


class ReportInput(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """What a client sends to create or change a report."""

    title: str
    metrics: list[str] = msgspec.field(default_factory=lambda: ["visitors", "pageviews"])
    dimensions: list[str] = []  # none (totals only), one, or two (the second within the first)
    filters: list[list] = []  # [operator, dimension, values], as the filters parameter
    segment: int | None = None
    period: str = "30d"
    start_date: date | None = None  # a custom period's dates
    end_date: date | None = None
    comparison: str = "previous_period"
    interval: str = "day"
    chart: bool = True
    limit: int = 10
    notes: str = ""


class SavedReport(msgspec.Struct, kw_only=True):
    id: int
    site_id: int
    title: str
    metrics: list[str]
    dimensions: list[str] = []
    filters: list[Filter] = []
    segment: int | None = None
    period: str = "30d"
    start_date: date | None = None
    end_date: date | None = None
    comparison: str = "previous_period"
    interval: str = "day"
    chart: bool = True
    limit: int = 10
    notes: str = ""
    owner: str = ""
    created_at: float = 0.0
    updated_at: float = 0.0


def checked_report(data: ReportInput) -> dict[str, object]:
    """The fields of a valid report, or :class:`DefinitionError` naming the bad one."""
    title = checked_name(data.title, "title")
    if not data.metrics:
        raise DefinitionError("metrics", "choose at least one metric")
    for index, metric in enumerate(data.metrics):
        if metric not in METRICS:
            raise DefinitionError(f"metrics[{index}]", f"one of {', '.join(METRICS)}")
    if len(set(data.metrics)) != len(data.metrics):
        raise DefinitionError("metrics", "each metric once")
    if len(data.dimensions) > 2:
        raise DefinitionError("dimensions", "at most two dimensions")
    for index, dimension in enumerate(data.dimensions):
        if dimension not in DIMENSIONS:
            raise DefinitionError(f"dimensions[{index}]", f"one of {', '.join(DIMENSIONS)}")
    if len(data.dimensions) == 2 and data.dimensions[0] == data.dimensions[1]:
        raise DefinitionError("dimensions[1]", "must differ from the first dimension")
    filters = checked_filters(data.filters, "name the segment in the segment field")
    if data.period not in PERIODS:
        raise DefinitionError("period", f"one of {', '.join(PERIODS)}")
    if data.period == "custom":
        try:
            resolve_period("custom", date.today(), data.start_date, data.end_date)
        except QueryError as error:
            raise DefinitionError(error.field, error.message) from None
    if data.comparison not in COMPARISONS:
        raise DefinitionError("comparison", f"one of {', '.join(COMPARISONS)}")
    if data.interval not in INTERVALS:
        raise DefinitionError("interval", f"one of {', '.join(INTERVALS)}")
    if not 1 <= data.limit <= 100:
        raise DefinitionError("limit", "1 to 100 rows")
    if len(data.notes) > MAX_NOTES:
        raise DefinitionError("notes", f"at most {MAX_NOTES} characters")
    custom = data.period == "custom"
    return {
        "title": title, "metrics": list(data.metrics), "dimensions": list(data.dimensions), "filters": filters,
        "segment": data.segment, "period": data.period, "start_date": data.start_date if custom else None,
        "end_date": data.end_date if custom else None, "comparison": data.comparison, "interval": data.interval,
        "chart": data.chart, "limit": data.limit, "notes": data.notes.strip(),
    }


def report_input(report: SavedReport) -> ReportInput:
    """A saved report as the input that would save it again (the builder's form)."""
    fields = {f: getattr(report, f) for f in ReportInput.__struct_fields__ if f != "filters"}
    return ReportInput(**fields, filters=[[f.operator, f.dimension, list(f.values)] for f in report.filters])


class Reports:
    """The saved reports of every site."""

    def __init__(self, store: Store, records: Records, segments: Segments) -> None:
        self._store = store
        self._records = records
        self._segments = segments

    @staticmethod
    def _key(site_id: int, report_id: int) -> str:
        return f"{site_id:010d}/{report_id:010d}"

    def list(self, site_id: int) -> list[SavedReport]:
        prefix = f"{site_id:010d}/"
        return [
            msgspec.msgpack.decode(raw, type=SavedReport)
            for key, raw in self._records.scan(_RECORD) if key.startswith(prefix)
        ]

    def find(self, site_id: int, report_id: int) -> SavedReport | None:
        raw = self._records.get(_RECORD, self._key(site_id, report_id))
        return msgspec.msgpack.decode(raw, type=SavedReport) if raw is not None else None

    def get(self, site_id: int, report_id: int) -> SavedReport:
        report = self.find(site_id, report_id)
        if report is None:
            raise DefinitionError("report_id", f"no report {report_id} on this site", 404)
        return report

    def _check_segment(self, site_id: int, segment: int | None) -> None:
        if segment is not None:
            found = self._segments.find(site_id, segment)
            if found is None or found.visibility != "site":
                raise DefinitionError("segment", f"no site-wide segment {segment} on this site")

    def preview(self, site_id: int, data: ReportInput) -> SavedReport:
        """The report ``data`` defines, checked but not stored (the builder's live preview)."""
        fields = checked_report(data)
        self._check_segment(site_id, data.segment)
        return SavedReport(id=0, site_id=site_id, **fields)

    def create(self, site_id: int, data: ReportInput, owner: str = "") -> SavedReport:
        fields = checked_report(data)
        self._check_segment(site_id, data.segment)
        if len(self.list(site_id)) >= MAX_REPORTS_PER_SITE:
            raise DefinitionError("reports", f"at most {MAX_REPORTS_PER_SITE} reports per site")
        made: list[SavedReport] = []

        def write(txn):
            made.clear()
            now = time.time()
            report = SavedReport(
                id=self._records.next_id(txn, "report"), site_id=site_id, owner=owner, created_at=now,
                updated_at=now, **fields,
            )
            self._records.put(txn, _RECORD, self._key(site_id, report.id), msgspec.msgpack.encode(report))
            made.append(report)

        self._store.write(write)
        return made[0]

    def change(self, site_id: int, report_id: int, data: ReportInput) -> SavedReport:
        old = self.get(site_id, report_id)
        fields = checked_report(data)
        self._check_segment(site_id, data.segment)
        report = msgspec.structs.replace(old, updated_at=time.time(), **fields)
        key = self._key(site_id, report_id)
        self._store.write(lambda txn: self._records.put(txn, _RECORD, key, msgspec.msgpack.encode(report)))
        return report

    def delete(self, site_id: int, report_id: int) -> SavedReport:
        report = self.get(site_id, report_id)
        key = self._key(site_id, report_id)
        self._store.write(lambda txn: self._records.delete(txn, _RECORD, key))
        return report
