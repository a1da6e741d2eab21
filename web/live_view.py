"""The live view: current visitors, the last 30 minutes, and a stream of the latest events.

Everything comes from the in-memory ring buffer (:class:`appliance.events.live.LiveBuffer`). The page
renders the current state, then htmx's SSE extension keeps it fresh from
``/sites/{domain}/live/stream``: the writer thread hands each committed batch to the
subscriber queues right after the commit, and the stream sends the new rows (``events``)
at once, and the visitor count and the chart (``visitors``, ``chart``) at most once a
second, plus every ten seconds so the 30-minute window keeps moving while nobody visits.

Rows are rendered from :class:`appliance.live.LiveEvent`, the shape ``GET /api/v1/live``
answers, built for the caller: custom properties only for analysts and admins, and never a
session id or visitor id for anyone.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

from litestar import Controller, Request, get
from litestar.params import FromPath
from litestar.response import ServerSentEvent, ServerSentEventMessage, Template

from appliance.events.live import LiveEvent, live_event
from appliance.models import Event, EventKind
from appliance.money import format_minor
from appliance.periods import zone
from appliance.runtime.appliance import Appliance
from web.auth import dashboard_site_viewer, sees_event_details, site_of
from web.charts import Point, line_chart
from web.dependencies import ApplianceDep
from web.pages import nav as _nav
from web.rendering import RenderedTemplate
from web.widgets import country_label

WINDOW_MINUTES = 30
STREAM_ROWS = 40
REFRESH_SECONDS = 10.0
THROTTLE_SECONDS = 1.0
KIND_LABELS = {"pageview": "Page view", "custom": "Event", "conversion": "Conversion"}


def event_row(event: LiveEvent, timezone: str) -> dict[str, Any]:
    """One row of the live table, from what the caller may see of the event."""
    moment = datetime.fromtimestamp(event.timestamp, UTC).astimezone(zone(timezone))
    return {
        "id": event.event_id.removeprefix("evt_"),
        "time": f"{moment:%H:%M:%S}",
        "kind": KIND_LABELS.get(event.kind, "Event"),
        "kind_class": event.kind,
        "name": "" if event.kind == "pageview" else event.name,
        "path": event.path,
        "source": event.source or "Direct",
        "country": event.country,
        "country_name": country_label(event.country) if event.country else "",
        "device": event.device,
        "browser": event.browser,
        "revenue": format_minor(event.revenue, event.currency) if event.revenue else "",
        "props": sorted((event.props or {}).items()),
    }


def rows_for(request: Request, items: list[tuple[str, Event]], timezone: str) -> list[dict[str, Any]]:
    """The visible events of ``items`` as rows, with the details the caller may see."""
    details = sees_event_details(request)
    return [event_row(live_event(i, e, details=details), timezone) for i, e in items if visible(e)]


def visible(event: Event) -> bool:
    return event.kind is not EventKind.ENGAGEMENT


def minute_chart(items: list[tuple[str, Event]], timezone: str, now: float | None = None):
    """Page views per minute over the last 30 minutes, as the shared line chart."""
    now = time.time() if now is None else now
    current = int(now // 60)
    counts = [0] * WINDOW_MINUTES
    for _, event in items:
        if event.kind is EventKind.PAGEVIEW:
            age = current - int(event.timestamp // 60)
            if 0 <= age < WINDOW_MINUTES:
                counts[WINDOW_MINUTES - 1 - age] += 1
    tz = zone(timezone)
    points = []
    for index, count in enumerate(counts):
        minute = datetime.fromtimestamp((current - (WINDOW_MINUTES - 1 - index)) * 60, UTC).astimezone(tz)
        points.append(Point(label=f"{minute:%H:%M}", tick=f"{minute:%H:%M}", value=count))
    return line_chart(points, metric="Page views per minute", title="Page views per minute, last 30 minutes",
                      height=200)


def live_state(request: Request, appliance: Appliance) -> dict[str, Any]:
    site = site_of(request)
    items = appliance.live.latest(10_000, site.id)
    rows = rows_for(request, items, site.timezone)[:STREAM_ROWS]
    return {
        "site": site,
        "current": appliance.stats.current_visitors(site),
        "chart": minute_chart(items, site.timezone),
        "rows": rows,
    }


class LiveController(Controller):
    path = "/sites/{domain:str}/live"
    include_in_schema = False
    guards = [dashboard_site_viewer]

    @get("/", summary="The live view", sync_to_thread=True)
    def live_page(self, request: Request, appliance: ApplianceDep, domain: FromPath[str]) -> Template:
        return RenderedTemplate(request, "dashboard/live.html", {**_nav(request), **live_state(request, appliance)})

    @get("/stream", summary="The live view's Server-Sent Events")
    async def stream(self, request: Request, appliance: ApplianceDep, domain: FromPath[str]) -> ServerSentEvent:
        site = site_of(request)
        environment = request.app.template_engine.engine

        def render(name: str, **context: Any) -> str:
            return environment.get_template(f"dashboard/{name}").render(**context)

        def summary() -> list[ServerSentEventMessage]:
            items = appliance.live.latest(10_000, site.id)
            return [
                ServerSentEventMessage(event="visitors", data=str(appliance.stats.current_visitors(site))),
                ServerSentEventMessage(event="chart", data=str(minute_chart(items, site.timezone))),
            ]

        async def messages() -> AsyncIterator[ServerSentEventMessage]:
            queue = appliance.live.subscribe()
            last_summary = 0.0
            pending_summary = False
            try:
                yield ServerSentEventMessage(comment="connected", retry=2000)
                while True:
                    timeout = REFRESH_SECONDS
                    if pending_summary:
                        timeout = max(0.0, THROTTLE_SECONDS - (time.monotonic() - last_summary))
                    try:
                        batch = await asyncio.wait_for(queue.get(), timeout=timeout)
                    except TimeoutError:
                        batch = None
                    if batch:
                        rows = rows_for(request, [(i, e) for i, e in batch if e.site_id == site.id], site.timezone)
                        if rows:
                            yield ServerSentEventMessage(event="events", data=render("_live_rows.html", rows=rows[::-1]))
                        if any(e.site_id == site.id for _, e in batch):
                            pending_summary = True
                    now = time.monotonic()
                    if (pending_summary and now - last_summary >= THROTTLE_SECONDS) or now - last_summary >= REFRESH_SECONDS:
                        for message in summary():
                            yield message
                        last_summary, pending_summary = now, False
            finally:
                appliance.live.unsubscribe(queue)

        return ServerSentEvent(messages(), headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"})
