"""The JSON API for a site's definitions — goals, funnels, segments — and their reports.

Analysts and admins create, change and delete (``can_define``); anyone who can read the site
lists them and reads their reports (``can_view_site``). Private segments are visible to their
author only. The definitions live in LMDB records with the rest of the site's metadata
(:mod:`appliance.definitions.goals`, :mod:`appliance.definitions.funnels`, :mod:`appliance.definitions.segments`).

Also here: :func:`query_filters`, which reads the ``filters`` query parameter every stats and
report route takes, and checks that each segment it names is visible to the caller.
"""

from __future__ import annotations

from datetime import date, timedelta
from typing import Annotated, Any

import msgspec
from litestar import Controller, Request, delete, get, post, put
from litestar.params import QueryParameter
from litestar.status_codes import HTTP_200_OK, HTTP_201_CREATED

from appliance.definitions.common import DefinitionError
from appliance.definitions.funnels import FunnelInput
from appliance.definitions.goals import GoalInput
from appliance.definitions.segments import SegmentInput
from appliance.filters import Filter, FilterError, parse_filters
from appliance.periods import local_today
from appliance.query.spec import Query, check_day
from web.auth import can_define, can_view_site, principal_of, site_of

FILTERS_DESCRIPTION = (
    'Filters, as JSON ``[["is", "page", ["/a", "/b"]], ["contains", "source", ["goo"]]]`` or the short form '
    "``page==/a|/b;source~goo;country!=DE``. Operators: is, is_not, contains, does_not_contain, matches, "
    "does_not_match (``*`` wildcards). Dimensions: page, entry_page, exit_page, hostname, source, channel, "
    "referrer, utm_source, utm_medium, utm_campaign, utm_term, utm_content, country, region, browser, "
    "browser_version, os, os_version, device, screen, language, event, prop:KEY, goal, segment (an id). "
    "Values in one filter are OR-ed, filters AND-ed."
)
FiltersParam = Annotated[str | None, QueryParameter(name="filters", description=FILTERS_DESCRIPTION)]
SiteParam = Annotated[str | None, QueryParameter(name="site", description="The site's domain")]
StartParam = Annotated[date | None, QueryParameter(name="start_date", description="First day (inclusive); default 29 days before end_date")]
EndParam = Annotated[date | None, QueryParameter(name="end_date", description="Last day (inclusive); default today")]


def _appliance(request: Request):
    return request.app.state.appliance


def _user_id(request: Request) -> int:
    """The caller's user id; -1 for shared links and public dashboards (no private segments)."""
    principal = principal_of(request)
    user = principal.user if principal is not None else None
    return user.id if user is not None else -1


def query_filters(request: Request, text: str | None) -> list[Filter]:
    """The ``filters`` parameter, parsed; a named segment must be visible to the caller."""
    from appliance.query.spec import QueryError

    try:
        filters = parse_filters(text)
    except FilterError as error:
        raise QueryError("filters", error.message, error.status) from None
    segments = _appliance(request).segments
    site = site_of(request)
    for condition in filters:
        if condition.dimension == "segment":
            for value in condition.values:
                if not value.isdigit():
                    raise QueryError("filters", f"segment takes a segment id, not {value!r}")
                segments.get(site.id, int(value), _user_id(request))
    return filters


def _query(request: Request, start: date | None, end: date | None, filters: str | None, interval: str = "day") -> Query:
    site = site_of(request)
    end = check_day("end_date", end or local_today(site.timezone))
    start = start or (end - timedelta(days=29))
    return Query(site=site, date_from=start, date_to=end, interval=interval, filters=query_filters(request, filters))


def _goal_view(request: Request, goal) -> dict[str, Any]:
    view = msgspec.to_builtins(goal)
    for internal in ("counter_id", "backfill_before", "backfilled"):
        view.pop(internal, None)
    view["backfill"] = _appliance(request).goals.status(goal)
    return view


class GoalController(Controller):
    path = "/api/v1/goals"
    tags = ["goals"]

    @get("/", guards=[can_view_site], summary="The site's goals, with back-fill progress", sync_to_thread=True)
    def list_goals(self, request: Request, site: SiteParam = None) -> dict[str, Any]:
        goals = _appliance(request).goals.list(site_of(request).id)
        return {"status": "success", "data": [_goal_view(request, goal) for goal in goals]}

    @post("/", guards=[can_define], status_code=HTTP_201_CREATED, sync_to_thread=True,
          summary="Create a goal (analysts and admins); its history is back-filled from the log")
    def create_goal(self, request: Request, data: GoalInput, site: SiteParam = None) -> dict[str, Any]:
        principal = principal_of(request)
        goal = _appliance(request).goals.create(site_of(request).id, data, principal.name if principal else "")
        return {"status": "success", "data": _goal_view(request, goal)}

    @get("/{goal_id:int}", guards=[can_view_site], summary="One goal", sync_to_thread=True)
    def get_goal(self, request: Request, goal_id: int, site: SiteParam = None) -> dict[str, Any]:
        return {"status": "success", "data": _goal_view(request, _appliance(request).goals.get(site_of(request).id, goal_id))}

    @put("/{goal_id:int}", guards=[can_define], sync_to_thread=True,
         summary="Change a goal (analysts and admins); a changed definition is back-filled again")
    def change_goal(self, request: Request, goal_id: int, data: GoalInput, site: SiteParam = None) -> dict[str, Any]:
        goal = _appliance(request).goals.change(site_of(request).id, goal_id, data)
        return {"status": "success", "data": _goal_view(request, goal)}

    @delete("/{goal_id:int}", guards=[can_define], status_code=HTTP_200_OK, sync_to_thread=True, summary="Delete a goal")
    def delete_goal(self, request: Request, goal_id: int, site: SiteParam = None) -> dict[str, Any]:
        _appliance(request).goals.delete(site_of(request).id, goal_id)
        return {"status": "success"}

    @get("/{goal_id:int}/stats", guards=[can_view_site], sync_to_thread=True,
         summary="A goal's conversions per day, and its conversion rate per value of a dimension")
    def goal_stats(
        self, request: Request, goal_id: int, site: SiteParam = None, start_date: StartParam = None,
        end_date: EndParam = None, filters: FiltersParam = None,
        property: Annotated[str, QueryParameter(name="property", description="dimension for the breakdown")] = "source",  # noqa: A002
        limit: Annotated[int, QueryParameter(name="limit", ge=1, le=1000)] = 10,
    ) -> dict[str, Any]:
        goal = _appliance(request).goals.get(site_of(request).id, goal_id)
        reports = _appliance(request).goal_reports
        query = _query(request, start_date, end_date, filters)
        unfiltered = msgspec.structs.replace(query, filters=[])
        return {
            "status": "success",
            "data": {
                "goal": _goal_view(request, goal),
                "totals": next(row for row in reports.report(query) if row["goal_id"] == goal.id),
                "timeseries": reports.timeseries(unfiltered, goal),
                "breakdown": {"dimension": property, "results": reports.breakdown(query, goal, property, limit)},
            },
        }


class FunnelController(Controller):
    path = "/api/v1/funnels"
    tags = ["funnels"]

    @get("/", guards=[can_view_site], summary="The site's funnels", sync_to_thread=True)
    def list_funnels(self, request: Request, site: SiteParam = None) -> dict[str, Any]:
        funnels = _appliance(request).funnels.list(site_of(request).id)
        return {"status": "success", "data": [msgspec.to_builtins(f) for f in funnels]}

    @post("/", guards=[can_define], status_code=HTTP_201_CREATED, summary="Create a funnel of 2 to 8 steps", sync_to_thread=True)
    def create_funnel(self, request: Request, data: FunnelInput, site: SiteParam = None) -> dict[str, Any]:
        principal = principal_of(request)
        funnel = _appliance(request).funnels.create(site_of(request).id, data, principal.name if principal else "")
        return {"status": "success", "data": msgspec.to_builtins(funnel)}

    @get("/{funnel_id:int}", guards=[can_view_site], summary="One funnel", sync_to_thread=True)
    def get_funnel(self, request: Request, funnel_id: int, site: SiteParam = None) -> dict[str, Any]:
        funnel = _appliance(request).funnels.get(site_of(request).id, funnel_id)
        return {"status": "success", "data": msgspec.to_builtins(funnel)}

    @put("/{funnel_id:int}", guards=[can_define], summary="Change a funnel", sync_to_thread=True)
    def change_funnel(self, request: Request, funnel_id: int, data: FunnelInput, site: SiteParam = None) -> dict[str, Any]:
        funnel = _appliance(request).funnels.change(site_of(request).id, funnel_id, data)
        return {"status": "success", "data": msgspec.to_builtins(funnel)}

    @delete("/{funnel_id:int}", guards=[can_define], status_code=HTTP_200_OK, summary="Delete a funnel", sync_to_thread=True)
    def delete_funnel(self, request: Request, funnel_id: int, site: SiteParam = None) -> dict[str, Any]:
        _appliance(request).funnels.delete(site_of(request).id, funnel_id)
        return {"status": "success"}

    @get("/{funnel_id:int}/report", guards=[can_view_site], sync_to_thread=True,
         summary="Visitors entering, reaching and dropping off at each step; conversion; median times")
    def funnel_report(
        self, request: Request, funnel_id: int, site: SiteParam = None, start_date: StartParam = None,
        end_date: EndParam = None, filters: FiltersParam = None,
    ) -> dict[str, Any]:
        funnels = _appliance(request).funnels
        funnel = funnels.get(site_of(request).id, funnel_id)
        return {"status": "success", "data": _appliance(request).stats.funnel(_query(request, start_date, end_date, filters), funnel)}


class SegmentController(Controller):
    path = "/api/v1/segments"
    tags = ["segments"]

    @get("/", guards=[can_view_site], summary="Segments visible to the caller (site-wide and their own private ones)", sync_to_thread=True)
    def list_segments(self, request: Request, site: SiteParam = None) -> dict[str, Any]:
        registry = _appliance(request).segments
        segments = registry.list(site_of(request).id, _user_id(request))
        return {"status": "success", "data": [registry.view(s) for s in segments]}

    @post("/", guards=[can_define], status_code=HTTP_201_CREATED,
          summary="Save a segment (site-wide or private); a materialised one is back-filled from the log", sync_to_thread=True)
    def create_segment(self, request: Request, data: SegmentInput, site: SiteParam = None) -> dict[str, Any]:
        principal = principal_of(request)
        registry = _appliance(request).segments
        segment = registry.create(site_of(request).id, data, _user_id(request), principal.name if principal else "")
        return {"status": "success", "data": registry.view(segment)}

    @get("/compare", guards=[can_view_site], sync_to_thread=True,
         summary="Totals of two or more segments (or everyone) side by side")
    def compare_segments(
        self, request: Request, site: SiteParam = None, start_date: StartParam = None, end_date: EndParam = None,
        filters: FiltersParam = None,
        segments: Annotated[str, QueryParameter(name="segments", description="comma-separated ids or 'everyone'")] = "everyone",
    ) -> dict[str, Any]:
        chosen = [value.strip() for value in segments.split(",") if value.strip()]
        if not 1 <= len(chosen) <= 4:
            raise DefinitionError("segments", "compare 1 to 4 segments")
        registry = _appliance(request).segments
        for value in chosen:
            if value != "everyone":
                if not value.isdigit():
                    raise DefinitionError("segments", f"not a segment id: {value!r}")
                registry.get(site_of(request).id, int(value), _user_id(request))
        query = _query(request, start_date, end_date, filters)
        return {"status": "success", "data": _appliance(request).stats.compare_segments(query, chosen)}

    @get("/{segment_id:int}", guards=[can_view_site],
         summary="One segment (a materialised one with its back-fill progress in materialisation)", sync_to_thread=True)
    def get_segment(self, request: Request, segment_id: int, site: SiteParam = None) -> dict[str, Any]:
        registry = _appliance(request).segments
        segment = registry.get(site_of(request).id, segment_id, _user_id(request))
        return {"status": "success", "data": registry.view(segment)}

    @put("/{segment_id:int}", guards=[can_define], summary="Change a segment", sync_to_thread=True)
    def change_segment(self, request: Request, segment_id: int, data: SegmentInput, site: SiteParam = None) -> dict[str, Any]:
        registry = _appliance(request).segments
        segment = registry.change(site_of(request).id, segment_id, data, _user_id(request))
        return {"status": "success", "data": registry.view(segment)}

    @delete("/{segment_id:int}", guards=[can_define], status_code=HTTP_200_OK, summary="Delete a segment", sync_to_thread=True)
    def delete_segment(self, request: Request, segment_id: int, site: SiteParam = None) -> dict[str, Any]:
        _appliance(request).segments.delete(site_of(request).id, segment_id, _user_id(request))
        return {"status": "success"}


DEFINITION_CONTROLLERS = [GoalController, FunnelController, SegmentController]
