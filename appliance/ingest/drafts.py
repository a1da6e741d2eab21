"""Drafts: a request body checked and parsed into what the pipeline needs to build an Event.

``draft_from_event_body``, ``draft_from_conversion_body`` and ``draft_from_collect_body`` take
the three wire shapes (the seed's events and conversions, the tracker's compact body), bound
every string, parse the page URL and referrer (cached: the same URLs repeat), convert revenue
to integer minor units, and raise :class:`InvalidInput` naming the field of the first problem.
"""

from __future__ import annotations

import functools
import ipaddress
import re
from datetime import UTC
from urllib.parse import parse_qsl, urlsplit

import msgspec

from appliance import money
from appliance.errors import DomainError
from appliance.models import (
    CollectBody,
    ConversionBody,
    DropReason,
    EventBody,
    EventKind,
)

MAX_NAME = 120
MAX_PROPS = 30
MAX_PROP_VALUE = 300
MAX_URL = 2000
SCREEN_CLASSES = ((576, "Mobile"), (992, "Tablet"), (1440, "Laptop"))

# Control characters (C0, DEL, C1): never in an event or conversion name, where the unit
# separator \x1f joins a name and a currency in the stored revenue keys.
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f]")


class InvalidInput(DomainError):
    """The body is malformed: answered 400/422 with ``field`` and ``message``."""


class Dropped(Exception):
    def __init__(self, reason: DropReason | str) -> None:
        super().__init__(str(reason))
        self.reason = reason


def minor_units(amount: float, currency: str) -> int:
    return money.to_minor(amount, currency)


def _checked_name(name: str, field: str) -> str:
    if _CONTROL.search(name):
        raise InvalidInput(field, "must not contain control characters")
    return name


def screen_class(width: int | None) -> str:
    if not width or width <= 0:
        return ""
    for limit, name in SCREEN_CLASSES:
        if width < limit:
            return name
    return "Desktop"


def _clip(value: object, limit: int) -> str:
    text = value if isinstance(value, str) else "" if value is None else str(value)
    return text[:limit]


def _props(raw: dict, exclude: frozenset[str] = frozenset()) -> dict[str, str]:
    props = {}
    for key, value in raw.items():
        if key in exclude or value is None:
            continue
        if len(props) >= MAX_PROPS:
            break
        if isinstance(value, bool):
            value = "true" if value else "false"
        props[_clip(key, MAX_NAME)] = _clip(value, MAX_PROP_VALUE)
    return props


class ParsedUrl(msgspec.Struct):
    hostname: str
    path: str
    query: dict[str, str]


def parse_page_url(url: str | None, field: str) -> ParsedUrl:
    if isinstance(url, str) and url:
        return _parse_page_url_cached(url, field)
    return _parse_page_url(url, field)


@functools.lru_cache(maxsize=8192)
def _parse_page_url_cached(url: str, field: str) -> ParsedUrl:
    """Page URLs repeat a lot; a parsed URL is immutable in practice (never mutated)."""
    return _parse_page_url(url, field)


def _parse_page_url(url: str | None, field: str) -> ParsedUrl:
    if url is None or url == "":
        return ParsedUrl("", "/", {})
    if not isinstance(url, str):
        raise InvalidInput(field, "must be a string")
    if len(url) > MAX_URL:
        raise InvalidInput(field, f"longer than {MAX_URL} characters")
    try:
        parts = urlsplit(url)
        hostname = (parts.hostname or "").lower()
    except ValueError:
        raise InvalidInput(field, "not a valid URL") from None
    if parts.scheme not in ("http", "https", "") or (parts.scheme and not hostname):
        raise InvalidInput(field, "must be an absolute http(s) URL")
    path = parts.path or "/"
    if len(path) > 1 and path.endswith("/"):
        path = path.rstrip("/") or "/"
    query = dict(parse_qsl(parts.query)) if parts.query else {}
    return ParsedUrl(hostname.removeprefix("www."), path[:500], query)


def with_fragment(page: ParsedUrl, url: str) -> ParsedUrl:
    """The page with the URL's ``#fragment`` kept in its path (hash-based routing); a new
    value, as parsed URLs are cached and shared."""
    _, hash_sign, fragment = url.partition("#")
    if not hash_sign or not fragment:
        return page
    return ParsedUrl(page.hostname, (page.path + "#" + fragment)[:500], page.query)


def _referrer(url: object) -> str:
    if not url or not isinstance(url, str):
        return ""
    return _referrer_cached(url)


@functools.lru_cache(maxsize=8192)
def _referrer_cached(url: str) -> str:
    try:
        parts = urlsplit(url[:MAX_URL])
    except ValueError:
        return ""
    if parts.scheme not in ("http", "https") or not parts.hostname:
        # android-app:// and the like keep their host as the referrer
        return f"{parts.scheme}://{parts.hostname}" if parts.hostname else ""
    return f"{parts.scheme}://{parts.hostname}{parts.path}"[:500]


class Draft(msgspec.Struct, kw_only=True, gc=False):
    """The validated fields of an incoming item, before site, hooks and visitor id.

    Not tracked by the garbage collector (``gc=False``, as :class:`~appliance.models.Event`):
    it holds texts, numbers, a shared parsed URL and a dict of such values, never itself."""

    kind: EventKind
    name: str
    site_hint: str
    timestamp: float | None
    user_id: str
    session_id: str
    page: ParsedUrl
    fields: dict[str, object]
    # The visitor's user agent and IP address from a server-side body (metadata.user_agent,
    # metadata.ip): read by the pipeline's visitor step, never stored.
    user_agent: str = ""
    ip: str = ""


# metadata keys that describe the visitor for a server-side event: never kept as properties
VISITOR_KEYS = frozenset({"user_agent", "ip"})
MAX_USER_AGENT = 512


def _visitor(metadata: dict) -> dict[str, str]:
    """``metadata.user_agent`` and ``metadata.ip`` checked, as Draft arguments."""
    user_agent, ip = metadata.get("user_agent"), metadata.get("ip")
    if user_agent is not None and not isinstance(user_agent, str):
        raise InvalidInput("metadata.user_agent", "must be a string")
    if ip is not None and not isinstance(ip, str):
        raise InvalidInput("metadata.ip", "must be a string")
    if ip:
        try:
            ip = str(ipaddress.ip_address(ip.strip()))
        except ValueError:
            raise InvalidInput("metadata.ip", "not an IPv4 or IPv6 address") from None
    return {"user_agent": (user_agent or "")[:MAX_USER_AGENT], "ip": ip or ""}


def draft_from_event_body(body: EventBody) -> Draft:
    if not body.event_type or len(body.event_type) > MAX_NAME:
        raise InvalidInput("event_type", f"must be 1-{MAX_NAME} characters")
    _checked_name(body.event_type, "event_type")
    metadata = body.metadata
    for key in ("page_url", "referrer_url", "browser", "device"):
        value = metadata.get(key)
        if value is not None and not isinstance(value, str):
            raise InvalidInput(f"metadata.{key}", "must be a string")
    page = parse_page_url(metadata.get("page_url"), "metadata.page_url")
    kind = EventKind.PAGEVIEW if body.event_type in ("page_view", "pageview") else EventKind.CUSTOM
    fields: dict[str, object] = {
        "referrer": _referrer(metadata.get("referrer_url")),
        "props": _props(metadata, frozenset({"page_url", "referrer_url", "browser", "device"}) | VISITOR_KEYS),
    }
    if metadata.get("browser"):
        fields["browser"] = _clip(metadata["browser"], MAX_NAME)
    if metadata.get("device"):
        fields["device"] = _clip(metadata["device"], MAX_NAME).capitalize()
    return Draft(
        kind=kind,
        name="pageview" if kind is EventKind.PAGEVIEW else body.event_type,
        site_hint=body.site or "",
        timestamp=_timestamp(body.timestamp),
        user_id=body.user_id or "",
        session_id=body.session_id or "",
        page=page,
        fields=fields,
        **_visitor(metadata),
    )


def _revenue(amount: object, currency: object, amount_field: str, currency_field: str) -> dict[str, object]:
    """Revenue in minor units; errors name the wire fields (``metadata.currency``, ``c``)."""
    if amount is None:
        return {}
    if isinstance(amount, bool) or not isinstance(amount, int | float):
        raise InvalidInput(amount_field, "must be a number")
    if amount < 0 or amount > 1e12:
        raise InvalidInput(amount_field, "must be between 0 and 10^12")
    currency = (currency or "USD") if isinstance(currency, str | type(None)) else None
    # Upper-cased only when ASCII: "ßßß".upper() is "SSSSSS".
    currency = currency.upper() if currency is not None and currency.isascii() else currency
    if not money.is_currency(currency):
        raise InvalidInput(currency_field, "must be a known three-letter ISO 4217 currency code")
    return {"revenue": minor_units(float(amount), currency), "currency": currency}


def draft_from_conversion_body(body: ConversionBody) -> Draft:
    if not body.conversion_type or len(body.conversion_type) > MAX_NAME:
        raise InvalidInput("conversion_type", f"must be 1-{MAX_NAME} characters")
    _checked_name(body.conversion_type, "conversion_type")
    metadata = body.metadata
    page_url = metadata.get("page_url")
    if page_url is not None and not isinstance(page_url, str):
        raise InvalidInput("metadata.page_url", "must be a string")
    fields = _revenue(metadata.get("amount"), metadata.get("currency"), "metadata.amount", "metadata.currency")
    fields["props"] = _props(metadata, frozenset({"amount", "currency", "page_url", "referrer_url"}) | VISITOR_KEYS)
    fields["referrer"] = _referrer(metadata.get("referrer_url"))
    return Draft(
        kind=EventKind.CONVERSION,
        name=body.conversion_type,
        site_hint=body.site or "",
        timestamp=_timestamp(body.timestamp),
        user_id=body.user_id or "",
        session_id=body.session_id or "",
        page=parse_page_url(page_url, "metadata.page_url"),
        fields=fields,
        **_visitor(metadata),
    )


_COLLECT_KINDS = {
    "pageview": EventKind.PAGEVIEW,
    "event": EventKind.CUSTOM,
    "conversion": EventKind.CONVERSION,
    "engagement": EventKind.ENGAGEMENT,
}


def draft_from_collect_body(body: CollectBody) -> Draft:
    kind = _COLLECT_KINDS.get(body.k)
    if kind is None:
        raise InvalidInput("k", "must be one of pageview, event, conversion, engagement")
    page = parse_page_url(body.u, "u")
    if not page.hostname:
        raise InvalidInput("u", "must be an absolute http(s) URL")
    if body.h:
        page = with_fragment(page, body.u)
    if kind in (EventKind.CUSTOM, EventKind.CONVERSION) and not body.n:
        raise InvalidInput("n", "required for events and conversions")
    fields: dict[str, object] = {
        "referrer": _referrer(body.r),
        "props": _props(body.p),
        "screen": screen_class(body.w),
        "language": _clip(body.l, 35),
        "timezone": _clip(body.z, 64),
    }
    if kind is EventKind.CONVERSION:
        fields.update(_revenue(body.a, body.c, "a", "c"))
    if kind is EventKind.PAGEVIEW and body.v in (0, 1):
        fields["visitor_type"] = "Returning" if body.v else "New"
    if kind is EventKind.ENGAGEMENT:
        fields["engaged_ms"] = max(0, min(body.e or 0, 86_400_000))
        fields["scroll_depth"] = max(0, min(body.d or 0, 100))
    name = {EventKind.PAGEVIEW: "pageview", EventKind.ENGAGEMENT: "engagement"}.get(kind)
    return Draft(
        kind=kind,
        name=name or _checked_name(_clip(body.n, MAX_NAME), "n"),
        site_hint=body.s or "",
        timestamp=None,
        user_id="",
        session_id="",
        page=page,
        fields=fields,
    )


def _timestamp(value) -> float | None:
    if value is None:
        return None
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.timestamp()


