"""Scheduled reports, composed: the message a schedule sends (summary in the body, the PDF
and/or CSV attached) and the scheduler built from the appliance's parts.

This sits in ``runtime`` because it joins two rooms of the same layer: the saved reports and
schedules (:mod:`appliance.reports`) and the exporters' report building
(:mod:`appliance.exports.building`).

The clock: ``time.time``, unless the **test-only** setting ``[reports] test_clock_file``
names a file; then "now" is the Unix time stamp written in that file (the system clock while
it is missing or unreadable). End-to-end tests use it to move a real server through days and
weeks without sleeping; it only moves the scheduler, never ingest or the stats.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import date
from pathlib import Path

from appliance.exports.building import dashboard_report, export, report_from_query
from appliance.extensions import Attachment, Message, Report
from appliance.models import Site
from appliance.query.spec import Query
from appliance.reports.definitions import SavedReport
from appliance.reports.deliveries import Ledger
from appliance.reports.running import report_query
from appliance.reports.scheduler import Scheduler
from appliance.reports.schedules import Schedule

CHANGE_NAMES = {"visitors": "Visitors", "pageviews": "Page views", "visits": "Visits"}


def scheduler_clock(test_clock_file: str) -> Callable[[], float]:
    """The scheduler's clock (see the module docstring: the file is for tests only)."""
    if not test_clock_file:
        return time.time
    path = Path(test_clock_file)

    def now() -> float:
        try:
            return float(path.read_text().strip())
        except (OSError, ValueError):
            return time.time()

    return now


def _change(value: float | None) -> str:
    if value is None:  # nothing in the previous period to compare with
        return "no data in the previous period"
    return f"{value:+.0f}% against the previous period"


def summary(stats, query: Query) -> str:
    """Visitors, page views and visits of the period, each with its change against the
    previous period of the same length."""
    compared = stats.aggregate_compared(query, "previous_period")
    current, change = compared["results"], compared["comparison"]["change"]
    lines = [
        f"{label}: {current[key]:,} ({_change(change[key])})"
        for key, label in CHANGE_NAMES.items()
    ]
    return "\n".join(lines)


def saved_report_document(appliance, site: Site, saved: SavedReport, dates: tuple[date, date] | None = None,
                          title: str | None = None) -> tuple[Report, Query]:
    """A saved report as the exporters render it (over its own period, or ``dates``)."""
    query = report_query(site, saved, dates)
    report = report_from_query(appliance, site, query, metrics=saved.metrics, dimensions=saved.dimensions,
                               title=title or saved.title, chart=saved.chart, notes=saved.notes)
    return report, query


class ReportComposer:
    """Builds a schedule's message for one period: the saved report (or the dashboard) over
    that period, exported to each of the schedule's formats by the exporter plugins
    (:func:`appliance.exports.building.export`), and a summary in the body."""

    def __init__(self, appliance) -> None:
        self._appliance = appliance

    def __call__(self, schedule: Schedule, site: Site, start: date, end: date) -> Message:
        appliance = self._appliance
        if schedule.report_id is not None:
            saved = appliance.reports.get(site.id, schedule.report_id)
            title = schedule.title or saved.title
            report, query = saved_report_document(appliance, site, saved, (start, end), title)
        else:
            query = Query(site=site, date_from=start, date_to=end, interval="day")
            title = schedule.title or f"{site.name or site.domain} dashboard"
            report = dashboard_report(appliance, site, query, title=title)
        period = start.isoformat() if start == end else f"{start.isoformat()} – {end.isoformat()}"
        body = "\n".join([
            f"{title} — {site.domain}, {period} ({schedule.frequency})",
            "",
            summary(appliance.stats, query),
            "",
            f"Attached: {', '.join(name.upper() for name in schedule.formats)}.",
        ])
        attachments = []
        for name in schedule.formats:
            data, media_type, file_name = export(appliance, report, name)
            attachments.append(Attachment(filename=file_name, media_type=media_type, data=data))
        return Message(title=f"{title}: {period}", body=body, attachments=tuple(attachments))


def start_scheduler(appliance) -> Scheduler:
    """The appliance's scheduler, composing with the exporters, started (it recovers first)."""
    options = appliance.settings.reports
    scheduler = Scheduler(
        schedules=appliance.schedules, ledger=Ledger(appliance.store, appliance.records),
        site_by_id=appliance.sites.by_id, compose=ReportComposer(appliance),
        notifier_for=appliance.extensions.notifier_for, clock=scheduler_clock(options.test_clock_file),
        check_interval=options.check_interval_seconds, retry_base_seconds=options.retry_base_seconds,
        max_attempts=options.max_attempts, active=lambda: not appliance.following,
    )
    scheduler.start()
    return scheduler
