"""The raw event export route: ``GET /api/v1/sites/{domain}/events/export`` (analysts, admins).

The answer streams: the handler (in a worker thread) checks the parameters and returns a
:class:`~litestar.response.Stream` around :meth:`RawEvents.stream
<appliance.exports.raw_events.RawEvents.stream>`, a sync generator that Litestar advances in
worker threads, one chunk of a few hundred lines at a time; the period is never held in
memory and the event loop never waits on LMDB. Every line carries its ``id``: pass the last
one received as ``cursor`` to resume.
"""

from __future__ import annotations

from datetime import date, timedelta
from typing import Annotated

from litestar import Controller, Request, get
from litestar.params import FromPath, QueryParameter
from litestar.response import Stream

from appliance.exports.raw_events import FORMATS, RawEvents
from appliance.periods import local_today
from web.auth import can_export_events, site_of
from web.dependencies import ApplianceDep, EndParam, FiltersParam, StartParam, query_filters

FormatParam = Annotated[str, QueryParameter(name="format", description="ndjson (default) or csv")]
CursorParam = Annotated[
    str | None,
    QueryParameter(name="cursor", description="Resume after this event: the `id` of the last line received"),
]
ExportLimitParam = Annotated[
    int | None, QueryParameter(name="limit", ge=1, le=100_000_000, description="At most this many events")
]


class RawEventsController(Controller):
    path = "/api/v1/sites"
    tags = ["exports"]

    @get(
        "/{domain:str}/events/export",
        guards=[can_export_events],
        summary="The site's raw events of a period, streamed as NDJSON or CSV (analysts, admins)",
        description=(
            "One event per line in Footfall's interchange format, version 1 (README, \"Raw event export\"): "
            "event time in ms UTC, kind, name, page, referrer, UTM tags, source and channel, device, browser, "
            "OS, country, region, screen, language, properties, revenue, engaged time, scroll depth and the "
            "pseudonymous visitor id (a daily-salted hash; never an IP address, user agent or user id). "
            "Streamed with flat memory; `cursor` resumes after a line's `id`."
        ),
        sync_to_thread=True,
    )
    def export_events(
        self,
        request: Request,
        appliance: ApplianceDep,
        domain: FromPath[str],
        start_date: StartParam = None,
        end_date: EndParam = None,
        filters: FiltersParam = None,
        format: FormatParam = "ndjson",  # noqa: A002 - the public parameter's name
        cursor: CursorParam = None,
        limit: ExportLimitParam = None,
    ) -> Stream:
        site = site_of(request)
        end = end_date or local_today(site.timezone)
        start: date = start_date or (end - timedelta(days=29))
        chunks = RawEvents(appliance.stats.scans, appliance.strings).stream(
            site, start, end, filters=query_filters(appliance, request, filters), fmt=format, cursor=cursor,
            limit=limit,
        )
        extension = "csv" if format == "csv" else "ndjson"
        name = f"{site.domain}-events-{start.isoformat()}-{end.isoformat()}.{extension}"
        return Stream(
            chunks,
            media_type=FORMATS[format],
            headers={"content-disposition": f'attachment; filename="{name}"', "cache-control": "no-store"},
        )


RAW_EVENT_CONTROLLERS = [RawEventsController]
