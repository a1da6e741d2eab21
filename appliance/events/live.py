"""The live ring buffer: the last N committed events, in memory, for the live view.

Appended by the writer thread after each commit; read by the API and by SSE subscribers, who
are woken through per-subscriber asyncio queues. Nobody outside gets an :class:`Event` from
here as it is: :func:`live_event` turns it into the one shape the live API and the live view
show, :class:`LiveEvent`.
"""

from __future__ import annotations

import asyncio
import threading
from collections import deque

import msgspec

from appliance.models import Event


class LiveEvent(msgspec.Struct, kw_only=True, omit_defaults=True):
    """One event as ``GET /api/v1/live`` and the dashboard's live view show it.

    Everyone who may read the site (viewers, shared links, anonymous visitors of a public
    site) gets the first group of fields. The second group, ``None`` and left out of the JSON
    otherwise, is for callers allowed the raw events (``export_events``: analysts and admins),
    because custom properties may carry anything a site sends. Never here, for anyone: the
    client's session id (``session_hint``), the visitor id, whether a user id was sent, the
    region, or anything else derived from an IP address but the country.
    """

    event_id: str  # "evt_…", as answered by the ingest endpoints
    timestamp: float  # Unix seconds, UTC
    kind: str  # "pageview", "custom", "conversion" or "engagement"
    name: str  # the event's name ("pageview" for page views)
    path: str  # the page
    source: str  # the referrer's source ("Google", "news.example"), "" for direct
    channel: str  # the acquisition channel ("Organic Search", "Direct", ...)
    country: str  # ISO 3166-1 alpha-2, "" when unknown
    device: str
    browser: str
    os: str
    revenue: int  # in minor units of currency (appliance.money.exponent digits), 0 without revenue
    currency: str
    # analysts and admins only
    props: dict[str, str] | None = None
    hostname: str | None = None
    referrer: str | None = None
    utm_source: str | None = None
    utm_medium: str | None = None
    utm_campaign: str | None = None
    screen: str | None = None
    language: str | None = None
    timezone: str | None = None
    engaged_ms: int | None = None
    scroll_depth: int | None = None


def live_event(event_id: str, event: Event, *, details: bool) -> LiveEvent:
    """The live view of one buffered event; ``details`` adds the analyst-level fields."""
    shown = LiveEvent(
        event_id="evt_" + event_id, timestamp=event.timestamp, kind=event.kind.name.lower(), name=event.name,
        path=event.path, source=event.source, channel=event.channel, country=event.country, device=event.device,
        browser=event.browser, os=event.os, revenue=event.revenue, currency=event.currency,
    )
    if details:
        shown.props = dict(event.props)
        shown.hostname = event.hostname
        shown.referrer = event.referrer
        shown.utm_source, shown.utm_medium, shown.utm_campaign = event.utm_source, event.utm_medium, event.utm_campaign
        shown.screen, shown.language, shown.timezone = event.screen, event.language, event.timezone
        shown.engaged_ms, shown.scroll_depth = event.engaged_ms, event.scroll_depth
    return shown


class LiveBuffer:
    def __init__(self, size: int) -> None:
        self._events: deque[tuple[str, Event]] = deque(maxlen=size)
        self._lock = threading.Lock()
        self._subscribers: set[tuple[asyncio.AbstractEventLoop, asyncio.Queue]] = set()

    def extend(self, events: list[tuple[str, Event]]) -> None:
        with self._lock:
            self._events.extend(events)
            subscribers = list(self._subscribers)
        for loop, queue in subscribers:
            try:
                loop.call_soon_threadsafe(queue.put_nowait, events)
            except RuntimeError:  # loop closed
                self._subscribers.discard((loop, queue))

    def __len__(self) -> int:
        return len(self._events)

    def latest(self, limit: int = 100, site_id: int | None = None) -> list[tuple[str, Event]]:
        with self._lock:
            items = list(self._events)
        if site_id is not None:
            items = [item for item in items if item[1].site_id == site_id]
        return items[-limit:][::-1]

    def subscribe(self) -> asyncio.Queue:
        queue: asyncio.Queue = asyncio.Queue(maxsize=1000)
        with self._lock:
            self._subscribers.add((asyncio.get_running_loop(), queue))
        return queue

    def unsubscribe(self, queue: asyncio.Queue) -> None:
        with self._lock:
            self._subscribers = {item for item in self._subscribers if item[1] is not queue}
