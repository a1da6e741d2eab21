"""Dashboard pages for saved and scheduled reports.

- ``/sites/{domain}/reports``: the site's saved reports (signed-in users: viewers open and
  run them) and, for analysts and admins, the builder — a form whose live preview
  (``/reports/preview``, an htmx partial) runs the definition as it is typed;
- ``/sites/{domain}/reports/{id}``: a report's results over its period, its PDF and CSV,
  and for analysts its edit form, its schedules and a form to schedule it;
- ``/sites/{domain}/reports/from-view``: the dashboard's one-click "Save as report" (the
  view's period, comparison, filters and segment);
- ``/sites/{domain}/schedules``: every schedule of the site (the dashboard's too) with its
  last status, "Send now", edit and delete (analysts and admins).

Plain HTML forms answered with a redirect (or the page again, 422, naming the field), so they
work without JavaScript. Results come from :func:`appliance.reports.running.run_report`, the
files from the exporter plugins — the same functions the JSON API calls.
"""

from __future__ import annotations

from datetime import date
from typing import Any
from urllib.parse import urlencode

from litestar import Controller, Request, Response, get, post
from litestar.exceptions import NotFoundException
from litestar.params import FromPath
from litestar.response import Redirect, Template
from markupsafe import Markup

from appliance.definitions.common import DefinitionError
from appliance.errors import DomainError
from appliance.exports.building import export, series_chart
from appliance.filters import OPERATORS
from appliance.reports.cadence import FREQUENCIES
from appliance.reports.definitions import DIMENSIONS, METRICS, ReportInput, report_input
from appliance.reports.periods import COMPARISONS, PERIODS
from appliance.reports.running import report_query, run_report
from appliance.reports.schedules import FORMATS, Schedule, ScheduleInput, masked
from appliance.runtime.appliance import Appliance
from appliance.runtime.report_delivery import saved_report_document
from web.auth import dashboard_site_analyst, dashboard_site_member, principal_of, site_of
from web.dashboard import _view_options
from web.dashboard_views import parse_site_view
from web.dependencies import ApplianceDep, FormDep
from web.pages import page as _page
from web.rendering import RenderedTemplate

FILTER_ROWS = 3
WEEKDAY_NAMES = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
COMPARISON_LABELS = {"off": "No comparison", "previous_period": "Previous period", "year_over_year": "Year over year"}


def _text(form, key: str) -> str:
    value = form.get(key, "")
    return value.strip() if isinstance(value, str) else ""


def report_from_form(form) -> ReportInput:
    """The builder's fields as a :class:`ReportInput` (checked when it is saved or run)."""
    filters = []
    rows = zip(form.getall("filter_dimension", []), form.getall("filter_operator", []), form.getall("filter_value", []),
               strict=False)
    for dimension, operator, value in rows:
        if str(value).strip():
            filters.append([str(operator), str(dimension), [part for part in str(value).split("|") if part]])
    dimensions = [d for d in (_text(form, "dimension1"), _text(form, "dimension2")) if d]
    segment = _text(form, "segment")

    def day(key: str) -> date | None:
        try:
            return date.fromisoformat(_text(form, key)) if _text(form, key) else None
        except ValueError:
            raise DefinitionError(key, "a date (YYYY-MM-DD)") from None

    return ReportInput(
        title=_text(form, "title"), metrics=[str(m) for m in form.getall("metrics", [])], dimensions=dimensions,
        filters=filters, segment=int(segment) if segment.isdigit() else None, period=_text(form, "period") or "30d",
        start_date=day("start_date"), end_date=day("end_date"), comparison=_text(form, "comparison") or "off",
        interval=_text(form, "interval") or "day", chart=form.get("chart") == "on", notes=_text(form, "notes"),
    )


def _form_values(data: ReportInput) -> dict[str, Any]:
    rows = [{"dimension": f[1], "operator": f[0], "value": "|".join(f[2])} for f in data.filters]
    rows += [{"dimension": "page", "operator": "is", "value": ""}] * (FILTER_ROWS - len(rows))
    return {**{f: getattr(data, f) for f in ReportInput.__struct_fields__}, "filter_rows": rows}


def _options(appliance: Appliance, site_id: int) -> dict[str, Any]:
    return {
        "metric_labels": METRICS, "report_dimensions": DIMENSIONS, "report_periods": PERIODS,
        "report_comparisons": {key: COMPARISON_LABELS[key] for key in COMPARISONS}, "operators": OPERATORS,
        "intervals": ("hour", "day", "week", "month"), "frequencies": FREQUENCIES, "formats": FORMATS,
        "weekday_names": WEEKDAY_NAMES,
        "site_segments": [s for s in appliance.segments.list(site_id) if s.visibility == "site"],
        **_view_options(),
    }


def _preview(appliance: Appliance, site, data: ReportInput) -> dict[str, Any]:
    """A definition's results and chart (the preview runs it without saving it)."""
    saved = appliance.reports.preview(site.id, data)
    results = run_report(appliance.stats, site, saved)
    chart = None
    if saved.chart:
        metric = next((m for m in saved.metrics if m in ("visitors", "visits", "pageviews")), "visitors")
        chart = Markup(series_chart(appliance, report_query(site, saved), metric).svg)
    return {"results": results, "chart": chart}


def _schedule_rows(appliance: Appliance, schedules) -> list[dict[str, Any]]:
    reports = {r.id: r for r in appliance.reports.list(schedules[0].site_id)} if schedules else {}
    rows = []
    for schedule in schedules:
        status = appliance.scheduler.status(schedule, limit=5)
        target = reports.get(schedule.report_id)
        rows.append({"schedule": schedule, "status": status, "destinations": [masked(u) for u in schedule.destinations],
                     "target": target.title if target else "The whole dashboard", "when": when_sent(schedule)})
    return rows


def schedule_from_form(form, report_id: int | None, old: Schedule | None = None) -> ScheduleInput:
    """A schedule form's fields. Changing one (``old``), empty destinations keep the stored
    ones (the page never shows them in full), as the API's PUT does; it stays (dis)abled."""
    hour, weekday, day = _text(form, "hour"), _text(form, "weekday") or "0", _text(form, "day") or "1"
    destinations = [u.strip() for u in _text(form, "destinations").splitlines() if u.strip()]
    return ScheduleInput(
        report_id=report_id, frequency=_text(form, "frequency") or "weekly", hour=int(hour) if hour.isdigit() else -1,
        weekday=int(weekday) if weekday.isdigit() else -1, day=int(day) if day.isdigit() else -1,
        destinations=destinations or (None if old else []), formats=[str(f) for f in form.getall("formats", [])],
        title=_text(form, "title"), enabled=old.enabled if old else True,
    )


def when_sent(schedule: Schedule) -> str:
    """"Weekly on Thursday at 09:00" and the like."""
    on = {"weekly": f" on {WEEKDAY_NAMES[schedule.weekday]}", "monthly": f" on day {schedule.day}"}.get(schedule.frequency, "")
    return f"{schedule.frequency.capitalize()}{on} at {schedule.hour:02d}:00"


def _reports_page(request: Request, appliance: Appliance, *, data: ReportInput | None = None, error: str = "",
                  status: int = 200) -> Template:
    site = site_of(request)
    data = data or ReportInput(title="", dimensions=["page"])
    preview = None
    if data.title:
        try:
            preview = _preview(appliance, site, data)
        except DomainError:
            preview = None
    return _page(request, "reports.html", site=site, reports=appliance.reports.list(site.id), form=_form_values(data),
                 error=error, status=status, preview=preview, saved=request.query_params.get("saved", ""),
                 **_options(appliance, site.id))


def _report_page(request: Request, appliance: Appliance, report_id: int, *, data: ReportInput | None = None,
                 error: str = "", schedule_error: str = "", status: int = 200) -> Template:
    site = site_of(request)
    saved = _found(appliance.reports.get, site.id, report_id)
    results = run_report(appliance.stats, site, saved)
    chart = None
    if saved.chart:
        metric = next((m for m in saved.metrics if m in ("visitors", "visits", "pageviews")), "visitors")
        chart = Markup(series_chart(appliance, report_query(site, saved), metric).svg)
    schedules = [s for s in appliance.schedules.list(site.id) if s.report_id == saved.id]
    return _page(request, "report.html", site=site, report=saved, results=results, chart=chart,
                 form=_form_values(data or report_input(saved)), error=error, schedule_error=schedule_error,
                 status=status, schedules=_schedule_rows(appliance, schedules), notice=request.query_params.get("notice", ""),
                 **_options(appliance, site.id))


def _found(getter, *args):
    try:
        return getter(*args)
    except DefinitionError as error:
        if error.status == 404:
            raise NotFoundException(error.message) from None
        raise


def _message(error: DomainError) -> str:
    return f"{error.field}: {error.message}" if error.field else error.message


class ReportPages(Controller):
    path = "/sites/{domain:str}"
    include_in_schema = False

    @get("/reports", guards=[dashboard_site_member], summary="Saved reports; the builder for analysts", sync_to_thread=True)
    def reports(self, request: Request, appliance: ApplianceDep, domain: FromPath[str]) -> Template:
        return _reports_page(request, appliance)

    @get("/reports/preview", guards=[dashboard_site_analyst], summary="The builder's live preview (htmx partial)",
         sync_to_thread=True)
    def preview(self, request: Request, appliance: ApplianceDep, domain: FromPath[str]) -> Template:
        site = site_of(request)
        context: dict[str, Any] = {"preview": None, "error": ""}
        try:
            data = report_from_form(request.query_params)
            context["preview"] = _preview(appliance, site, _titled(data))
        except DomainError as error:
            context["error"] = _message(error)
        return RenderedTemplate(request, "dashboard/_report_preview.html", {**context, **_options(appliance, site.id)})

    @post("/reports", guards=[dashboard_site_analyst], summary="Save a report (analysts, admins)", sync_to_thread=True)
    def create(self, request: Request, appliance: ApplianceDep, domain: FromPath[str], form: FormDep) -> Response:
        site = site_of(request)
        data = None
        try:
            data = report_from_form(form)
            saved = appliance.reports.create(site.id, data, principal_of(request).name)
        except DomainError as error:
            return _reports_page(request, appliance, data=data, error=_message(error), status=422)
        return Redirect(f"/sites/{site.domain}/reports/{saved.id}?notice=saved", status_code=303)

    @post("/reports/from-view", guards=[dashboard_site_analyst],
          summary="Save the dashboard's current view as a report, in one click (analysts, admins)", sync_to_thread=True)
    def from_view(self, request: Request, appliance: ApplianceDep, domain: FromPath[str], form: FormDep) -> Response:
        site = site_of(request)
        view = parse_site_view(request, appliance)  # the hidden fields carry the view's query string
        filters = [["is", dimension, [value]] for dimension, value in view.filters]
        custom = view.period == "custom"
        data = ReportInput(
            title=_text(form, "title") or f"Dashboard: {view.label}", metrics=["visitors", "visits", "pageviews", "bounce_rate",
                                                                             "visit_duration"],
            dimensions=["page"], filters=filters, segment=view.segment, period=view.period,
            start_date=view.date_from if custom else None, end_date=view.date_to if custom else None,
            comparison=view.compare, interval=view.interval, chart=True,
        )
        saved = appliance.reports.create(site.id, data, principal_of(request).name)
        return Redirect(f"/sites/{site.domain}/reports/{saved.id}?notice=saved", status_code=303)

    @get("/reports/{report_id:int}", guards=[dashboard_site_member], summary="A saved report's results", sync_to_thread=True)
    def report(self, request: Request, appliance: ApplianceDep, domain: FromPath[str], report_id: FromPath[int]) -> Template:
        return _report_page(request, appliance, report_id)

    @get("/reports/{report_id:int}/export", guards=[dashboard_site_member], sync_to_thread=True,
         summary="A saved report as a PDF or CSV file (format=pdf|csv)")
    def export_file(self, request: Request, appliance: ApplianceDep, domain: FromPath[str], report_id: FromPath[int]) -> Response:
        site = site_of(request)
        saved = _found(appliance.reports.get, site.id, report_id)
        name = request.query_params.get("format", "pdf")
        if name not in FORMATS:
            raise NotFoundException(f"no export format {name!r}")
        document, _ = saved_report_document(appliance, site, saved)
        data, media_type, filename = export(appliance, document, name)
        return Response(data, media_type=media_type, headers={"Content-Disposition": f'attachment; filename="{filename}"'})

    @post("/reports/{report_id:int}", guards=[dashboard_site_analyst], summary="Change a report (analysts, admins)",
          sync_to_thread=True)
    def change(self, request: Request, appliance: ApplianceDep, domain: FromPath[str], report_id: FromPath[int], form: FormDep) -> Response:
        site = site_of(request)
        _found(appliance.reports.get, site.id, report_id)
        data = None
        try:
            data = report_from_form(form)
            appliance.reports.change(site.id, report_id, data)
        except DomainError as error:
            return _report_page(request, appliance, report_id, data=data, error=_message(error), status=422)
        return Redirect(f"/sites/{site.domain}/reports/{report_id}?notice=saved", status_code=303)

    @post("/reports/{report_id:int}/delete", guards=[dashboard_site_analyst],
          summary="Delete a report and its schedules (analysts, admins)", sync_to_thread=True)
    def delete(self, request: Request, appliance: ApplianceDep, domain: FromPath[str], report_id: FromPath[int]) -> Response:
        site = site_of(request)
        report = _found(appliance.reports.delete, site.id, report_id)
        appliance.scheduler.delete_report_schedules(site.id, report.id)
        return Redirect(f"/sites/{site.domain}/reports?{urlencode({'saved': f'Deleted {report.title}'})}", status_code=303)

    # -- schedules --------------------------------------------------------------------------
    @get("/schedules", guards=[dashboard_site_analyst], summary="Scheduled reports and their last status (analysts, admins)",
         sync_to_thread=True)
    def schedules(self, request: Request, appliance: ApplianceDep, domain: FromPath[str]) -> Template:
        return _schedules_page(request, appliance)

    @post("/schedules", guards=[dashboard_site_analyst], summary="Schedule a report or the dashboard (analysts, admins)",
          sync_to_thread=True)
    def create_schedule(self, request: Request, appliance: ApplianceDep, domain: FromPath[str], form: FormDep) -> Response:
        site = site_of(request)
        report = _text(form, "report_id")
        back = f"/sites/{site.domain}/reports/{report}" if report.isdigit() else f"/sites/{site.domain}/schedules"
        try:
            data = schedule_from_form(form, int(report) if report.isdigit() else None)
            appliance.schedules.create(site.id, data, principal_of(request).name)
        except DomainError as error:
            if report.isdigit():
                return _report_page(request, appliance, int(report), schedule_error=_message(error), status=422)
            return _schedules_page(request, appliance, error=_message(error), status=422)
        appliance.scheduler.wake()
        return Redirect(f"{back}?notice=scheduled", status_code=303)

    @post("/schedules/{schedule_id:int}", guards=[dashboard_site_analyst],
          summary="Change a schedule: when, what is attached, where to (analysts, admins)", sync_to_thread=True)
    def change_schedule(self, request: Request, appliance: ApplianceDep, domain: FromPath[str], schedule_id: FromPath[int],
                        form: FormDep) -> Response:
        site = site_of(request)
        old = _found(appliance.schedules.get, site.id, schedule_id)
        try:
            appliance.schedules.change(site.id, schedule_id, schedule_from_form(form, old.report_id, old))
        except DomainError as error:
            return _schedules_page(request, appliance, edit_id=schedule_id, edit_error=_message(error), status=422)
        appliance.scheduler.wake()
        return Redirect(f"/sites/{site.domain}/schedules?notice=changed", status_code=303)

    @post("/schedules/{schedule_id:int}/send", guards=[dashboard_site_analyst],
          summary="Send a schedule now, as a test (analysts, admins)", sync_to_thread=True)
    def send_now(self, request: Request, appliance: ApplianceDep, domain: FromPath[str], schedule_id: FromPath[int]) -> Response:
        site = site_of(request)
        appliance.scheduler.send_now(_found(appliance.schedules.get, site.id, schedule_id))
        return Redirect(f"/sites/{site.domain}/schedules?notice=queued", status_code=303)

    @post("/schedules/{schedule_id:int}/delete", guards=[dashboard_site_analyst],
          summary="Delete a schedule (analysts, admins)", sync_to_thread=True)
    def delete_schedule(self, request: Request, appliance: ApplianceDep, domain: FromPath[str], schedule_id: FromPath[int]) -> Response:
        site = site_of(request)
        _found(appliance.scheduler.delete_schedule, site.id, schedule_id)
        return Redirect(f"/sites/{site.domain}/schedules?notice=deleted", status_code=303)


def _titled(data: ReportInput) -> ReportInput:
    """The preview runs before a title is typed: it borrows one."""
    return data if data.title else ReportInput(**{**{f: getattr(data, f) for f in ReportInput.__struct_fields__},
                                                  "title": "Preview"})


def _schedules_page(request: Request, appliance: Appliance, *, error: str = "", edit_id: int = 0, edit_error: str = "",
                    status: int = 200) -> Template:
    site = site_of(request)
    return _page(request, "schedules.html", site=site, schedules=_schedule_rows(appliance, appliance.schedules.list(site.id)),
                 reports=appliance.reports.list(site.id), error=error, status=status, edit_id=edit_id, edit_error=edit_error,
                 notice=request.query_params.get("notice", ""), **_options(appliance, site.id))


REPORT_PAGES = [ReportPages]
