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

from appliance.extensions import Attachment, Message
from appliance.models import Site
from appliance.query.spec import Query
from appliance.reports.definitions import Reports
from appliance.reports.deliveries import Ledger
from appliance.reports.running import report_query
from appliance.reports.scheduler import Scheduler
from appliance.reports.schedules import Schedule, Schedules

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
    if value is None:
        return "new"
    return f"{value:+.0f}%"


def summary(stats, query: Query) -> str:
    """Visitors, page views and visits of the period, each with its change against the
    previous period of the same length."""
    compared = stats.aggregate_compared(query, "previous_period")
    current, change = compared["results"], compared["comparison"]["change"]
    lines = [
        f"{label}: {current[key]:,} ({_change(change[key])} against the previous period)"
        for key, label in CHANGE_NAMES.items()
    ]
    return "\n".join(lines)


class ReportComposer:
    """Builds a schedule's message for one period. ``build(site, schedule, query)`` makes the
    :class:`~appliance.extensions.Report`; ``export(report, format)`` renders it to bytes."""

    def __init__(self, *, stats, reports: Reports, build_report, build_dashboard, export, media_types) -> None:
        self._stats = stats
        self._reports = reports
        self._build_report = build_report
        self._build_dashboard = build_dashboard
        self._export = export
        self._media_types = media_types

    def __call__(self, schedule: Schedule, site: Site, start: date, end: date) -> Message:
        if schedule.report_id is not None:
            saved = self._reports.get(site.id, schedule.report_id)
            query = report_query(site, saved, (start, end))
            title = schedule.title or saved.title
            report = self._build_report(site, query, saved, title)
        else:
            query = Query(site=site, date_from=start, date_to=end, interval="day")
            title = schedule.title or f"{site.name or site.domain} dashboard"
            report = self._build_dashboard(site, query, title)
        period = start.isoformat() if start == end else f"{start.isoformat()} – {end.isoformat()}"
        body = "\n".join([
            f"{title} — {site.domain}, {period} ({schedule.frequency})",
            "",
            summary(self._stats, query),
            "",
            f"Attached: {', '.join(name.upper() for name in schedule.formats)}.",
        ])
        stem = f"{site.domain}-{start.isoformat()}" + ("" if start == end else f"-to-{end.isoformat()}")
        attachments = tuple(
            Attachment(filename=f"{stem}.{name}", media_type=self._media_types(name), data=self._export(report, name))
            for name in schedule.formats
        )
        return Message(title=f"{title}: {period}", body=body, attachments=attachments)


def build_scheduler(*, settings, store, records, sites, reports: Reports, schedules: Schedules,
                    compose: Callable[[Schedule, Site, date, date], Message], notifier_for) -> Scheduler:
    options = settings.reports
    return Scheduler(
        schedules=schedules, ledger=Ledger(store, records), site_by_id=sites.by_id, compose=compose,
        notifier_for=notifier_for, clock=scheduler_clock(options.test_clock_file),
        check_interval=options.check_interval_seconds, retry_base_seconds=options.retry_base_seconds,
        max_attempts=options.max_attempts,
    )


def start_scheduler(appliance) -> Scheduler:
    """The appliance's scheduler, composing with the exporters, started (it recovers first)."""
    composer = ReportComposer(
        stats=appliance.stats, reports=appliance.reports,
        build_report=lambda site, query, saved, title: _pending_exports(),
        build_dashboard=lambda site, query, title: _pending_exports(),
        export=lambda report, name: _pending_exports(),
        media_types=lambda name: appliance.extensions.exporter(name).media_type,
    )
    scheduler = build_scheduler(
        settings=appliance.settings, store=appliance.store, records=appliance.records, sites=appliance.sites,
        reports=appliance.reports, schedules=appliance.schedules, compose=composer,
        notifier_for=appliance.extensions.notifier_for,
    )
    scheduler.start()
    return scheduler


def _pending_exports():
    raise RuntimeError("TEMPORARY: report building comes with the exports branch")
