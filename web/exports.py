"""Exports over HTTP: any stats answer as a file, in whatever format an exporter plugin offers.

The JSON API routes take ``?format=csv|json|pdf`` (or an ``Accept:`` header naming an
exporter's media type, e.g. ``text/csv`` or ``application/pdf``) and answer the file instead
of their JSON; without either they answer as always. The dashboard has one export route,
``/sites/{domain}/export`` (:class:`DashboardExportController`), behind every page's "Export"
menu: the whole dashboard, one widget, a details page, goals, a funnel or a segment
comparison, for the view the page shows (period, filters, segment — the same URL
parameters). The reports are built by :mod:`appliance.exports.building` from the same stats
calls the screen makes, and rendered in the handler's worker thread.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any

import msgspec
from litestar import Controller, Request, Response, get
from litestar.exceptions import NotFoundException
from litestar.params import FromPath, QueryParameter

from appliance.errors import DomainError
from appliance.exports.building import (
    dashboard_report,
    dimension_table,
    export,
    goals_table,
    result_report,
    table_report,
)
from appliance.extensions import Report
from appliance.runtime.appliance import Appliance
from web.auth import dashboard_site_viewer, site_of
from web.dashboard_views import parse_site_view, viewer_id
from web.dependencies import ApplianceDep
from web.views import TABS

FORMAT_DESCRIPTION = (
    "Answer a file instead of JSON: csv (RFC 4180, UTF-8), json (a report document) or pdf, or any "
    "format an exporter plugin adds. Without it, an Accept header naming an exporter's media type "
    "(text/csv, application/pdf) chooses the format. An unknown format is a 422 naming format."
)
FormatParam = Annotated[str | None, QueryParameter(name="format", description=FORMAT_DESCRIPTION)]


def wanted_format(appliance: Appliance, request: Request, format_name: str | None) -> str | None:
    """The format asked for: ``?format=`` first, else an ``Accept`` header naming an exporter's
    media type (JSON and ``*/*`` keep the API's own answer); ``None`` for the usual JSON."""
    if format_name:
        return format_name
    accept = request.headers.get("accept", "")
    for exporter in appliance.extensions.exporters.values():
        media = exporter.media_type.split(";")[0].strip()
        if media != "application/json" and media in accept:
            return exporter.name
    return None


def export_formats(appliance: Appliance) -> list[tuple[str, str]]:
    """(name, description) of every exporter plugin, by name: the Export menus' choices."""
    return [(exporter.name, exporter.description) for exporter in sorted(
        appliance.extensions.exporters.values(), key=lambda exporter: exporter.name)]


def file_response(appliance: Appliance, report: Report, format_name: str) -> Response:
    body, media_type, name = export(appliance, report, format_name)
    return Response(
        body, media_type=media_type.split(";")[0],  # Litestar adds the charset of a text type
        headers={"Content-Disposition": f'attachment; filename="{name}"', "Cache-Control": "no-store"},
    )


def answer(
    appliance: Appliance, request: Request, format_name: str | None, data: dict[str, Any],
    report: Callable[[], Report],
) -> Response:
    """The API's JSON ``data``, or — when a format is asked for — ``report()`` as that file."""
    chosen = wanted_format(appliance, request, format_name)
    if chosen is None:
        return Response(data)
    return file_response(appliance, report(), chosen)


# -- the dashboard's export route ------------------------------------------------------------
REPORTS = ("dashboard", "widget", "details", "goals", "funnel", "segments")
ReportParam = Annotated[str, QueryParameter(name="report", description="What to export: " + ", ".join(REPORTS))]


def _widget_report(appliance: Appliance, view, name: str) -> Report:
    site, query = view.site, view.query()
    stats = appliance.stats
    if name in TABS:
        tab = view.tab(name)
        return table_report(site, query, dimension_table(appliance, query, tab, limit=9))
    if name == "top":
        totals = stats.aggregate(query)
        return result_report(site, query, "Totals", totals)
    if name == "chart":
        return result_report(site, query, "Time series", stats.timeseries(query))
    if name == "events":
        return result_report(site, query, "Custom events", stats.custom_events(query))
    if name == "conversions":
        return table_report(site, query, goals_table(appliance, query))
    raise NotFoundException(f"no widget {name!r}")


def dashboard_export_report(appliance: Appliance, request: Request, report: str) -> Report:
    """The report one of the dashboard's pages shows, for the view its URL describes."""
    params = request.query_params
    view = parse_site_view(request, appliance)
    site, query = site_of(request), view.query()
    if report == "dashboard":
        return dashboard_report(appliance, site, query)
    if report == "widget":
        return _widget_report(appliance, view, params.get("widget", ""))
    if report == "details":
        dimension = params.get("dimension", "")
        try:
            table = dimension_table(appliance, query, dimension, limit=1000)
        except DomainError as error:  # the page's parameter is "dimension"
            raise DomainError("dimension", error.message, 422) from None
        return table_report(site, query, table)
    if report == "goals":
        return table_report(site, query, goals_table(appliance, query))
    if report == "funnel":
        raw = params.get("funnel", "")
        if not raw.isdigit():
            raise DomainError("funnel", "takes a funnel id", 422)
        funnel = appliance.funnels.get(site.id, int(raw))
        result = appliance.stats.funnel(query, funnel)
        return result_report(site, query, f"Funnel: {funnel.name}", result["steps"])
    if report == "segments":
        chosen = [value for value in params.get("segments", "").split(",") if value]
        if not chosen or any(value != "everyone" and not value.isdigit() for value in chosen):
            raise DomainError("segments", "takes segment ids (or everyone), separated by commas", 422)
        for value in chosen:
            if value != "everyone":
                appliance.segments.get(site.id, int(value), viewer_id(request))
        unsegmented = msgspec.structs.replace(query, filters=[f for f in query.filters if f.dimension != "segment"])
        rows = [
            {"segment": column["segment"], "name": column.get("name", "Everyone"), **column["results"]}
            for column in appliance.stats.compare_segments(unsegmented, chosen)
        ]
        return result_report(site, query, "Segment comparison", rows)
    raise DomainError("report", f"must be one of {', '.join(REPORTS)}", 422)


class DashboardExportController(Controller):
    path = "/sites"
    include_in_schema = False

    @get("/{domain:str}/export", guards=[dashboard_site_viewer], sync_to_thread=True,
         summary="Export what a dashboard page shows (the Export menu): CSV, JSON or PDF")
    def export_view(
        self, request: Request, appliance: ApplianceDep, domain: FromPath[str],
        report: ReportParam = "dashboard", export_format: FormatParam = None,
    ) -> Response:
        built = dashboard_export_report(appliance, request, report)  # an unknown id: the definitions' 404
        return file_response(appliance, built, export_format or "csv")


EXPORT_CONTROLLERS = [DashboardExportController]
