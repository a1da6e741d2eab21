"""Plausible's Stats API v1 under ``/api/plausible/v1/stats/{aggregate,timeseries,breakdown}``
and ``/realtime/visitors``.

Footfall's own stats routes (``/api/v1/stats/...``) already use those names with another
vocabulary (``site``, ``start_date``/``end_date``, ``{"status", "data"}`` answers), so tools
built for Plausible's API (Grafana data sources, scripts) point at this prefix instead:
``site_id``, ``period``/``date``, ``metrics``, ``property``, ``filters``, ``compare``,
``interval``, ``limit``, ``page``, ``with_imported``, answered ``{"results": ...}``, with an API key as the
``Authorization: Bearer`` token (the same guard as every stats route; ``site_id`` may be the
site's domain or its Plausible site id). The translation is :mod:`appliance.query.plausible`.
"""

from __future__ import annotations

from typing import Annotated, Any

from litestar import Controller, Request, get
from litestar.di import Provide
from litestar.params import QueryParameter

from appliance.query.plausible import PlausibleStats
from web.auth import can_view_site, site_of
from web.dependencies import ApplianceDep, IntervalDep

SiteIdParam = Annotated[str, QueryParameter(name="site_id", description="The site's domain (or its Plausible site id)")]
PeriodParam = Annotated[str | None, QueryParameter(name="period", description="day, 7d, 30d (default), month, 6mo, 12mo or custom")]
DateParam = Annotated[str | None, QueryParameter(name="date", description="YYYY-MM-DD (the period's last day), or YYYY-MM-DD,YYYY-MM-DD for custom")]
MetricsParam = Annotated[str | None, QueryParameter(name="metrics", description="Comma-separated; default visitors (README: Plausible-compatible Stats API)")]
FiltersParam = Annotated[str | None, QueryParameter(name="filters", description="e.g. visit:browser==Firefox;event:page==/blog*")]
WithImportedParam = Annotated[str | None, QueryParameter(
    name="with_imported", description="true adds imported data where the query allows it; false (default) leaves it out")]


def plausible_interval(
    interval_value: Annotated[str | None, QueryParameter(name="interval", description="date or month")] = None,
) -> str:
    """Plausible's ``interval`` ("" when absent: hours for ``period=day``, days otherwise)."""
    return interval_value or ""


class PlausibleStatsController(Controller):
    path = "/api/plausible/v1/stats"
    tags = ["plausible"]
    guards = [can_view_site]

    @get("/aggregate", summary="Plausible Stats API v1: totals for a period", sync_to_thread=True)
    def aggregate(
        self, request: Request, appliance: ApplianceDep, site_id: SiteIdParam, period: PeriodParam = None,
        date: DateParam = None, metrics: MetricsParam = None, filters: FiltersParam = None,
        compare: Annotated[str | None, QueryParameter(name="compare", description="previous_period")] = None,
        with_imported: WithImportedParam = None,
    ) -> dict[str, Any]:
        plausible = PlausibleStats(appliance.stats)
        query = plausible.query(site_of(request), period, date, filters, imported=with_imported)
        return plausible.aggregate(query, metrics, compare)

    @get("/timeseries", summary="Plausible Stats API v1: metrics per day, hour or month", sync_to_thread=True,
         dependencies={"interval": Provide(plausible_interval, sync_to_thread=False)})
    def timeseries(
        self, request: Request, appliance: ApplianceDep, site_id: SiteIdParam, interval: IntervalDep,
        period: PeriodParam = None, date: DateParam = None, metrics: MetricsParam = None, filters: FiltersParam = None,
        with_imported: WithImportedParam = None,
    ) -> dict[str, Any]:
        return PlausibleStats(appliance.stats).timeseries(site_of(request), period, date, filters, metrics, interval or None,
                                                          with_imported)

    @get("/breakdown", summary="Plausible Stats API v1: top values of one property", sync_to_thread=True)
    def breakdown(
        self, request: Request, appliance: ApplianceDep, site_id: SiteIdParam, period: PeriodParam = None,
        date: DateParam = None, metrics: MetricsParam = None, filters: FiltersParam = None,
        property: Annotated[str | None, QueryParameter(name="property", description="e.g. visit:source, event:page")] = None,  # noqa: A002
        limit: Annotated[int, QueryParameter(name="limit", ge=1, le=1000)] = 100,
        page: Annotated[int, QueryParameter(name="page", ge=1, le=100)] = 1,
        with_imported: WithImportedParam = None,
    ) -> dict[str, Any]:
        plausible = PlausibleStats(appliance.stats, appliance.goal_reports)
        query = plausible.query(site_of(request), period, date, filters, imported=with_imported)
        return plausible.breakdown(query, property, metrics, limit, page)

    @get("/realtime/visitors", summary="Plausible Stats API v1: visitors in the last 5 minutes (a number)", sync_to_thread=True)
    def realtime_visitors(self, request: Request, appliance: ApplianceDep, site_id: SiteIdParam) -> int:
        return appliance.stats.current_visitors(site_of(request))


class PlausibleBaseUrlController(PlausibleStatsController):
    """The same routes where a client that takes Plausible's base URL and appends
    ``/api/v1/stats/...`` finds them: base URL ``https://HOST/plausible``."""

    path = "/plausible/api/v1/stats"


PLAUSIBLE_CONTROLLERS = [PlausibleStatsController, PlausibleBaseUrlController]
