"""The dependencies every handler may take, registered once on the app (:mod:`web.app`).

``appliance``: the open :class:`~appliance.runtime.appliance.Appliance` of the app.
``stats_query``: the :class:`~appliance.query.spec.Query` a stats or report route answers, built
from the site its guard resolved and the ``period`` and ``date`` (or ``start_date`` and
``end_date``) and ``filters`` query parameters (documented in the OpenAPI schema of every route
that takes it). Its interval is a day unless the route takes ``interval`` from the query string
(:data:`INTERVAL_PARAMETER`). A query parameter the route does not take is refused (400, naming
it), not ignored: a client that sent Plausible's ``period=7d`` here was answered the default
30 days before ``period`` was one of ours.
``form``: the request's parsed form, for the sync dashboard handlers.

Handlers and providers name what they take explicitly, as Litestar 3 will require: a dependency
with :data:`ApplianceDep`, :data:`QueryDep`, :data:`FormDep` or :data:`IntervalDep` (injected by
the parameter's name, which must stay the one registered here), a path parameter with
``FromPath[...]`` and a JSON body with ``JSONBody[...]`` (:mod:`litestar.params`).
"""

from __future__ import annotations

from datetime import date, timedelta
from typing import Annotated, TypeAlias

import anyio
from litestar import Request
from litestar.datastructures import FormMultiDict
from litestar.di import NamedDependency, Provide
from litestar.params import QueryParameter

from appliance.filters import Filter, FilterError, parse_filters
from appliance.periods import local_today
from appliance.query.plausible import parse_day
from appliance.query.spec import Query, QueryError, check_day
from appliance.reports.periods import PERIODS, resolve_period
from appliance.runtime.appliance import Appliance
from web.auth import principal_of, request_form, site_of

FILTERS_DESCRIPTION = (
    'Filters, as JSON ``[["is", "page", ["/a", "/b"]], ["contains", "source", ["goo"]]]`` or the short form '
    "``page==/a|/b;source~goo;country!=DE``. Operators: is, is_not, contains, does_not_contain, matches, "
    "does_not_match (``*`` wildcards). Dimensions: page, entry_page, exit_page, hostname, source, channel, "
    "referrer, utm_source, utm_medium, utm_campaign, utm_term, utm_content, country, region, browser, "
    "browser_version, os, os_version, device, screen, language, event, prop:KEY, goal, segment (an id). "
    "Values in one filter are OR-ed, filters AND-ed."
)
SiteParam = Annotated[str | None, QueryParameter(name="site", description="The site's domain")]
StartParam = Annotated[
    date | None,
    QueryParameter(name="start_date", description="First day (inclusive, site time zone); default 29 days before end_date"),
]
EndParam = Annotated[date | None, QueryParameter(name="end_date", description="Last day (inclusive); default today")]
PeriodParam = Annotated[str | None, QueryParameter(
    name="period", description=f"{', '.join(PERIODS)} (the dashboard's periods, up to today in the site's time zone); "
    "custom takes start_date and end_date (or date); default: start_date..end_date")]
DateParam = Annotated[str | None, QueryParameter(
    name="date", description="With period: the day it is relative to, YYYY-MM-DD (default today), as Plausible's "
    "date; with period=custom, YYYY-MM-DD,YYYY-MM-DD instead of start_date and end_date")]
FiltersParam = Annotated[str | None, QueryParameter(name="filters", description=FILTERS_DESCRIPTION)]
IntervalParam = Annotated[str, QueryParameter(name="interval", description="hour, day, week or month")]

# The dependencies, marked as such (a parameter named ``appliance``, ``stats_query``, ``form`` or
# ``interval``): Litestar 2 still infers them from the name alone, with a deprecation warning.
ApplianceDep: TypeAlias = NamedDependency[Appliance]
QueryDep: TypeAlias = NamedDependency[Query]
FormDep: TypeAlias = NamedDependency[FormMultiDict]
IntervalDep: TypeAlias = NamedDependency[str]


def provide_appliance(request: Request) -> Appliance:
    """The ``appliance`` dependency (set on the app's state once it is open)."""
    return request.app.state.appliance


def caller_id(request: Request) -> int:
    """The caller's user id; -1 for shared links and public dashboards (no private segments)."""
    principal = principal_of(request)
    user = principal.user if principal is not None else None
    return user.id if user is not None else -1


def query_filters(appliance: Appliance, request: Request, text: str | None) -> list[Filter]:
    """The ``filters`` parameter, parsed; a named segment must be visible to the caller."""
    filters = parsed_filters(text)
    check_segments(appliance, request, filters)
    return filters


def parsed_filters(text: str | None) -> list[Filter]:
    """The ``filters`` parameter, parsed (no storage read: safe on the event loop)."""
    try:
        return parse_filters(text)
    except FilterError as error:
        raise QueryError("filters", error.message, error.status) from None


def check_segments(appliance: Appliance, request: Request, filters: list[Filter]) -> None:
    """Every segment a filter names exists and is visible to the caller (reads its record)."""
    segments = appliance.segments
    site = site_of(request)
    for condition in filters:
        if condition.dimension == "segment":
            for value in condition.values:
                if not value.isdigit():
                    raise QueryError("filters", f"segment takes a segment id, not {value!r}")
                segments.get(site.id, int(value), caller_id(request))


#: taken by every route besides its own: a shared link's token, Plausible's name for the site
#: and a client's cache-buster (``_``, as jQuery's ``cache: false`` adds; its value is ignored)
ANY_ROUTE_PARAMETERS = frozenset({"auth", "site_id", "_"})
PLAUSIBLE_ONLY = frozenset({"metrics", "with_imported"})  # web/api_plausible.py takes them
_route_parameters: dict[object, frozenset[str]] = {}  # by route handler (a few dozen)


def check_parameters(request: Request) -> None:
    """Refuse (400) a query parameter the route does not take (its own and its dependencies',
    as Litestar resolves them; each route's names are read once)."""
    handler = request.route_handler
    known = _route_parameters.get(handler)
    if known is None:
        names = {param.field_alias for param in handler.create_kwargs_model({}).expected_query_params}
        known = _route_parameters[handler] = frozenset(names | ANY_ROUTE_PARAMETERS)
    unknown = sorted(set(request.query_params) - known)
    if unknown:
        takes = ", ".join(sorted(known - ANY_ROUTE_PARAMETERS))
        hint = "; Plausible's Stats API is /api/plausible/v1/stats/..." if PLAUSIBLE_ONLY & set(unknown) else ""
        raise QueryError(unknown[0], f"not a parameter of {request.url.path}; it takes {takes}{hint}", 400)


def day_interval() -> str:
    """The ``interval`` of a route that does not take one from the query string."""
    return "day"


async def provide_query(
    request: Request,
    appliance: ApplianceDep,
    site: SiteParam = None,  # documentation only: the route's guard resolved the site
    start_date: StartParam = None,
    end_date: EndParam = None,
    period: PeriodParam = None,
    date_text: DateParam = None,
    filters: FiltersParam = None,
) -> Query:
    """The ``stats_query`` dependency: the guard-resolved site over ``start_date``..``end_date``
    (default: the 30 days to today in the site's time zone) or ``period`` (:func:`_period`), with
    the parsed ``filters``, by day (a route that takes ``?interval=`` provides
    :func:`provide_query_by_interval`).

    Built on the event loop: the dates and the filters are parsed from the query string, no
    storage read. Only a filter naming a segment reads the segment's record, and that check
    runs in a worker thread. (Built wholly in a worker thread, every stats request paid a
    second thread hand-off before its handler's own; issue 17.)"""
    return await _query(request, appliance, "day", period, date_text, start_date, end_date, filters)


async def provide_query_by_interval(
    request: Request,
    appliance: ApplianceDep,
    site: SiteParam = None,  # documentation only: the route's guard resolved the site
    start_date: StartParam = None,
    end_date: EndParam = None,
    period: PeriodParam = None,
    date_text: DateParam = None,
    filters: FiltersParam = None,
    interval_value: IntervalParam = "day",
) -> Query:
    """``stats_query`` with its interval from the ``interval`` query parameter."""
    return await _query(request, appliance, interval_value, period, date_text, start_date, end_date, filters)


async def _query(
    request: Request, appliance: Appliance, interval: str, period: str | None, date_text: str | None,
    start_date: date | None, end_date: date | None, filters: str | None,
) -> Query:
    check_parameters(request)
    site_record = site_of(request)
    start, end = _period(period, date_text, start_date, end_date, local_today(site_record.timezone))
    conditions = parsed_filters(filters)
    if any(condition.dimension == "segment" for condition in conditions):
        await anyio.to_thread.run_sync(check_segments, appliance, request, conditions)
    return Query(site=site_record, date_from=start, date_to=end, interval=interval, filters=conditions)


def _period(period: str | None, date_text: str | None, start_date: date | None, end_date: date | None,
            today: date) -> tuple[date, date]:
    """The inclusive dates of ``start_date``..``end_date`` (default the 30 days to today) or of
    ``period`` relative to ``date`` (default today; with ``custom``, ``date`` may hold both days)."""
    if period is None:
        if date_text is not None:
            raise QueryError("date", "only with period (the day the period is relative to)", 400)
        end = check_day("end_date", end_date or today)
        return start_date or (end - timedelta(days=29)), end
    if period != "custom" and (start_date or end_date):
        raise QueryError("start_date" if start_date else "end_date", f"only with period=custom, not period={period}", 400)
    if period == "custom" and date_text and not (start_date or end_date):
        first, _, last = date_text.partition(",")
        start_date, end_date = parse_day(first), parse_day(last)
    elif date_text:
        today = check_day("date", parse_day(date_text))
    return resolve_period(period, today, start_date, end_date)


DEPENDENCIES = {
    "appliance": Provide(provide_appliance, sync_to_thread=False),
    "interval": Provide(day_interval, sync_to_thread=False),
    "stats_query": Provide(provide_query),  # ``query`` is Litestar's own kwarg; async, see above
    "form": Provide(request_form),  # forms for the sync dashboard handlers, read on the loop
}
# ``dependencies=INTERVAL_PARAMETER`` on a route: its query's interval comes from ``?interval=``.
# (The query depends on the appliance alone, so a handler's dependencies resolve one after
# the other: two independent ones, e.g. the appliance and an interval, are resolved in an
# anyio task group on every request, ~0.06 ms; issue 17.)
INTERVAL_PARAMETER = {"stats_query": Provide(provide_query_by_interval)}
