"""The JSON API: authentication, users, sites, the seed's reports, stats, live, health.

Controllers declare their guards at class level and return plain dicts/Structs that Litestar
encodes with msgspec. Every report calls :mod:`appliance.stats`, the one query vocabulary.
"""

from __future__ import annotations

from datetime import date, timedelta
from typing import Annotated, Any

import msgspec
from litestar import Controller, Request, get, post
from litestar.exceptions import NotAuthorizedException, NotFoundException, PermissionDeniedException
from litestar.params import Parameter
from litestar.status_codes import HTTP_200_OK, HTTP_201_CREATED

from appliance.accounts import Role
from appliance.models import Site
from appliance.periods import local_today
from appliance.plugins import describe_plugins
from appliance.stats import Query, QueryError
from web.auth import can_read_site, current_user, requires_admin, requires_user


class AuthenticateBody(msgspec.Struct, kw_only=True):
    username: str
    password: str


class CreateUserBody(msgspec.Struct, kw_only=True):
    username: str
    password: str
    role: str = "viewer"
    email: str = ""
    sites: list[str] = []


class CreateSiteBody(msgspec.Struct, kw_only=True):
    domain: str
    name: str = ""
    timezone: str | None = None
    retention_days: int | None = None
    allowed_hostnames: list[str] = []


def _appliance(request: Request):
    return request.app.state.appliance


def _site_for(request: Request, domain: str | None) -> Site:
    appliance = _appliance(request)
    if domain:
        site = appliance.sites.get(domain)
    else:
        sites = appliance.sites.all()
        site = sites[0] if len(sites) == 1 else None
        if site is None:
            raise QueryError("site", "required: name the site's domain")
    if site is None:
        raise NotFoundException(f"unknown site {domain!r}")
    user = current_user(request)
    if user is None:
        raise NotAuthorizedException("a valid bearer token is required")
    if not can_read_site(user, site):
        raise PermissionDeniedException("no access to this site")
    return site


def _query(request: Request, site: str | None, start: date | None, end: date | None, interval: str) -> Query:
    site_record = _site_for(request, site)
    today = local_today(site_record.timezone)
    end = end or today
    start = start or (end - timedelta(days=29))
    return Query(site=site_record, date_from=start, date_to=end, interval=interval)


SiteParam = Annotated[str | None, Parameter(query="site", description="The site's domain")]
StartParam = Annotated[date | None, Parameter(query="start_date", description="First day (inclusive, site time zone); default 29 days before end_date")]
EndParam = Annotated[date | None, Parameter(query="end_date", description="Last day (inclusive); default today")]
IntervalParam = Annotated[str, Parameter(query="interval", description="hour, day, week or month")]


class AuthController(Controller):
    path = "/api/v1"
    tags = ["users"]

    @post("/authenticate", status_code=HTTP_200_OK, summary="Exchange a username and password for a bearer token")
    async def authenticate(self, request: Request, data: AuthenticateBody) -> dict[str, Any]:
        appliance = _appliance(request)
        user = appliance.accounts.verify_password(data.username, data.password)
        if user is None:
            raise NotAuthorizedException("wrong username or password")
        token = appliance.accounts.issue_token(user)
        return {"status": "success", "token": token, "expires_in": appliance.settings.auth.token_ttl_seconds}


class UserController(Controller):
    path = "/api/v1/users"
    tags = ["users"]
    guards = [requires_admin]

    @post("/", status_code=HTTP_201_CREATED, summary="Create a user (admin only)")
    async def create_user(self, request: Request, data: CreateUserBody) -> dict[str, Any]:
        appliance = _appliance(request)
        user = appliance.accounts.create(data.username, data.password, data.role, data.email)
        if data.sites:
            site_ids = []
            for domain in data.sites:
                site = appliance.sites.get(domain)
                if site is None:
                    raise QueryError("sites", f"unknown site {domain!r}")
                site_ids.append(site.id)
            user.sites = site_ids
            appliance.accounts.save(user)
        return {"status": "success", "user_id": f"user{user.id}"}

    @get("/", summary="List users (admin only)")
    async def list_users(self, request: Request) -> dict[str, Any]:
        users = _appliance(request).accounts.list()
        return {
            "status": "success",
            "data": [
                {"user_id": f"user{u.id}", "username": u.username, "email": u.email, "role": str(u.role)}
                for u in users
            ],
        }


class SiteController(Controller):
    path = "/api/v1/sites"
    tags = ["sites"]
    guards = [requires_user]

    @get("/", summary="Sites the caller can read")
    async def list_sites(self, request: Request) -> dict[str, Any]:
        user = current_user(request)
        sites = [s for s in _appliance(request).sites.all() if can_read_site(user, s)]
        return {"status": "success", "data": [msgspec.to_builtins(s) for s in sites]}

    @post("/", status_code=HTTP_201_CREATED, guards=[requires_admin], summary="Add a site (admin only)")
    async def add_site(self, request: Request, data: CreateSiteBody) -> dict[str, Any]:
        site = _appliance(request).sites.add(
            data.domain,
            name=data.name,
            timezone=data.timezone,
            retention_days=data.retention_days,
            allowed_hostnames=data.allowed_hostnames,
        )
        return {"status": "success", "data": msgspec.to_builtins(site)}


class ReportController(Controller):
    path = "/api/v1/reports"
    tags = ["reports"]
    guards = [requires_user]

    @get("/traffic", summary="The seed's traffic report, plus a time series and top dimensions")
    async def traffic(
        self, request: Request, site: SiteParam = None, start_date: StartParam = None,
        end_date: EndParam = None, interval: IntervalParam = "day",
    ) -> dict[str, Any]:
        query = _query(request, site, start_date, end_date, interval)
        stats = _appliance(request).stats
        data = stats.traffic_report(query)
        data["timeseries"] = stats.timeseries(query)
        data["dimensions"] = {
            name: stats.breakdown(query, name, 10)["results"]
            for name in ("page", "source", "channel", "referrer", "browser", "os", "device", "country")
        }
        return {"status": "success", "data": data}

    @get("/conversions", summary="The seed's conversion report, plus one row per goal")
    async def conversions(
        self, request: Request, site: SiteParam = None, start_date: StartParam = None,
        end_date: EndParam = None,
    ) -> dict[str, Any]:
        query = _query(request, site, start_date, end_date, "day")
        stats = _appliance(request).stats
        data = stats.conversions_report(query)
        data["goals"] = stats.conversions(query)["goals"]
        return {"status": "success", "data": data}


class StatsController(Controller):
    path = "/api/v1/stats"
    tags = ["stats"]
    guards = [requires_user]

    @get("/aggregate", summary="Totals for a period, optionally compared with another period")
    async def aggregate(
        self, request: Request, site: SiteParam = None, start_date: StartParam = None,
        end_date: EndParam = None,
        compare: Annotated[
            str | None, Parameter(query="compare", description="previous_period or year_over_year")
        ] = None,
    ) -> dict[str, Any]:
        query = _query(request, site, start_date, end_date, "day")
        stats = _appliance(request).stats
        if compare:
            compared = stats.aggregate_compared(query, compare)
            return {"status": "success", "data": compared["results"], "comparison": compared["comparison"]}
        result = stats.aggregate(query)
        result.pop("converting_visitors_by_type", None)
        return {"status": "success", "data": result}

    @get("/timeseries", summary="Visitors and page views per hour, day, week or month")
    async def timeseries(
        self, request: Request, site: SiteParam = None, start_date: StartParam = None,
        end_date: EndParam = None, interval: IntervalParam = "day",
    ) -> dict[str, Any]:
        query = _query(request, site, start_date, end_date, interval)
        return {"status": "success", "data": _appliance(request).stats.timeseries(query)}

    @get("/breakdown", summary="Top values of one dimension")
    async def breakdown(
        self, request: Request, site: SiteParam = None, start_date: StartParam = None,
        end_date: EndParam = None, property: Annotated[str, Parameter(query="property")] = "page",  # noqa: A002
        limit: Annotated[int, Parameter(query="limit", ge=1, le=1000)] = 10,
    ) -> dict[str, Any]:
        query = _query(request, site, start_date, end_date, "day")
        return {"status": "success", "data": _appliance(request).stats.breakdown(query, property, limit)}

    @get("/entry-pages", summary="Pages visits started on: visits, bounce rate, visit duration")
    async def entry_pages(
        self, request: Request, site: SiteParam = None, start_date: StartParam = None,
        end_date: EndParam = None, limit: Annotated[int, Parameter(query="limit", ge=1, le=1000)] = 10,
    ) -> dict[str, Any]:
        query = _query(request, site, start_date, end_date, "day")
        return {"status": "success", "data": _appliance(request).stats.entry_pages(query, limit)}

    @get("/exit-pages", summary="Pages visits ended on: exits and exit rate")
    async def exit_pages(
        self, request: Request, site: SiteParam = None, start_date: StartParam = None,
        end_date: EndParam = None, limit: Annotated[int, Parameter(query="limit", ge=1, le=1000)] = 10,
    ) -> dict[str, Any]:
        query = _query(request, site, start_date, end_date, "day")
        return {"status": "success", "data": _appliance(request).stats.exit_pages(query, limit)}

    @get("/time-on-page", summary="Average foreground time and scroll depth per page")
    async def time_on_page(
        self, request: Request, site: SiteParam = None, start_date: StartParam = None,
        end_date: EndParam = None, limit: Annotated[int, Parameter(query="limit", ge=1, le=1000)] = 10,
    ) -> dict[str, Any]:
        query = _query(request, site, start_date, end_date, "day")
        return {"status": "success", "data": _appliance(request).stats.time_on_page(query, limit)}

    @get("/events", summary="Custom events with counts and unique visitors")
    async def events(
        self, request: Request, site: SiteParam = None, start_date: StartParam = None, end_date: EndParam = None
    ) -> dict[str, Any]:
        query = _query(request, site, start_date, end_date, "day")
        return {"status": "success", "data": _appliance(request).stats.custom_events(query)}


class LiveController(Controller):
    path = "/api/v1/live"
    tags = ["live"]
    guards = [requires_user]

    @get("/", summary="The latest committed events from the in-memory ring buffer")
    async def live(
        self, request: Request, site: SiteParam = None,
        limit: Annotated[int, Parameter(query="limit", ge=1, le=5000)] = 100,
    ) -> dict[str, Any]:
        site_record = _site_for(request, site)
        appliance = _appliance(request)
        items = appliance.live.latest(limit, site_record.id)
        return {
            "status": "success",
            "current_visitors": appliance.stats.current_visitors(site_record),
            "data": [_live_item(event_id, event) for event_id, event in items],
        }


def _live_item(event_id: str, event) -> dict[str, Any]:
    item = msgspec.to_builtins(event)
    item["event_id"] = "evt_" + event_id
    item["kind"] = event.kind.name.lower()
    item.pop("visitor_id", None)
    return item


class HealthController(Controller):
    path = "/api/v1"
    tags = ["health"]

    @get(["/health", "/healthz"], summary="Liveness, drop counts and storage usage (no auth)")
    async def health(self, request: Request) -> dict[str, Any]:
        return _appliance(request).health()

    @get("/plugins", guards=[requires_admin], summary="Loaded plugins and their hooks (admin only)")
    async def plugins(self, request: Request) -> dict[str, Any]:
        return {"status": "success", "data": describe_plugins(_appliance(request).plugin_manager)}


API_CONTROLLERS = [
    AuthController,
    UserController,
    SiteController,
    ReportController,
    StatsController,
    LiveController,
    HealthController,
]

__all__ = ["API_CONTROLLERS", "Role"]
