"""The JSON API for a site's definitions — goals, funnels, segments — and their reports.

Analysts and admins create, change and delete (``can_define``); anyone who can read the site
lists them and reads their reports (``can_view_site``). Private segments are visible to their
author only. The definitions live in LMDB records with the rest of the site's metadata
(:mod:`appliance.definitions.goals`, :mod:`appliance.definitions.funnels`, :mod:`appliance.definitions.segments`).
"""

from __future__ import annotations

from typing import Annotated, Any

import msgspec
from litestar import Controller, Request, Response, delete, get, post, put
from litestar.params import FromPath, JSONBody, QueryParameter
from litestar.status_codes import HTTP_200_OK, HTTP_201_CREATED

from appliance.definitions.common import DefinitionError
from appliance.definitions.funnels import FunnelInput
from appliance.definitions.goals import GoalInput
from appliance.definitions.segments import SegmentInput
from appliance.exports.building import result_report
from appliance.runtime.appliance import Appliance
from web.auth import can_define, can_view_site, principal_of, site_of
from web.dependencies import ApplianceDep, QueryDep, SiteParam, caller_id
from web.exports import FormatParam, answer


def _goal_view(appliance: Appliance, goal) -> dict[str, Any]:
    view = msgspec.to_builtins(goal)
    for internal in ("counter_id", "backfill_before", "backfilled"):
        view.pop(internal, None)
    view["backfill"] = appliance.goals.status(goal)
    return view


class GoalController(Controller):
    path = "/api/v1/goals"
    tags = ["goals"]

    @get("/", guards=[can_view_site], summary="The site's goals, with back-fill progress", sync_to_thread=True)
    def list_goals(self, request: Request, appliance: ApplianceDep, site: SiteParam = None) -> dict[str, Any]:
        goals = appliance.goals.list(site_of(request).id)
        return {"status": "success", "data": [_goal_view(appliance, goal) for goal in goals]}

    @post("/", guards=[can_define], status_code=HTTP_201_CREATED, sync_to_thread=True,
          summary="Create a goal (analysts and admins); its history is back-filled from the log")
    def create_goal(self, request: Request, appliance: ApplianceDep, data: JSONBody[GoalInput], site: SiteParam = None) -> dict[str, Any]:
        principal = principal_of(request)
        goal = appliance.goals.create(site_of(request).id, data, principal.name if principal else "")
        return {"status": "success", "data": _goal_view(appliance, goal)}

    @get("/{goal_id:int}", guards=[can_view_site], summary="One goal", sync_to_thread=True)
    def get_goal(self, request: Request, appliance: ApplianceDep, goal_id: FromPath[int], site: SiteParam = None) -> dict[str, Any]:
        return {"status": "success", "data": _goal_view(appliance, appliance.goals.get(site_of(request).id, goal_id))}

    @put("/{goal_id:int}", guards=[can_define], sync_to_thread=True,
         summary="Change a goal (analysts and admins); a changed definition is back-filled again")
    def change_goal(self, request: Request, appliance: ApplianceDep, goal_id: FromPath[int], data: JSONBody[GoalInput], site: SiteParam = None) -> dict[str, Any]:
        goal = appliance.goals.change(site_of(request).id, goal_id, data)
        return {"status": "success", "data": _goal_view(appliance, goal)}

    @delete("/{goal_id:int}", guards=[can_define], status_code=HTTP_200_OK, sync_to_thread=True, summary="Delete a goal")
    def delete_goal(self, request: Request, appliance: ApplianceDep, goal_id: FromPath[int], site: SiteParam = None) -> dict[str, Any]:
        appliance.goals.delete(site_of(request).id, goal_id)
        return {"status": "success"}

    @get("/{goal_id:int}/stats", guards=[can_view_site], sync_to_thread=True,
         summary="A goal's conversions per day, and its conversion rate per value of a dimension")
    def goal_stats(
        self, request: Request, appliance: ApplianceDep, stats_query: QueryDep, goal_id: FromPath[int],
        property: Annotated[str, QueryParameter(name="property", description="dimension for the breakdown")] = "source",  # noqa: A002
        limit: Annotated[int, QueryParameter(name="limit", ge=1, le=1000)] = 10,
        export_format: FormatParam = None,
    ) -> Response:
        goal = appliance.goals.get(site_of(request).id, goal_id)
        reports = appliance.goal_reports
        unfiltered = msgspec.structs.replace(stats_query, filters=[])
        data = {
            "goal": _goal_view(appliance, goal),
            "totals": next(row for row in reports.report(stats_query) if row["goal_id"] == goal.id),
            "timeseries": reports.timeseries(unfiltered, goal),
            "breakdown": {"dimension": property, "results": reports.breakdown(stats_query, goal, property, limit)},
        }
        # the file: the breakdown's rows (the part a query's filters and limit shape)
        return answer(appliance, request, export_format, {"status": "success", "data": data},
                      lambda: result_report(stats_query.site, stats_query, f"Goal: {goal.name} by {property}",
                                            data["breakdown"]["results"]))


class FunnelController(Controller):
    path = "/api/v1/funnels"
    tags = ["funnels"]

    @get("/", guards=[can_view_site], summary="The site's funnels", sync_to_thread=True)
    def list_funnels(self, request: Request, appliance: ApplianceDep, site: SiteParam = None) -> dict[str, Any]:
        funnels = appliance.funnels.list(site_of(request).id)
        return {"status": "success", "data": [msgspec.to_builtins(f) for f in funnels]}

    @post("/", guards=[can_define], status_code=HTTP_201_CREATED, summary="Create a funnel of 2 to 8 steps", sync_to_thread=True)
    def create_funnel(self, request: Request, appliance: ApplianceDep, data: JSONBody[FunnelInput], site: SiteParam = None) -> dict[str, Any]:
        principal = principal_of(request)
        funnel = appliance.funnels.create(site_of(request).id, data, principal.name if principal else "")
        return {"status": "success", "data": msgspec.to_builtins(funnel)}

    @get("/{funnel_id:int}", guards=[can_view_site], summary="One funnel", sync_to_thread=True)
    def get_funnel(self, request: Request, appliance: ApplianceDep, funnel_id: FromPath[int], site: SiteParam = None) -> dict[str, Any]:
        funnel = appliance.funnels.get(site_of(request).id, funnel_id)
        return {"status": "success", "data": msgspec.to_builtins(funnel)}

    @put("/{funnel_id:int}", guards=[can_define], summary="Change a funnel", sync_to_thread=True)
    def change_funnel(self, request: Request, appliance: ApplianceDep, funnel_id: FromPath[int], data: JSONBody[FunnelInput], site: SiteParam = None) -> dict[str, Any]:
        funnel = appliance.funnels.change(site_of(request).id, funnel_id, data)
        return {"status": "success", "data": msgspec.to_builtins(funnel)}

    @delete("/{funnel_id:int}", guards=[can_define], status_code=HTTP_200_OK, summary="Delete a funnel", sync_to_thread=True)
    def delete_funnel(self, request: Request, appliance: ApplianceDep, funnel_id: FromPath[int], site: SiteParam = None) -> dict[str, Any]:
        appliance.funnels.delete(site_of(request).id, funnel_id)
        return {"status": "success"}

    @get("/{funnel_id:int}/report", guards=[can_view_site], sync_to_thread=True,
         summary="Visitors entering, reaching and dropping off at each step; conversion; median times")
    def funnel_report(self, request: Request, appliance: ApplianceDep, stats_query: QueryDep, funnel_id: FromPath[int],
                      export_format: FormatParam = None) -> Response:
        funnel = appliance.funnels.get(site_of(request).id, funnel_id)
        report = appliance.stats.funnel(stats_query, funnel)
        return answer(appliance, request, export_format, {"status": "success", "data": report},
                      lambda: result_report(stats_query.site, stats_query, f"Funnel: {funnel.name}", report["steps"]))


class SegmentController(Controller):
    path = "/api/v1/segments"
    tags = ["segments"]

    @get("/", guards=[can_view_site], summary="Segments visible to the caller (site-wide and their own private ones)", sync_to_thread=True)
    def list_segments(self, request: Request, appliance: ApplianceDep, site: SiteParam = None) -> dict[str, Any]:
        registry = appliance.segments
        segments = registry.list(site_of(request).id, caller_id(request))
        return {"status": "success", "data": [registry.view(s) for s in segments]}

    @post("/", guards=[can_define], status_code=HTTP_201_CREATED,
          summary="Save a segment (site-wide or private); a materialised one is back-filled from the log", sync_to_thread=True)
    def create_segment(self, request: Request, appliance: ApplianceDep, data: JSONBody[SegmentInput], site: SiteParam = None) -> dict[str, Any]:
        principal = principal_of(request)
        registry = appliance.segments
        segment = registry.create(site_of(request).id, data, caller_id(request), principal.name if principal else "")
        return {"status": "success", "data": registry.view(segment)}

    @get("/compare", guards=[can_view_site], sync_to_thread=True,
         summary="Totals of two or more segments (or everyone) side by side")
    def compare_segments(
        self, request: Request, appliance: ApplianceDep, stats_query: QueryDep,
        segments: Annotated[str, QueryParameter(name="segments", description="comma-separated ids or 'everyone'")] = "everyone",
        export_format: FormatParam = None,
    ) -> Response:
        chosen = [value.strip() for value in segments.split(",") if value.strip()]
        if not 1 <= len(chosen) <= 4:
            raise DefinitionError("segments", "compare 1 to 4 segments")
        registry = appliance.segments
        for value in chosen:
            if value != "everyone":
                if not value.isdigit():
                    raise DefinitionError("segments", f"not a segment id: {value!r}")
                registry.get(site_of(request).id, int(value), caller_id(request))
        columns = appliance.stats.compare_segments(stats_query, chosen)
        rows = [{"segment": column["segment"], "name": column.get("name", "Everyone"), **column["results"]} for column in columns]
        return answer(appliance, request, export_format, {"status": "success", "data": columns},
                      lambda: result_report(stats_query.site, stats_query, "Segment comparison", rows))

    @get("/{segment_id:int}", guards=[can_view_site],
         summary="One segment (a materialised one with its back-fill progress in materialisation)", sync_to_thread=True)
    def get_segment(self, request: Request, appliance: ApplianceDep, segment_id: FromPath[int], site: SiteParam = None) -> dict[str, Any]:
        registry = appliance.segments
        segment = registry.get(site_of(request).id, segment_id, caller_id(request))
        return {"status": "success", "data": registry.view(segment)}

    @put("/{segment_id:int}", guards=[can_define], summary="Change a segment", sync_to_thread=True)
    def change_segment(self, request: Request, appliance: ApplianceDep, segment_id: FromPath[int], data: JSONBody[SegmentInput], site: SiteParam = None) -> dict[str, Any]:
        registry = appliance.segments
        segment = registry.change(site_of(request).id, segment_id, data, caller_id(request))
        return {"status": "success", "data": registry.view(segment)}

    @delete("/{segment_id:int}", guards=[can_define], status_code=HTTP_200_OK, summary="Delete a segment", sync_to_thread=True)
    def delete_segment(self, request: Request, appliance: ApplianceDep, segment_id: FromPath[int], site: SiteParam = None) -> dict[str, Any]:
        appliance.segments.delete(site_of(request).id, segment_id, caller_id(request))
        return {"status": "success"}


DEFINITION_CONTROLLERS = [GoalController, FunnelController, SegmentController]
