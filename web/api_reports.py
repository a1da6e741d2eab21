"""The JSON API for saved reports and scheduled reports of a site.

``/api/v1/sites/{domain}/reports``: everyone signed in who can read the site lists, reads and
runs reports (``can_read_reports``: viewers too; not a shared link); analysts and admins
create, change and delete them (``can_define``). ``/api/v1/sites/{domain}/schedules``: analysts
and admins only, reads included (a destination URL carries credentials; they are shown masked).
Running a report calls the stats vocabulary through :mod:`appliance.reports.running`, so its
numbers are the dashboard's.
"""

from __future__ import annotations

from typing import Annotated, Any

import msgspec
from litestar import Controller, Request, Response, delete, get, post, put
from litestar.openapi import ResponseSpec
from litestar.params import FromPath, JSONBody, QueryParameter
from litestar.status_codes import HTTP_200_OK, HTTP_201_CREATED, HTTP_202_ACCEPTED

from appliance.accounts.permissions import Permission
from appliance.definitions.common import DefinitionError
from appliance.exports.building import export
from appliance.reports.definitions import ReportInput, SavedReport
from appliance.reports.running import run_report
from appliance.reports.schedules import Schedule, ScheduleInput, masked
from appliance.runtime.appliance import Appliance
from appliance.runtime.report_delivery import saved_report_document
from web.auth import Guard, can_define, principal_of, site_of
from web.dependencies import ApplianceDep

# A site's saved reports: its signed-in readers (viewers run them), not its shared link.
can_read_reports = Guard(Permission.VIEW_STATS, site=True, links=False)
FILE_FORMATS = ("csv", "pdf")
FormatParam = Annotated[str, QueryParameter(name="format", description="json (the default), csv or pdf")]


def report_view(report: SavedReport) -> dict[str, Any]:
    return msgspec.to_builtins(report)


def schedule_view(appliance: Appliance, schedule: Schedule, *, status: bool = False) -> dict[str, Any]:
    view = msgspec.to_builtins(schedule)
    view["destinations"] = [masked(url) for url in schedule.destinations]
    view["target"] = "report" if schedule.report_id is not None else "dashboard"
    if status:
        view["status"] = appliance.scheduler.status(schedule)
    else:
        last = appliance.scheduler.status(schedule, limit=1)
        view["last"] = last["last"]
        view["next_send_at"] = last["next_send_at"]
    return view


def _owner(request: Request) -> str:
    principal = principal_of(request)
    return principal.name if principal is not None else ""


class SavedReportController(Controller):
    path = "/api/v1/sites/{domain:str}/reports"
    tags = ["saved reports"]

    @get("/", guards=[can_read_reports], summary="The site's saved reports", sync_to_thread=True)
    def list_reports(self, request: Request, appliance: ApplianceDep, domain: FromPath[str]) -> dict[str, Any]:
        reports = appliance.reports.list(site_of(request).id)
        return {"status": "success", "data": [report_view(r) for r in reports]}

    @post("/", guards=[can_define], status_code=HTTP_201_CREATED, sync_to_thread=True,
          summary="Save a report (analysts and admins): metrics, dimensions, filters, segment, period, comparison")
    def create_report(self, request: Request, appliance: ApplianceDep, domain: FromPath[str], data: JSONBody[ReportInput]) -> dict[str, Any]:
        report = appliance.reports.create(site_of(request).id, data, _owner(request))
        return {"status": "success", "data": report_view(report)}

    @get("/{report_id:int}", guards=[can_read_reports], summary="One saved report", sync_to_thread=True)
    def get_report(self, request: Request, appliance: ApplianceDep, domain: FromPath[str], report_id: FromPath[int]) -> dict[str, Any]:
        return {"status": "success", "data": report_view(appliance.reports.get(site_of(request).id, report_id))}

    @put("/{report_id:int}", guards=[can_define], summary="Change a saved report (analysts and admins)", sync_to_thread=True)
    def change_report(self, request: Request, appliance: ApplianceDep, domain: FromPath[str], report_id: FromPath[int],
                      data: JSONBody[ReportInput]) -> dict[str, Any]:
        report = appliance.reports.change(site_of(request).id, report_id, data)
        return {"status": "success", "data": report_view(report)}

    @delete("/{report_id:int}", guards=[can_define], status_code=HTTP_200_OK, sync_to_thread=True,
            summary="Delete a saved report and its schedules (analysts and admins)")
    def delete_report(self, request: Request, appliance: ApplianceDep, domain: FromPath[str], report_id: FromPath[int]) -> dict[str, Any]:
        site = site_of(request)
        appliance.reports.delete(site.id, report_id)
        appliance.scheduler.delete_report_schedules(site.id, report_id)
        return {"status": "success"}

    @get("/{report_id:int}/run", guards=[can_read_reports], sync_to_thread=True,
         responses={200: ResponseSpec(data_container=dict[str, Any], generate_examples=False,
                                      description="The results as JSON; with format=csv or pdf, the exported file")},
         summary="Run a saved report: totals (with the comparison), time series, breakdown, over its period today")
    def run(self, request: Request, appliance: ApplianceDep, domain: FromPath[str], report_id: FromPath[int],
            format: FormatParam = "json") -> Response:  # noqa: A002
        site = site_of(request)
        saved = appliance.reports.get(site.id, report_id)
        if format == "json":
            return Response({"status": "success", "data": run_report(appliance.stats, site, saved)})
        if format not in FILE_FORMATS:
            raise DefinitionError("format", f"one of json, {', '.join(FILE_FORMATS)}")
        document, _ = saved_report_document(appliance, site, saved)
        data, media_type, name = export(appliance, document, format)
        return Response(data, media_type=media_type, headers={"Content-Disposition": f'attachment; filename="{name}"'})


class ScheduleController(Controller):
    path = "/api/v1/sites/{domain:str}/schedules"
    tags = ["scheduled reports"]
    guards = [can_define]

    @get("/", summary="The site's scheduled reports, with their last send (analysts and admins)", sync_to_thread=True)
    def list_schedules(self, request: Request, appliance: ApplianceDep, domain: FromPath[str]) -> dict[str, Any]:
        schedules = appliance.schedules.list(site_of(request).id)
        return {"status": "success", "data": [schedule_view(appliance, s) for s in schedules]}

    @post("/", status_code=HTTP_201_CREATED, sync_to_thread=True,
          summary="Schedule a saved report (or, with report_id null, the dashboard): daily, weekly or monthly",
          description=("Sent at `hour` (0-23, the site's time zone): daily the next day; weekly on `weekday` (0 Monday, "
                       "the default, to 6 Sunday) after each Monday-to-Sunday week; monthly on `day` (1, the default, "
                       "to 28) of the month after each calendar month. The period sent is always the closed day, "
                       "week or month before the send day."))
    def create_schedule(self, request: Request, appliance: ApplianceDep, domain: FromPath[str], data: JSONBody[ScheduleInput]) -> dict[str, Any]:
        schedule = appliance.schedules.create(site_of(request).id, data, _owner(request))
        appliance.scheduler.wake()
        return {"status": "success", "data": schedule_view(appliance, schedule)}

    @get("/{schedule_id:int}", summary="One schedule with its delivery history and next send", sync_to_thread=True)
    def get_schedule(self, request: Request, appliance: ApplianceDep, domain: FromPath[str], schedule_id: FromPath[int]) -> dict[str, Any]:
        schedule = appliance.schedules.get(site_of(request).id, schedule_id)
        return {"status": "success", "data": schedule_view(appliance, schedule, status=True)}

    @put("/{schedule_id:int}", sync_to_thread=True,
         summary="Change a schedule (leave destinations out to keep the stored ones)")
    def change_schedule(self, request: Request, appliance: ApplianceDep, domain: FromPath[str], schedule_id: FromPath[int],
                        data: JSONBody[ScheduleInput]) -> dict[str, Any]:
        schedule = appliance.schedules.change(site_of(request).id, schedule_id, data)
        appliance.scheduler.wake()
        return {"status": "success", "data": schedule_view(appliance, schedule)}

    @delete("/{schedule_id:int}", status_code=HTTP_200_OK, summary="Delete a schedule and its history", sync_to_thread=True)
    def delete_schedule(self, request: Request, appliance: ApplianceDep, domain: FromPath[str], schedule_id: FromPath[int]) -> dict[str, Any]:
        appliance.scheduler.delete_schedule(site_of(request).id, schedule_id)
        return {"status": "success"}

    @post("/{schedule_id:int}/send", status_code=HTTP_202_ACCEPTED, sync_to_thread=True,
          summary="Send now, as a test: the latest closed period, queued for the scheduler (does not use up a scheduled send)")
    def send_now(self, request: Request, appliance: ApplianceDep, domain: FromPath[str], schedule_id: FromPath[int]) -> dict[str, Any]:
        schedule = appliance.schedules.get(site_of(request).id, schedule_id)
        delivery = appliance.scheduler.send_now(schedule)
        return {"status": "success", "data": {"key": delivery.key, "state": delivery.state}}


REPORT_CONTROLLERS = [SavedReportController, ScheduleController]
