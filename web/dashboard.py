"""The dashboard's pages: the site list, a site's one-page dashboard and its widgets, the
full breakdowns ("details"), site settings, and the admin pages for users, API keys and
plugins.

Server-rendered HTML with htmx on top: every link and form works without JavaScript (the URL
alone reproduces a view, see :mod:`web.views`), and with it, htmx boosts navigation and loads
each widget (:mod:`web.widgets`) on its own. Pages are guarded like every other route
(:mod:`web.auth`); templates post their forms with the session's CSRF token.
"""

from __future__ import annotations

import functools
import zoneinfo
from pathlib import Path
from typing import Any

from litestar import Controller, Request, Response, get, post
from litestar.exceptions import NotFoundException
from litestar.file_system import BaseLocalFileSystem
from litestar.params import FromPath
from litestar.response import Redirect, Template
from litestar.static_files import create_static_files_router
from markupsafe import Markup

from appliance.accounts.permissions import Permission
from appliance.periods import local_today
from appliance.query.spec import Query
from appliance.runtime.appliance import Appliance
from appliance.sites import SiteError
from web.auth import (
    Guard,
    dashboard_site_member,
    dashboard_site_viewer,
    principal_of,
    requires_dashboard_user,
    site_of,
)
from web.charts import compact_number, sparkline
from web.dashboard_admin import AdminController
from web.dashboard_views import SiteView, parse_site_view
from web.dependencies import ApplianceDep, FormDep
from web.onboarding import has_events, tracking_snippet
from web.pages import nav as _nav
from web.pages import page as _page
from web.rendering import RenderedTemplate
from web.views import CHART_METRICS, COMPARISONS, PERIODS, TABS
from web.widgets import (
    DIMENSION_LABELS,
    LIST_WIDGETS,
    TAB_LABELS,
    WIDGETS,
    country_label,
    empty_label,
    flag,
    money,
    rows_with_bars,
)

STATIC = Path(__file__).parent / "static"
JS_COOKIE = "footfall_js"  # set by dashboard.js: this browser runs htmx, widgets may load lazily
DETAILS_PAGE_SIZE = 50
DETAILS_LIMIT = 1000
DETAIL_COLUMNS = {
    "default": (("visitors", "Visitors"), ("pageviews", "Page views"), ("visits", "Visits"),
                ("bounce_rate", "Bounce rate"), ("visit_duration", "Visit duration")),
    "entry": (("visits", "Visits"), ("bounce_rate", "Bounce rate"), ("visit_duration", "Visit duration")),
    "exit": (("exits", "Exits"), ("pageviews", "Page views"), ("exit_rate", "Exit rate")),
    "event": (("visitors", "Visitors"), ("events", "Events")),
}

dashboard_site_admin = Guard(Permission.MANAGE_SITES, site=True, dashboard=True)
dashboard_sites_admin = Guard(Permission.MANAGE_SITES, dashboard=True)

class StaticFileSystem(BaseLocalFileSystem):
    """The local file system, where a path no file can have (a NUL byte: ``%00`` in the URL)
    is simply not found, instead of a ``ValueError`` from ``stat`` (a 500)."""

    async def info(self, path, **kwargs):
        if "\x00" in str(path):
            raise FileNotFoundError(path)
        return await super().info(path, **kwargs)


static_files = create_static_files_router(
    path="/static", directories=[STATIC], include_in_schema=False, name="static",
    cache_control=None, file_system=StaticFileSystem(),
)


def _lazy(request: Request) -> bool:
    """Load widgets with htmx (the browser runs it) or render them inline (no JavaScript)."""
    return request.cookies.get(JS_COOKIE) == "1" or request.headers.get("hx-request") == "true"


def _widget_context(appliance: Appliance, view: SiteView, name: str) -> dict[str, Any]:
    if name == "conversions":
        return goal_conversions(appliance, view)
    return WIDGETS[name](appliance.stats, view)


def goal_conversions(appliance: Appliance, view: SiteView) -> dict[str, Any]:
    """The conversions widget: one row per defined goal (completions, converters, rate,
    revenue per currency); a site without goals shows its conversion types instead."""
    query = view.query()
    report = appliance.stats.conversions(query)
    goals = {goal.id: goal for goal in appliance.goals.list(view.site.id)}
    if not goals:
        rows = [{**row, "label": row["name"], "filter": ("event", row["name"])} for row in report["goals"]]
        return {"report": report, "rows": rows_with_bars(rows, "visitors"), "goals": False}
    rows = []
    for row in appliance.goal_reports.report(query):
        goal = goals[row["goal_id"]]
        if goal.kind == "page":
            target = ("page", goal.page) if "*" not in goal.page else None
        else:
            target = ("event", goal.event)
        revenue = {currency: money_row["total_minor"] for currency, money_row in row["revenue"].items()}
        rows.append({**row, "label": row["name"], "filter": target, "revenue_minor": revenue})
    rows.sort(key=lambda row: -row["visitors"])
    return {"report": report, "rows": rows_with_bars(rows, "visitors"), "goals": True}


def readable_sites(request: Request, appliance: Appliance) -> list:
    principal = principal_of(request)
    sites = appliance.sites.all()
    if principal.user is not None:
        return [site for site in sites if principal.user.can_read_site(site.id)]
    return [site for site in sites if site.id == principal.site_id]


class SitesController(Controller):
    """The site list and each site's dashboard, widgets and details."""

    path = "/sites"
    include_in_schema = False

    @get("/", guards=[requires_dashboard_user], summary="Sites with a sparkline of the last 30 days", sync_to_thread=True)
    def site_list(self, request: Request, appliance: ApplianceDep) -> Template:
        return _site_list_page(request, appliance)

    @post("/", guards=[dashboard_sites_admin], summary="Add a site (admin)", sync_to_thread=True)
    def add_site(self, request: Request, appliance: ApplianceDep, form: FormDep) -> Response:
        form = form
        sites = appliance.sites
        values = {key: str(form.get(key, "")).strip() for key in ("domain", "name", "timezone")}
        try:
            site = sites.add(values["domain"], name=values["name"], timezone=values["timezone"] or None)
        except SiteError as error:
            return _site_list_page(request, appliance, error=error.message, form=values, status=422)
        appliance.audit.record(principal_of(request).name, "site.create", site.domain,
                                         timezone=site.timezone, via="dashboard")
        return Redirect(f"/sites/{site.domain}/settings?created=1", status_code=303)

    @get("/{domain:str}", guards=[dashboard_site_viewer],
         summary="A site's dashboard (the onboarding page, or \"no data yet\" for visitors, until its first event)",
         sync_to_thread=True)
    def site_dashboard(self, request: Request, appliance: ApplianceDep, domain: FromPath[str]) -> Template:
        site = site_of(request)
        if not has_events(appliance, site):
            if _nav(request)["visiting"]:  # a shared link or a public dashboard: no snippet
                return _page(request, "empty.html", site=site)
            return _onboarding_page(request, appliance, has_data=False)
        view = parse_site_view(request, appliance)
        appliance.stats.prefetch(view.query())  # a filtered view's reports: one walk, started now
        if view.comparing:
            appliance.stats.prefetch(view.query().compared(view.compare))
        lazy = _lazy(request)
        widgets = {} if lazy else {name: _widget_context(appliance, view, name) for name in WIDGETS}
        segments = appliance.segments.list(site.id, _viewer_id(request))
        imported = appliance.stats.imported_meta(view.query(), "aggregate")
        return _page(request, "site.html", site=site, view=view, lazy=lazy, widgets=widgets, segments=segments,
                     imported=imported, **_view_options())

    @get("/{domain:str}/onboarding", guards=[dashboard_site_member],
         summary="Set up tracking: the snippet and a live check for the first event (signed-in users)",
         sync_to_thread=True)
    def onboarding(self, request: Request, appliance: ApplianceDep, domain: FromPath[str]) -> Template:
        return _onboarding_page(request, appliance, has_data=has_events(appliance, site_of(request)))

    @get("/{domain:str}/widgets/{name:str}", guards=[dashboard_site_viewer], summary="One dashboard widget (htmx partial)", sync_to_thread=True)
    def widget(self, request: Request, appliance: ApplianceDep, domain: FromPath[str], name: FromPath[str]) -> Template:
        if name not in WIDGETS:
            raise NotFoundException(f"no widget {name!r}")
        view = parse_site_view(request, appliance)
        context = {**_nav(request), "view": view, "w": _widget_context(appliance, view, name), **_view_options()}
        return RenderedTemplate(request, f"dashboard/_widget_{name}.html", context)

    @get("/{domain:str}/details/{dimension:str}", guards=[dashboard_site_viewer], summary="A full, paginated, sortable breakdown", sync_to_thread=True)
    def details(self, request: Request, appliance: ApplianceDep, domain: FromPath[str], dimension: FromPath[str]) -> Template:
        if dimension not in DIMENSION_LABELS:
            raise NotFoundException(f"no breakdown {dimension!r}")
        site = site_of(request)
        view = parse_site_view(request, appliance)
        stats = appliance.stats
        query = view.query()
        if dimension == "entry":
            rows = [{**r, "label": r["value"], "filter": ("entry_page", r["value"])} for r in stats.entry_pages(query, DETAILS_LIMIT)]
            columns = DETAIL_COLUMNS["entry"]
        elif dimension == "exit":
            rows = [{**r, "label": r["value"], "filter": ("exit_page", r["value"])} for r in stats.exit_pages(query, DETAILS_LIMIT)]
            columns = DETAIL_COLUMNS["exit"]
        elif dimension == "event":  # custom events: counted apart from the page-view dimensions
            rows = [{**r, "value": r["name"], "label": r["name"], "filter": ("event", r["name"])}
                    for r in stats.custom_events(query)[:DETAILS_LIMIT]]
            columns = DETAIL_COLUMNS["event"]
        else:
            result = stats.breakdown(query, dimension, DETAILS_LIMIT)
            rows = [{**r, "label": empty_label(dimension, r["value"]), "filter": (dimension, r["value"])}
                    for r in result["results"]]
            columns = DETAIL_COLUMNS["default"]
        keys = [key for key, _ in columns]
        sort = request.query_params.get("sort") or keys[0]
        if sort not in (*keys, "label"):
            sort = keys[0]
        order = "asc" if request.query_params.get("order") == "asc" else "desc"
        rows.sort(key=lambda row: (row.get(sort) or 0) if sort != "label" else row["label"].lower(),
                  reverse=order == "desc")
        try:
            page = max(1, int(request.query_params.get("page", "1")))
        except ValueError:
            page = 1
        pages = max(1, -(-len(rows) // DETAILS_PAGE_SIZE))
        page = min(page, pages)
        shown = rows[(page - 1) * DETAILS_PAGE_SIZE : page * DETAILS_PAGE_SIZE]
        if dimension == "country":
            for row in shown:
                row["label"] = country_label(row["value"])
        base = view.url(f"/details/{dimension}")
        joiner = "&" if "?" in base else "?"
        return _page(
            request, "details.html", site=site, view=view, dimension=dimension,
            dimension_label=DIMENSION_LABELS[dimension], rows=shown, columns=columns, sort=sort, order=order,
            page=page, pages=pages, total=len(rows), base=base, joiner=joiner, **_view_options(),
        )

    @get("/{domain:str}/settings", guards=[dashboard_site_member],
         summary="A site's settings and tracking snippet (signed-in users; no shared link or public visitor)",
         sync_to_thread=True)
    def settings_page(self, request: Request, appliance: ApplianceDep, domain: FromPath[str]) -> Template:
        return _settings_page(request, appliance)

    @post("/{domain:str}/settings", guards=[dashboard_site_admin], summary="Change a site's settings (admin)", sync_to_thread=True)
    def change_settings(self, request: Request, appliance: ApplianceDep, domain: FromPath[str], form: FormDep) -> Response:
        site = site_of(request)
        form = form
        hostnames = [h.strip() for h in str(form.get("allowed_hostnames", "")).replace(",", "\n").splitlines() if h.strip()]
        try:
            retention = int(str(form.get("retention_days", site.retention_days)))
            changed = appliance.sites.change(
                site.domain, name=str(form.get("name", site.name)), timezone=str(form.get("timezone", site.timezone)),
                retention_days=retention, allowed_hostnames=hostnames, public=form.get("public") == "on",
                umami_website_id=str(form.get("umami_website_id", site.umami_website_id)).strip(),
                plausible_site_id=str(form.get("plausible_site_id", site.plausible_site_id)).strip(),
                # a form without the privacy boxes (an older page) leaves the signals as they are
                **({"honour_gpc": form.get("honour_gpc") == "on", "honour_dnt": form.get("honour_dnt") == "on"}
                   if form.get("privacy_signals") else {}),
            )
        except (SiteError, ValueError) as error:
            return _settings_page(request, appliance, error=getattr(error, "message", str(error)), status=422)
        appliance.audit.record(principal_of(request).name, "site.update", changed.domain, via="dashboard")
        return Redirect(f"/sites/{changed.domain}/settings?saved=1", status_code=303)

    @post("/{domain:str}/delete", guards=[dashboard_site_admin],
          summary="Delete a site with all its data, once its domain is typed to confirm (admin)", sync_to_thread=True)
    def delete_site(self, request: Request, appliance: ApplianceDep, domain: FromPath[str], form: FormDep) -> Response:
        site = site_of(request)
        form = form
        if str(form.get("confirm", "")).strip().lower() != site.domain:
            return _settings_page(request, appliance, delete_error=f"Type {site.domain} to confirm the deletion.", status=422)
        appliance.delete_site(site.domain)
        appliance.audit.record(principal_of(request).name, "site.delete", site.domain, site_id=site.id, via="dashboard")
        return Redirect(f"/sites?deleted={site.domain}", status_code=303)


    @post("/{domain:str}/shared-link", guards=[dashboard_site_admin],
          summary="Create or replace the site's shared link, shown once (admin)", sync_to_thread=True)
    def create_shared_link(self, request: Request, appliance: ApplianceDep, domain: FromPath[str]) -> Template:
        site = site_of(request)
        token = appliance.sites.create_share_token(site)
        appliance.audit.record(principal_of(request).name, "site.shared_link.create", site.domain,
                                         via="dashboard")
        return _settings_page(request, appliance, shared_url=f"{_origin(request, appliance)}/sites/{site.domain}?auth={token}")

    @post("/{domain:str}/shared-link/delete", guards=[dashboard_site_admin], summary="Disable the site's shared link (admin)", sync_to_thread=True)
    def delete_shared_link(self, request: Request, appliance: ApplianceDep, domain: FromPath[str]) -> Response:
        site = site_of(request)
        appliance.sites.delete_share_token(site)
        appliance.audit.record(principal_of(request).name, "site.shared_link.delete", site.domain,
                                         via="dashboard")
        return Redirect(f"/sites/{site.domain}/settings?saved=1", status_code=303)


def _origin(request: Request, appliance: Appliance) -> str:
    public_url = appliance.settings.server.public_url.rstrip("/")
    return public_url or f"{request.url.scheme}://{request.url.netloc}"


def _onboarding_page(request: Request, appliance: Appliance, *, has_data: bool) -> Template:
    site = site_of(request)
    return _page(request, "onboarding.html", site=site, has_data=has_data,
                 snippet=tracking_snippet(_origin(request, appliance), site.domain, site))


def _settings_page(request: Request, appliance: Appliance, error: str = "", delete_error: str = "", shared_url: str = "",
                   status: int = 200) -> Template:
    site = site_of(request)
    snippet = tracking_snippet(_origin(request, appliance), site.domain, site)
    return _page(request, "settings.html", site=site, snippet=snippet, error=error, delete_error=delete_error,
                 status=status, saved=request.query_params.get("saved") == "1",
                 created=request.query_params.get("created") == "1", shared_url=shared_url,
                 has_shared_link=appliance.sites.has_share_token(site))


def _site_list_page(request: Request, appliance: Appliance, error: str = "", form: dict[str, str] | None = None, status: int = 200) -> Template:
    stats = appliance.stats
    rows = []
    for site in readable_sites(request, appliance):
        today = local_today(site.timezone)
        query = Query(site=site, date_from=today.fromordinal(today.toordinal() - 29), date_to=today)
        series = stats.timeseries(query)
        values = [float(row["visitors"]) for row in series]
        visitors, current = stats.aggregate(query)["visitors"], stats.current_visitors(site)
        rows.append({
            "site": site,
            "visitors": visitors,
            "sparkline": sparkline(values, width=160, height=36,
                                   label=f"Visitors per day on {site.domain}, last 30 days"),
            "current": current,
            "empty": not visitors and not current and not has_events(appliance, site),  # set it up first
        })
    return _page(request, "sites.html", sites=rows, error=error, form=form or {}, status=status,
                 timezones=_timezones(), deleted=request.query_params.get("deleted", ""),
                 default_timezone=appliance.settings.sites.timezone)


@functools.cache
def _timezones() -> list[str]:
    return sorted(zoneinfo.available_timezones())


def _viewer_id(request: Request) -> int:
    principal = principal_of(request)
    return principal.user.id if principal is not None and principal.user is not None else -1


def _view_options() -> dict[str, Any]:
    return {"periods": PERIODS, "comparisons": COMPARISONS, "chart_metrics": CHART_METRICS,
            "tabs": TABS, "tab_labels": TAB_LABELS, "list_widgets": LIST_WIDGETS,
            "dimension_labels": DIMENSION_LABELS}


# -- template helpers ---------------------------------------------------------------------
def duration(seconds: float | int | None) -> str:
    seconds = int(seconds or 0)
    if seconds < 60:
        return f"{seconds}s"
    minutes, seconds = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes}m {seconds:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h {minutes:02d}m"


def metric_value(value: Any, key: str) -> str:
    if key in ("bounce_rate", "exit_rate", "conversion_rate"):
        return f"{float(value or 0):.0f}%" if float(value or 0) >= 10 else f"{float(value or 0):.1f}%"
    if key == "visit_duration":
        return duration(value)
    if key == "views_per_visit":
        return f"{float(value or 0):.2f}"
    return compact_number(float(value or 0))


def change_text(change: float | None) -> str:
    if change is None:
        return "—"
    arrow = "↑" if change > 0 else "↓" if change < 0 else ""
    return f"{arrow}{abs(change):.0f}%"


def register_dashboard_helpers(engine: Any) -> None:
    """Filters for the dashboard templates: numbers, durations, money, changes."""
    environment = engine.engine
    environment.filters["number"] = lambda value: compact_number(float(value or 0))
    environment.filters["metric"] = metric_value
    environment.filters["duration"] = duration
    environment.filters["change"] = change_text
    environment.filters["money"] = money
    environment.filters["flag"] = flag
    environment.globals["icon_external"] = Markup("↗")


DASHBOARD_CONTROLLERS = [SitesController, AdminController, static_files]

