"""The JSON API: authentication, users, API keys, sites, audit, the seed's reports, stats,
live, health.

Controllers declare their guards (:mod:`web.auth`) at class level, or per handler where one
controller's routes differ, and return plain dicts/Structs that Litestar encodes with msgspec.
Handlers never check roles: the guard has already resolved the caller and the site. Every
report calls :mod:`appliance.query.stats`, the one query vocabulary. Admin actions are written to
the audit log.
"""

from __future__ import annotations

from datetime import date, timedelta
from typing import Annotated, Any

import msgspec
from litestar import Controller, Request, delete, get, patch, post
from litestar.exceptions import NotAuthorizedException, NotFoundException
from litestar.params import QueryParameter
from litestar.status_codes import HTTP_200_OK, HTTP_201_CREATED

from appliance.accounts.models import ApiKey, User
from appliance.accounts.permissions import Role
from appliance.events.live import LiveEvent, live_event
from appliance.hooks.manager import describe_plugins
from appliance.models import Site
from appliance.periods import local_today
from appliance.query.spec import Query, QueryError, check_day
from web.api_definitions import FiltersParam, query_filters
from web.auth import (
    can_manage_api_keys,
    can_manage_settings,
    can_manage_site,
    can_manage_sites,
    can_manage_users,
    can_read_audit,
    can_view_site,
    principal_of,
    requires_user,
    sees_event_details,
    site_of,
    throttled_login,
)
from web.openapi import error_responses


class AuthenticateBody(msgspec.Struct, kw_only=True):
    username: str
    password: str
    expires_in: int | None = None  # seconds; at most auth.token_ttl_seconds


class CreateUserBody(msgspec.Struct, kw_only=True):
    username: str
    password: str
    role: str = "viewer"
    email: str = ""
    sites: list[str] = []


class ChangeUserBody(msgspec.Struct, kw_only=True):
    role: str | None = None
    email: str | None = None
    sites: list[str] | None = None
    password: str | None = None


class CreateSiteBody(msgspec.Struct, kw_only=True):
    domain: str
    name: str = ""
    timezone: str | None = None
    retention_days: int | None = None
    allowed_hostnames: list[str] = []
    public: bool = False


class ChangeSiteBody(msgspec.Struct, kw_only=True):
    domain: str | None = None
    name: str | None = None
    timezone: str | None = None
    retention_days: int | None = None
    allowed_hostnames: list[str] | None = None
    public: bool | None = None


class CreateApiKeyBody(msgspec.Struct, kw_only=True):
    name: str
    read_only: bool = False
    expires_in_days: int | None = None


def _appliance(request: Request):
    return request.app.state.appliance


def _audit(request: Request, action: str, target: str = "", **details: Any) -> None:
    principal = principal_of(request)
    actor = principal.name if principal is not None else "(anonymous)"
    _appliance(request).audit.record(actor, action, target, **details)


def _site_for(request: Request, domain: str | None = None) -> Site:
    """The site the route's guard resolved and authorised (``domain`` is only documentation)."""
    return site_of(request)


def _query(
    request: Request, site: str | None, start: date | None, end: date | None, interval: str, filters: str | None = None
) -> Query:
    site_record = _site_for(request, site)
    today = local_today(site_record.timezone)
    end = check_day("end_date", end or today)
    start = start or (end - timedelta(days=29))
    return Query(
        site=site_record, date_from=start, date_to=end, interval=interval, filters=query_filters(request, filters)
    )


def _site_ids(request: Request, domains: list[str]) -> list[int]:
    ids = []
    for domain in domains:
        site = _appliance(request).sites.get(domain)
        if site is None:
            raise QueryError("sites", f"unknown site {domain!r}")
        ids.append(site.id)
    return ids


def _user_view(request: Request, user: User) -> dict[str, Any]:
    sites = _appliance(request).sites
    return {
        "user_id": f"user{user.id}",
        "username": user.username,
        "email": user.email,
        "role": str(user.role),
        "sites": [site.domain for site in map(sites.by_id, user.sites) if site is not None],
        "created_at": user.created_at,
    }


def _site_view(request: Request, site: Site) -> dict[str, Any]:
    view = msgspec.to_builtins(site)
    view["shared_link"] = _appliance(request).sites.has_share_token(site)
    return view


def _key_view(key: ApiKey) -> dict[str, Any]:
    return {
        "id": key.id,
        "name": key.name,
        "prefix": key.prefix,
        "username": key.username,
        "read_only": key.read_only,
        "created_at": key.created_at,
        "expires_at": key.expires_at or None,
    }


SiteParam = Annotated[str | None, QueryParameter(name="site", description="The site's domain")]
StartParam = Annotated[date | None, QueryParameter(name="start_date", description="First day (inclusive, site time zone); default 29 days before end_date")]
EndParam = Annotated[date | None, QueryParameter(name="end_date", description="Last day (inclusive); default today")]
LimitParam = Annotated[int, QueryParameter(name="limit", ge=1, le=1000, description="How many rows")]
IntervalParam = Annotated[str, QueryParameter(name="interval", description="hour, day, week or month")]


class AuthController(Controller):
    path = "/api/v1"
    tags = ["users"]

    @post(
        "/authenticate",
        status_code=HTTP_200_OK,
        summary="Exchange a username and password for a bearer token",
        description="Throttled per client IP and per username: 429 with Retry-After.", sync_to_thread=True,
        responses=error_responses(401, 429),
    )
    def authenticate(self, request: Request, data: AuthenticateBody) -> dict[str, Any]:
        user = throttled_login(request, data.username, data.password)
        if user is None:
            raise NotAuthorizedException("wrong username or password")
        accounts = _appliance(request).accounts
        ttl = accounts.token_ttl if data.expires_in is None else max(1, min(data.expires_in, accounts.token_ttl))
        token = accounts.issue_token(user, ttl)
        return {"status": "success", "token": token, "expires_in": ttl}


class MeController(Controller):
    path = "/api/v1/me"
    tags = ["users"]
    guards = [requires_user]

    @get("/", summary="Who the caller is: user, role, readable sites, credential kind", sync_to_thread=True)
    def me(self, request: Request) -> dict[str, Any]:
        principal = principal_of(request)
        data = _user_view(request, principal.user)
        data["credential"] = principal.via
        data["read_only"] = principal.read_only
        return {"status": "success", "data": data}


class UserController(Controller):
    path = "/api/v1/users"
    tags = ["users"]
    guards = [can_manage_users]

    @post("/", status_code=HTTP_201_CREATED, summary="Create a user (admin only)", sync_to_thread=True)
    def create_user(self, request: Request, data: CreateUserBody) -> dict[str, Any]:
        sites = _site_ids(request, data.sites)
        user = _appliance(request).accounts.create(data.username, data.password, data.role, data.email, sites)
        _audit(request, "user.create", user.username, role=str(user.role), sites=data.sites)
        return {"status": "success", "user_id": f"user{user.id}"}

    @get("/", summary="List users (admin only)", sync_to_thread=True)
    def list_users(self, request: Request) -> dict[str, Any]:
        users = _appliance(request).accounts.list()
        return {"status": "success", "data": [_user_view(request, user) for user in users]}

    @get("/{username:str}", summary="One user (admin only)", sync_to_thread=True)
    def get_user(self, request: Request, username: str) -> dict[str, Any]:
        user = _appliance(request).accounts.get(username)
        if user is None:
            raise NotFoundException(f"no such user: {username!r}")
        return {"status": "success", "data": _user_view(request, user)}

    @patch("/{username:str}", summary="Change a user's role, email, site grants or password (admin only)", sync_to_thread=True)
    def change_user(self, request: Request, username: str, data: ChangeUserBody) -> dict[str, Any]:
        accounts = _appliance(request).accounts
        sites = _site_ids(request, data.sites) if data.sites is not None else None
        if data.password is not None:
            accounts.set_password(username, data.password)
            _audit(request, "user.reset_password", username)
        user = accounts.update(username, role=data.role, email=data.email, sites=sites)
        changes = {k: v for k, v in msgspec.to_builtins(data).items() if v is not None and k != "password"}
        if changes:
            _audit(request, "user.update", user.username, **changes)
        return {"status": "success", "data": _user_view(request, user)}

    @delete("/{username:str}", status_code=HTTP_200_OK, summary="Delete a user and their credentials (admin only)", sync_to_thread=True)
    def delete_user(self, request: Request, username: str) -> dict[str, Any]:
        user = _appliance(request).accounts.delete(username)
        _audit(request, "user.delete", user.username)
        return {"status": "success"}

    @get("/{username:str}/apikeys", summary="A user's API keys (admin only)", sync_to_thread=True)
    def user_api_keys(self, request: Request, username: str) -> dict[str, Any]:
        accounts = _appliance(request).accounts
        user = accounts.get(username)
        if user is None:
            raise NotFoundException(f"no such user: {username!r}")
        return {"status": "success", "data": [_key_view(k) for k in accounts.api_keys(user.id)]}

    @delete("/{username:str}/apikeys/{key_id:int}", status_code=HTTP_200_OK, summary="Revoke any user's API key (admin only)", sync_to_thread=True)
    def revoke_user_api_key(self, request: Request, username: str, key_id: int) -> dict[str, Any]:
        accounts = _appliance(request).accounts
        user = accounts.get(username)
        key = accounts.revoke_api_key(key_id, user.id) if user is not None else None
        if key is None:
            raise NotFoundException(f"no API key {key_id} of {username!r}")
        _audit(request, "apikey.revoke", f"{key.username}/{key.id}", name=key.name)
        return {"status": "success"}


class ApiKeyController(Controller):
    path = "/api/v1/apikeys"
    tags = ["users"]
    guards = [can_manage_api_keys]

    @post("/", status_code=HTTP_201_CREATED, summary="Create an API key for yourself (shown once)", sync_to_thread=True)
    def create_api_key(self, request: Request, data: CreateApiKeyBody) -> dict[str, Any]:
        user = principal_of(request).user
        key, record = _appliance(request).accounts.create_api_key(
            user, data.name, read_only=data.read_only, expires_in_days=data.expires_in_days
        )
        _audit(request, "apikey.create", f"{user.username}/{record.id}", name=record.name, read_only=record.read_only)
        return {"status": "success", "key": key, "data": _key_view(record)}

    @get("/", summary="Your API keys (never the keys themselves)", sync_to_thread=True)
    def list_api_keys(self, request: Request) -> dict[str, Any]:
        keys = _appliance(request).accounts.api_keys(principal_of(request).user.id)
        return {"status": "success", "data": [_key_view(key) for key in keys]}

    @delete("/{key_id:int}", status_code=HTTP_200_OK, summary="Revoke one of your API keys", sync_to_thread=True)
    def revoke_api_key(self, request: Request, key_id: int) -> dict[str, Any]:
        user = principal_of(request).user
        key = _appliance(request).accounts.revoke_api_key(key_id, user.id)
        if key is None:
            raise NotFoundException(f"you have no API key {key_id}")
        _audit(request, "apikey.revoke", f"{user.username}/{key.id}", name=key.name)
        return {"status": "success"}


class SiteController(Controller):
    path = "/api/v1/sites"
    tags = ["sites"]

    @get("/", guards=[requires_user], summary="Sites the caller can read", sync_to_thread=True)
    def list_sites(self, request: Request) -> dict[str, Any]:
        user = principal_of(request).user
        sites = [s for s in _appliance(request).sites.all() if user.can_read_site(s.id)]
        return {"status": "success", "data": [_site_view(request, s) for s in sites]}

    @post("/", status_code=HTTP_201_CREATED, guards=[can_manage_sites], summary="Add a site (admin only)", sync_to_thread=True)
    def add_site(self, request: Request, data: CreateSiteBody) -> dict[str, Any]:
        sites = _appliance(request).sites
        site = sites.add(
            data.domain,
            name=data.name,
            timezone=data.timezone,
            retention_days=data.retention_days,
            allowed_hostnames=data.allowed_hostnames,
        )
        if data.public:
            site = sites.change(site.domain, public=True)
        _audit(request, "site.create", site.domain, timezone=site.timezone, public=site.public)
        return {"status": "success", "data": _site_view(request, site)}

    @get("/{domain:str}", guards=[can_view_site], summary="One site's settings", sync_to_thread=True)
    def get_site(self, request: Request, domain: str) -> dict[str, Any]:
        return {"status": "success", "data": _site_view(request, site_of(request))}

    # Changing a site is an admin's; the guard also resolves the site from the path.
    @patch("/{domain:str}", guards=[can_manage_site], summary="Rename a site or change its settings (admin only)", sync_to_thread=True)
    def change_site(self, request: Request, domain: str, data: ChangeSiteBody) -> dict[str, Any]:
        site = _appliance(request).sites.change(
            site_of(request).domain,
            new_domain=data.domain,
            name=data.name,
            timezone=data.timezone,
            retention_days=data.retention_days,
            allowed_hostnames=data.allowed_hostnames,
            public=data.public,
        )
        changes = {k: v for k, v in msgspec.to_builtins(data).items() if v is not None}
        _audit(request, "site.update", site_of(request).domain, **changes)
        return {"status": "success", "data": _site_view(request, site)}

    @delete("/{domain:str}", guards=[can_manage_site], status_code=HTTP_200_OK, sync_to_thread=True, summary="Delete a site with all its data (admin only)")
    def delete_site(self, request: Request, domain: str) -> dict[str, Any]:
        site = site_of(request)
        _appliance(request).delete_site(site.domain)
        _audit(request, "site.delete", site.domain, site_id=site.id)
        return {"status": "success"}

    @post("/{domain:str}/shared-link", guards=[can_manage_site], status_code=HTTP_201_CREATED, summary="Create or replace the site's shared-link token (shown once)", sync_to_thread=True)
    def create_shared_link(self, request: Request, domain: str) -> dict[str, Any]:
        site = site_of(request)
        token = _appliance(request).sites.create_share_token(site)
        _audit(request, "site.shared_link.create", site.domain)
        return {"status": "success", "token": token}

    @delete("/{domain:str}/shared-link", guards=[can_manage_site], status_code=HTTP_200_OK, summary="Disable the site's shared link", sync_to_thread=True)
    def delete_shared_link(self, request: Request, domain: str) -> dict[str, Any]:
        site = site_of(request)
        if not _appliance(request).sites.delete_share_token(site):
            raise NotFoundException("this site has no shared link")
        _audit(request, "site.shared_link.delete", site.domain)
        return {"status": "success"}


class AuditController(Controller):
    path = "/api/v1/audit"
    tags = ["users"]
    guards = [can_read_audit]

    @get("/", summary="The audit log of admin actions, newest first (admin only)", sync_to_thread=True)
    def audit_log(
        self, request: Request,
        limit: Annotated[int, QueryParameter(name="limit", ge=1, le=10_000)] = 100,
        action: Annotated[str | None, QueryParameter(name="action", description="e.g. user or user.create")] = None,
    ) -> dict[str, Any]:
        entries = _appliance(request).audit.latest(limit, action)
        return {"status": "success", "data": [msgspec.to_builtins(entry) for entry in entries]}


class ReportController(Controller):
    path = "/api/v1/reports"
    tags = ["reports"]
    guards = [can_view_site]

    @get("/traffic", summary="The seed's traffic report, plus a time series and top dimensions", sync_to_thread=True)
    def traffic(
        self, request: Request, site: SiteParam = None, start_date: StartParam = None,
        end_date: EndParam = None, interval: IntervalParam = "day",
        filters: FiltersParam = None,
    ) -> dict[str, Any]:
        query = _query(request, site, start_date, end_date, interval, filters)
        stats = _appliance(request).stats
        data = stats.traffic_report(query)
        data["timeseries"] = stats.timeseries(query)
        data["dimensions"] = {
            name: stats.breakdown(query, name, 10)["results"]
            for name in ("page", "source", "channel", "referrer", "browser", "os", "device", "country")
        }
        return {"status": "success", "data": data}

    @get("/conversions", summary="The seed's conversion report, plus one row per goal", sync_to_thread=True)
    def conversions(
        self, request: Request, site: SiteParam = None, start_date: StartParam = None,
        end_date: EndParam = None,
        filters: FiltersParam = None,
    ) -> dict[str, Any]:
        query = _query(request, site, start_date, end_date, "day", filters)
        stats = _appliance(request).stats
        data = stats.conversions_report(query)
        # conversion types as before, then one row per defined goal (with "goal_id")
        data["goals"] = [*stats.conversions(query)["goals"], *_appliance(request).goal_reports.report(query)]
        return {"status": "success", "data": data}


class StatsController(Controller):
    path = "/api/v1/stats"
    tags = ["stats"]
    guards = [can_view_site]

    @get("/aggregate", summary="Totals for a period, optionally compared with another period", sync_to_thread=True)
    def aggregate(
        self, request: Request, site: SiteParam = None, start_date: StartParam = None,
        end_date: EndParam = None,
        compare: Annotated[
            str | None, QueryParameter(name="compare", description="previous_period or year_over_year")
        ] = None,
        filters: FiltersParam = None,
    ) -> dict[str, Any]:
        query = _query(request, site, start_date, end_date, "day", filters)
        stats = _appliance(request).stats
        if compare:
            compared = stats.aggregate_compared(query, compare)
            return {"status": "success", "data": compared["results"], "comparison": compared["comparison"]}
        result = stats.aggregate(query)
        result.pop("converting_visitors_by_type", None)
        return {"status": "success", "data": result}

    @get("/timeseries", summary="Visitors and page views per hour, day, week or month", sync_to_thread=True)
    def timeseries(
        self, request: Request, site: SiteParam = None, start_date: StartParam = None,
        end_date: EndParam = None, interval: IntervalParam = "day",
        filters: FiltersParam = None,
    ) -> dict[str, Any]:
        query = _query(request, site, start_date, end_date, interval, filters)
        return {"status": "success", "data": _appliance(request).stats.timeseries(query)}

    @get("/breakdown", summary="Top values of one dimension", sync_to_thread=True)
    def breakdown(
        self, request: Request, site: SiteParam = None, start_date: StartParam = None,
        end_date: EndParam = None, property: Annotated[str, QueryParameter(name="property")] = "page",  # noqa: A002
        limit: LimitParam = 10,
        filters: FiltersParam = None,
    ) -> dict[str, Any]:
        query = _query(request, site, start_date, end_date, "day", filters)
        return {"status": "success", "data": _appliance(request).stats.breakdown(query, property, limit)}

    @get("/entry-pages", summary="Pages visits started on: visits, bounce rate, visit duration", sync_to_thread=True)
    def entry_pages(
        self, request: Request, site: SiteParam = None, start_date: StartParam = None,
        end_date: EndParam = None, limit: LimitParam = 10,
        filters: FiltersParam = None,
    ) -> dict[str, Any]:
        query = _query(request, site, start_date, end_date, "day", filters)
        return {"status": "success", "data": _appliance(request).stats.entry_pages(query, limit)}

    @get("/exit-pages", summary="Pages visits ended on: exits and exit rate", sync_to_thread=True)
    def exit_pages(
        self, request: Request, site: SiteParam = None, start_date: StartParam = None,
        end_date: EndParam = None, limit: LimitParam = 10,
        filters: FiltersParam = None,
    ) -> dict[str, Any]:
        query = _query(request, site, start_date, end_date, "day", filters)
        return {"status": "success", "data": _appliance(request).stats.exit_pages(query, limit)}

    @get("/time-on-page", summary="Average foreground time and scroll depth per page", sync_to_thread=True)
    def time_on_page(
        self, request: Request, site: SiteParam = None, start_date: StartParam = None,
        end_date: EndParam = None, limit: LimitParam = 10,
        filters: FiltersParam = None,
    ) -> dict[str, Any]:
        query = _query(request, site, start_date, end_date, "day", filters)
        return {"status": "success", "data": _appliance(request).stats.time_on_page(query, limit)}

    @get("/events", summary="Custom events with counts and unique visitors", sync_to_thread=True)
    def events(
        self, request: Request, site: SiteParam = None, start_date: StartParam = None, end_date: EndParam = None,
        filters: FiltersParam = None,
    ) -> dict[str, Any]:
        query = _query(request, site, start_date, end_date, "day", filters)
        return {"status": "success", "data": _appliance(request).stats.custom_events(query)}


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
        self, request: Request, site: SiteParam = None,
        limit: Annotated[int, QueryParameter(name="limit", ge=1, le=5000)] = 100,
    ) -> LiveAnswer:
        """Latest first, each as a ``LiveEvent``: custom properties and the other event details
        only for analysts and admins; never a session id, visitor id or user id."""
        site_record = _site_for(request, site)
        appliance = _appliance(request)
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

    @get(["/health", "/healthz"], summary="Liveness, drop counts and storage usage (no auth)", sync_to_thread=True)
    def health(self, request: Request) -> dict[str, Any]:
        return _appliance(request).health()

    @get("/plugins", guards=[can_manage_settings], summary="Loaded plugins and their hooks (admin only)", sync_to_thread=True)
    def plugins(self, request: Request) -> dict[str, Any]:
        return {"status": "success", "data": describe_plugins(_appliance(request).plugin_manager)}


API_CONTROLLERS = [
    AuthController,
    MeController,
    UserController,
    ApiKeyController,
    SiteController,
    AuditController,
    ReportController,
    StatsController,
    LiveController,
    HealthController,
]

__all__ = ["API_CONTROLLERS", "Role"]
