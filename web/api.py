"""The JSON API: sites, audit, the seed's reports, stats, live, health (authentication, users
and API keys are :mod:`web.api_accounts`).

Controllers declare their guards (:mod:`web.auth`) at class level, or per handler where one
controller's routes differ, and return plain dicts/Structs that Litestar encodes with msgspec.
Handlers never check roles: the guard has already resolved the caller and the site. Every
report calls :mod:`appliance.query.stats`, the one query vocabulary. Admin actions are written to
the audit log.
"""

from __future__ import annotations

from typing import Annotated, Any

import anyio
import msgspec
from litestar import Controller, Request, Response, delete, get, patch, post
from litestar.exceptions import NotFoundException
from litestar.openapi import ResponseSpec
from litestar.params import FromPath, JSONBody, QueryParameter
from litestar.status_codes import HTTP_200_OK, HTTP_201_CREATED, HTTP_503_SERVICE_UNAVAILABLE

from appliance.events.live import LiveEvent, live_event
from appliance.exports.building import result_report, series_chart
from appliance.hooks.manager import describe_plugins
from appliance.models import Site
from appliance.runtime.appliance import Appliance
from web.api_accounts import ACCOUNT_CONTROLLERS, audit
from web.auth import (
    can_manage_settings,
    can_manage_site,
    can_manage_sites,
    can_read_audit,
    can_view_site,
    principal_of,
    requires_user,
    sees_event_details,
    site_of,
)
from web.dependencies import INTERVAL_PARAMETER, ApplianceDep, QueryDep, SiteParam
from web.exports import FormatParam, answer


class CreateSiteBody(msgspec.Struct, kw_only=True):
    domain: str
    name: str = ""
    timezone: str | None = None
    retention_days: int | None = None
    allowed_hostnames: list[str] = []
    public: bool = False
    umami_website_id: str = ""  # README: Switching from Umami
    plausible_site_id: str = ""  # README: Switching from Plausible


class ChangeSiteBody(msgspec.Struct, kw_only=True):
    domain: str | None = None
    name: str | None = None
    timezone: str | None = None
    retention_days: int | None = None
    allowed_hostnames: list[str] | None = None
    public: bool | None = None
    umami_website_id: str | None = None
    plausible_site_id: str | None = None
    honour_gpc: bool | None = None
    honour_dnt: bool | None = None


def _site_view(appliance: Appliance, site: Site) -> dict[str, Any]:
    view = msgspec.to_builtins(site)
    view["shared_link"] = appliance.sites.has_share_token(site)
    return view


LimitParam = Annotated[int, QueryParameter(name="limit", ge=1, le=1000, description="How many rows")]


class SiteController(Controller):
    path = "/api/v1/sites"
    tags = ["sites"]

    @get("/", guards=[requires_user], summary="Sites the caller can read", sync_to_thread=True)
    def list_sites(self, request: Request, appliance: ApplianceDep) -> dict[str, Any]:
        user = principal_of(request).user
        sites = [s for s in appliance.sites.all() if user.can_read_site(s.id)]
        return {"status": "success", "data": [_site_view(appliance, s) for s in sites]}

    @post("/", status_code=HTTP_201_CREATED, guards=[can_manage_sites], summary="Add a site (admin only)", sync_to_thread=True)
    def add_site(self, request: Request, appliance: ApplianceDep, data: JSONBody[CreateSiteBody]) -> dict[str, Any]:
        sites = appliance.sites
        site = sites.add(
            data.domain,
            name=data.name,
            timezone=data.timezone,
            retention_days=data.retention_days,
            allowed_hostnames=data.allowed_hostnames,
            umami_website_id=data.umami_website_id,
            plausible_site_id=data.plausible_site_id,
        )
        if data.public:
            site = sites.change(site.domain, public=True)
        audit(appliance, request, "site.create", site.domain, timezone=site.timezone, public=site.public)
        return {"status": "success", "data": _site_view(appliance, site)}

    @get("/{domain:str}", guards=[can_view_site], summary="One site's settings", sync_to_thread=True)
    def get_site(self, request: Request, appliance: ApplianceDep, domain: FromPath[str]) -> dict[str, Any]:
        return {"status": "success", "data": _site_view(appliance, site_of(request))}

    # Changing a site is an admin's; the guard also resolves the site from the path.
    @patch("/{domain:str}", guards=[can_manage_site], summary="Rename a site or change its settings (admin only)", sync_to_thread=True)
    def change_site(self, request: Request, appliance: ApplianceDep, domain: FromPath[str], data: JSONBody[ChangeSiteBody]) -> dict[str, Any]:
        site = appliance.sites.change(
            site_of(request).domain,
            new_domain=data.domain,
            name=data.name,
            timezone=data.timezone,
            retention_days=data.retention_days,
            allowed_hostnames=data.allowed_hostnames,
            public=data.public,
            umami_website_id=data.umami_website_id,
            plausible_site_id=data.plausible_site_id,
            honour_gpc=data.honour_gpc,
            honour_dnt=data.honour_dnt,
        )
        changes = {k: v for k, v in msgspec.to_builtins(data).items() if v is not None}
        audit(appliance, request, "site.update", site_of(request).domain, **changes)
        return {"status": "success", "data": _site_view(appliance, site)}

    @delete("/{domain:str}", guards=[can_manage_site], status_code=HTTP_200_OK, sync_to_thread=True, summary="Delete a site with all its data (admin only)")
    def delete_site(self, request: Request, appliance: ApplianceDep, domain: FromPath[str]) -> dict[str, Any]:
        site = site_of(request)
        appliance.delete_site(site.domain)
        audit(appliance, request, "site.delete", site.domain, site_id=site.id)
        return {"status": "success"}

    @post("/{domain:str}/shared-link", guards=[can_manage_site], status_code=HTTP_201_CREATED, summary="Create or replace the site's shared-link token (shown once)", sync_to_thread=True)
    def create_shared_link(self, request: Request, appliance: ApplianceDep, domain: FromPath[str]) -> dict[str, Any]:
        site = site_of(request)
        token = appliance.sites.create_share_token(site)
        audit(appliance, request, "site.shared_link.create", site.domain)
        return {"status": "success", "token": token}

    @delete("/{domain:str}/shared-link", guards=[can_manage_site], status_code=HTTP_200_OK, summary="Disable the site's shared link", sync_to_thread=True)
    def delete_shared_link(self, request: Request, appliance: ApplianceDep, domain: FromPath[str]) -> dict[str, Any]:
        site = site_of(request)
        if not appliance.sites.delete_share_token(site):
            raise NotFoundException("this site has no shared link")
        audit(appliance, request, "site.shared_link.delete", site.domain)
        return {"status": "success"}


class AuditController(Controller):
    path = "/api/v1/audit"
    tags = ["users"]
    guards = [can_read_audit]

    @get("/", summary="The audit log of admin actions, newest first (admin only)", sync_to_thread=True)
    def audit_log(
        self, appliance: ApplianceDep,
        limit: Annotated[int, QueryParameter(name="limit", ge=1, le=10_000)] = 100,
        action: Annotated[str | None, QueryParameter(name="action", description="e.g. user or user.create")] = None,
    ) -> dict[str, Any]:
        entries = appliance.audit.latest(limit, action)
        return {"status": "success", "data": [msgspec.to_builtins(entry) for entry in entries]}


class ReportController(Controller):
    path = "/api/v1/reports"
    tags = ["reports"]
    guards = [can_view_site]

    @get("/traffic", summary="The seed's traffic report, plus a time series and top dimensions", sync_to_thread=True,
         dependencies=INTERVAL_PARAMETER)
    def traffic(self, request: Request, appliance: ApplianceDep, stats_query: QueryDep, export_format: FormatParam = None) -> Response:
        stats = appliance.stats
        data = stats.traffic_report(stats_query)
        data["timeseries"] = stats.timeseries(stats_query)
        data["dimensions"] = {
            name: stats.breakdown(stats_query, name, 10)["results"]
            for name in ("page", "source", "channel", "referrer", "browser", "os", "device", "country")
        }
        return answer(appliance, request, export_format, {"status": "success", "data": data},
                      lambda: result_report(stats_query.site, stats_query, "Traffic", data["timeseries"],
                                            charts=[series_chart(appliance, stats_query, "visitors", data["timeseries"])]))

    @get("/conversions", summary="The seed's conversion report, plus one row per goal", sync_to_thread=True)
    def conversions(self, request: Request, appliance: ApplianceDep, stats_query: QueryDep, export_format: FormatParam = None) -> Response:
        stats = appliance.stats
        data = stats.conversions_report(stats_query)
        # conversion types as before, then one row per defined goal (with "goal_id")
        data["goals"] = [*stats.conversions(stats_query)["goals"], *appliance.goal_reports.report(stats_query)]
        return answer(appliance, request, export_format, {"status": "success", "data": data},
                      lambda: result_report(stats_query.site, stats_query, "Conversions", data["goals"]))


def with_meta(
    appliance: Appliance, query, report: str, body: dict[str, Any], dimension: str | None = None
) -> dict[str, Any]:
    """``body`` with ``meta.imported`` when the query's days include imported data: the days,
    and whether this answer includes them (or why not, e.g. a filter)."""
    imported = appliance.stats.imported_meta(query, report, dimension)
    if imported is not None:
        body["meta"] = {"imported": imported}
    return body


class StatsController(Controller):
    """Every route answers JSON, or a file with ``?format=csv|json|pdf`` (:mod:`web.exports`)."""

    path = "/api/v1/stats"
    tags = ["stats"]
    guards = [can_view_site]

    @get("/aggregate", summary="Totals for a period, optionally compared with another period", sync_to_thread=True)
    def aggregate(
        self, request: Request, appliance: ApplianceDep, stats_query: QueryDep,
        compare: Annotated[
            str | None, QueryParameter(name="compare", description="previous_period or year_over_year")
        ] = None,
        export_format: FormatParam = None,
    ) -> Response:
        stats = appliance.stats
        if compare:
            compared = stats.aggregate_compared(stats_query, compare)
            rows = [{"period": "current", **compared["results"]},
                    {"period": "compared", **compared["comparison"]["results"]},
                    {"period": "change", **compared["comparison"]["change"]}]
            return answer(appliance, request, export_format,
                          with_meta(appliance, stats_query, "aggregate", {
                              "status": "success", "data": compared["results"], "comparison": compared["comparison"]}),
                          lambda: result_report(stats_query.site, stats_query, "Totals", rows))
        result = stats.aggregate(stats_query)
        result.pop("converting_visitors_by_type", None)
        return answer(appliance, request, export_format,
                      with_meta(appliance, stats_query, "aggregate", {"status": "success", "data": result}),
                      lambda: result_report(stats_query.site, stats_query, "Totals", result))

    @get("/timeseries", summary="Visitors and page views per hour, day, week or month", sync_to_thread=True,
         dependencies=INTERVAL_PARAMETER)
    def timeseries(self, request: Request, appliance: ApplianceDep, stats_query: QueryDep, export_format: FormatParam = None) -> Response:
        series = appliance.stats.timeseries(stats_query)
        return answer(appliance, request, export_format,
                      with_meta(appliance, stats_query, "timeseries", {"status": "success", "data": series}),
                      lambda: result_report(stats_query.site, stats_query, "Time series", series,
                                            charts=[series_chart(appliance, stats_query, "visitors", series)]))

    @get("/breakdown", summary="Top values of one dimension", sync_to_thread=True)
    def breakdown(
        self, request: Request, appliance: ApplianceDep, stats_query: QueryDep,
        property: Annotated[str, QueryParameter(name="property")] = "page",  # noqa: A002
        limit: LimitParam = 10,
        export_format: FormatParam = None,
    ) -> Response:
        result = appliance.stats.breakdown(stats_query, property, limit)
        return answer(appliance, request, export_format,
                      with_meta(appliance, stats_query, "breakdown", {"status": "success", "data": result}, property),
                      lambda: result_report(stats_query.site, stats_query, f"Top {property} values", result))

    @get("/entry-pages", summary="Pages visits started on: visits, bounce rate, visit duration", sync_to_thread=True)
    def entry_pages(self, request: Request, appliance: ApplianceDep, stats_query: QueryDep, limit: LimitParam = 10,
                    export_format: FormatParam = None) -> Response:
        rows = appliance.stats.entry_pages(stats_query, limit)
        return answer(appliance, request, export_format, with_meta(appliance, stats_query, "entry_pages", {"status": "success", "data": rows}),
                      lambda: result_report(stats_query.site, stats_query, "Entry pages", rows))

    @get("/exit-pages", summary="Pages visits ended on: exits and exit rate", sync_to_thread=True)
    def exit_pages(self, request: Request, appliance: ApplianceDep, stats_query: QueryDep, limit: LimitParam = 10,
                   export_format: FormatParam = None) -> Response:
        rows = appliance.stats.exit_pages(stats_query, limit)
        return answer(appliance, request, export_format, with_meta(appliance, stats_query, "exit_pages", {"status": "success", "data": rows}),
                      lambda: result_report(stats_query.site, stats_query, "Exit pages", rows))

    @get("/time-on-page", summary="Average foreground time and scroll depth per page", sync_to_thread=True)
    def time_on_page(self, request: Request, appliance: ApplianceDep, stats_query: QueryDep, limit: LimitParam = 10,
                     export_format: FormatParam = None) -> Response:
        rows = appliance.stats.time_on_page(stats_query, limit)
        return answer(appliance, request, export_format, {"status": "success", "data": rows},
                      lambda: result_report(stats_query.site, stats_query, "Time on page", rows))

    @get("/events", summary="Custom events with counts and unique visitors", sync_to_thread=True)
    def events(self, request: Request, appliance: ApplianceDep, stats_query: QueryDep, export_format: FormatParam = None) -> Response:
        rows = appliance.stats.custom_events(stats_query)
        return answer(appliance, request, export_format, with_meta(appliance, stats_query, "custom_events", {"status": "success", "data": rows}),
                      lambda: result_report(stats_query.site, stats_query, "Custom events", rows))


class LiveAnswer(msgspec.Struct, kw_only=True):
    """``GET /api/v1/live``: the current visitors and the latest events, newest first."""

    status: str
    current_visitors: int
    data: list[LiveEvent]


class LiveController(Controller):
    path = "/api/v1/live"
    tags = ["live"]
    guards = [can_view_site]

    @get("/", summary="The latest committed events from the in-memory ring buffer", sync_to_thread=True)
    def live(
        self, request: Request, appliance: ApplianceDep, site: SiteParam = None,
        limit: Annotated[int, QueryParameter(name="limit", ge=1, le=5000)] = 100,
    ) -> LiveAnswer:
        """Latest first, each as a ``LiveEvent``: custom properties and the other event details
        only for analysts and admins; never a session id, visitor id or user id."""
        site_record = site_of(request)  # resolved and authorised by the guard (``site`` documents it)
        details = sees_event_details(request)
        items = appliance.live.latest(limit, site_record.id)
        return LiveAnswer(
            status="success",
            current_visitors=appliance.stats.current_visitors(site_record),
            data=[live_event(event_id, event, details=details) for event_id, event in items],
        )


class HealthController(Controller):
    path = "/api/v1"
    tags = ["health"]

    @get(
        ["/health", "/healthz"],
        summary="Liveness, drop counts and storage usage (no auth)",
        description=(
            "200 while `status` is `ok`; 503 with the same body while it is `degraded` (the last "
            "commit failed, `last_error` says why), so container health checks and load balancers "
            "see the difference."
        ),
        responses={
            HTTP_503_SERVICE_UNAVAILABLE: ResponseSpec(
                data_container=dict[str, Any], generate_examples=False,
                description="Degraded: the same report, with `status` `degraded` and `last_error`",
            )
        },
    )
    async def health(self, appliance: ApplianceDep) -> Response[dict[str, Any]]:
        # async plus a worker thread (the report reads LMDB, so it stays off the event loop):
        # in this app a sync_to_thread handler returning a Response reached Litestar's
        # response handler as an unawaited coroutine (a 500); returning a dict did not
        report = await anyio.to_thread.run_sync(appliance.health)
        status = HTTP_200_OK if report["status"] == "ok" else HTTP_503_SERVICE_UNAVAILABLE
        return Response(report, status_code=status)

    @get("/plugins", guards=[can_manage_settings], summary="Loaded plugins and their hooks (admin only)", sync_to_thread=True)
    def plugins(self, appliance: ApplianceDep) -> dict[str, Any]:
        return {"status": "success", "data": describe_plugins(appliance.plugin_manager)}


API_CONTROLLERS = [
    *ACCOUNT_CONTROLLERS,
    SiteController,
    AuditController,
    ReportController,
    StatsController,
    LiveController,
    HealthController,
]

__all__ = ["API_CONTROLLERS"]
