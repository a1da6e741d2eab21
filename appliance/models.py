"""The Structs that cross Footfall's boundaries: API bodies in, enriched events, API answers out.

Incoming bodies keep the seed's public shapes (``/api/v1/events``, ``/api/v1/conversions``);
the tracker posts the compact :class:`CollectBody`. All of them become one frozen
:class:`Event` as they pass through the ingest pipeline.
"""

from __future__ import annotations

import enum
from datetime import datetime

import msgspec

MetadataValue = str | int | float | bool | None


class EventBody(msgspec.Struct, kw_only=True):
    """``POST /api/v1/events``: the seed's Track Event body."""

    event_type: str
    user_id: str | None = None
    session_id: str | None = None
    timestamp: datetime | None = None
    site: str | None = None
    metadata: dict[str, MetadataValue] = {}


class ConversionBody(msgspec.Struct, kw_only=True):
    """``POST /api/v1/conversions``: the seed's Track Conversion body."""

    conversion_type: str
    user_id: str | None = None
    session_id: str | None = None
    timestamp: datetime | None = None
    site: str | None = None
    metadata: dict[str, MetadataValue] = {}


class CollectBody(msgspec.Struct, kw_only=True):
    """``POST /api/v1/collect``: the tracker's compact body (sent as text/plain).

    ``k`` kind (pageview, event, conversion, engagement), ``s`` site, ``u`` page URL,
    ``r`` referrer, ``n`` event or conversion name, ``p`` properties, ``w`` screen width,
    ``l`` language, ``z`` time zone, ``a`` amount, ``c`` currency, ``e`` engaged
    milliseconds, ``d`` maximum scroll depth in percent, ``v`` 0/1 new or returning visitor
    (only when the site opted into the first-party marker), ``h`` 1 to keep the URL's
    ``#fragment`` in the path (hash-based routing: the compatibility script's ``hash`` mode).
    """

    k: str = "pageview"
    s: str | None = None
    u: str
    r: str | None = None
    n: str | None = None
    p: dict[str, MetadataValue] = {}
    w: int | None = None
    l: str | None = None  # noqa: E741 - one-letter wire names keep the tracker small
    z: str | None = None
    a: float | None = None
    c: str | None = None
    e: int | None = None
    d: int | None = None
    v: int | None = None
    h: int | None = None


class EventKind(enum.IntEnum):
    PAGEVIEW = 1
    CUSTOM = 2
    CONVERSION = 3
    ENGAGEMENT = 4


class Event(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    """One accepted event, as enriched by the pipeline and stored in the event log.

    Never holds a raw IP address or a raw user id: ``visitor_id`` is a keyed hash.
    ``revenue`` is in integer minor units of ``currency`` (cents for USD; see :mod:`appliance.money`).
    Not tracked by the garbage collector (``gc=False``): texts, numbers and a dict of texts
    can form no reference cycle, and a batch holds thousands of events.
    """

    kind: EventKind
    site_id: int
    timestamp: float
    name: str
    visitor_id: int = 0
    session_hint: str = ""
    user_hashed: bool = False
    hostname: str = ""
    path: str = "/"
    referrer: str = ""
    referrer_host: str = ""
    source: str = ""
    medium: str = ""
    channel: str = ""
    utm_source: str = ""
    utm_medium: str = ""
    utm_campaign: str = ""
    utm_term: str = ""
    utm_content: str = ""
    browser: str = ""
    browser_version: str = ""
    os: str = ""
    os_version: str = ""
    device: str = ""
    country: str = ""
    region: str = ""
    screen: str = ""
    language: str = ""
    timezone: str = ""
    props: dict[str, str] = {}
    revenue: int = 0
    currency: str = ""
    engaged_ms: int = 0
    scroll_depth: int = 0
    visitor_type: str = ""


class PrivacySignals(msgspec.Struct, frozen=True, kw_only=True):
    """The visitor's opt-out signals on the request: Global Privacy Control (``Sec-GPC: 1``)
    and Do-Not-Track (``DNT: 1``). Whether they drop the event is the site's choice
    (:attr:`Site.honour_gpc`, :attr:`Site.honour_dnt`)."""

    gpc: bool = False
    dnt: bool = False


NO_SIGNALS = PrivacySignals()


class RequestContext(msgspec.Struct, kw_only=True):
    """What the pipeline knows about the HTTP request an event came in. Never stored.

    ``page_query`` holds the query parameters of the tracked page URL (utm_*, ref, gclid...).
    ``caller`` is set when the request carried a valid user credential (an API key): it
    answers whether that user may send server-side events for a site id. By the time hooks
    see the context, ``client_ip`` and ``user_agent`` are the *visitor's* (a server-side
    event's ``metadata.ip`` / ``metadata.user_agent``) and ``trusted`` says the event came
    from such a caller.
    """

    client_ip: str
    user_agent: str
    received_at: float
    page_query: dict[str, str] = {}
    caller: object = None  # Callable[[int], bool] | None
    trusted: bool = False
    signals: PrivacySignals = NO_SIGNALS


class DropReason(enum.StrEnum):
    """Why the pipeline refused an event. Counted per reason, visible in ``/api/v1/health``."""

    UNKNOWN_SITE = "unknown_site"
    HOSTNAME_NOT_ALLOWED = "hostname_not_allowed"
    BOT = "bot"
    TOO_OLD = "too_old"
    IN_FUTURE = "in_future"
    INVALID = "invalid"
    FILTERED = "filtered_by_plugin"
    RATE_LIMITED = "rate_limited"
    GLOBAL_PRIVACY_CONTROL = "global_privacy_control"  # Sec-GPC: 1, and the site honours it
    DO_NOT_TRACK = "do_not_track"  # DNT: 1, and the site honours it


class Site(msgspec.Struct, kw_only=True):
    """A tracked site, keyed by its domain."""

    id: int
    domain: str
    name: str = ""
    timezone: str = "UTC"
    retention_days: int = 400
    allowed_hostnames: list[str] = []
    public: bool = False
    created_at: float = 0.0
    # Other tools' names for this site, so their trackers and clients reach it unchanged
    # (appliance/sites.py resolves them): an Umami website id (a UUID) and a Plausible site id
    # (the domain a Plausible snippet names, when it is not this site's domain).
    umami_website_id: str = ""
    plausible_site_id: str = ""
    honour_gpc: bool = True  # drop events sent with Global Privacy Control (Sec-GPC: 1)
    honour_dnt: bool = False  # drop events sent with Do-Not-Track (DNT: 1)


