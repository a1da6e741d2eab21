"""Other tools' wire formats, translated into drafts: Plausible's ``/api/event`` body and
Umami's ``/api/send`` payload.

Nothing here counts anything: each body becomes one or more :class:`~appliance.ingest.drafts.Draft`
objects that go through the same pipeline as Footfall's own events (bots, enrichment, visitor
ids, visits). The body types accept what those tools' trackers and clients send, including
Plausible's one-letter keys (``n u d r p m $ i h`` and the engagement fields ``e sd``) and its
props sent as a JSON-encoded string. A site is named the tools' way (a Plausible domain or a
comma-separated list of them, an Umami website id): the site registry resolves those names,
including the aliases a site carries (``Site.plausible_site_id``, ``Site.umami_website_id``).
"""

from __future__ import annotations

from typing import Any

import msgspec

from appliance.ingest.drafts import (
    MAX_NAME,
    Draft,
    InvalidInput,
    ParsedUrl,
    _checked_name,
    _clip,
    _props,
    _referrer,
    _revenue,
    parse_page_url,
    screen_class,
    with_fragment,
)
from appliance.models import EventKind

MAX_DOMAINS = 10  # a Plausible body may name several sites; more is not a real snippet
_props_decoder = msgspec.json.Decoder(dict[str, Any])


class PlausibleBody(msgspec.Struct, kw_only=True):
    """``POST /api/event``: Plausible's event body, long or short keys (the long key wins)."""

    name: str | None = None
    n: str | None = None
    url: str | None = None
    u: str | None = None
    domain: str | None = None
    d: str | None = None
    referrer: str | None = None
    r: str | None = None
    props: dict[str, Any] | str | None = None
    p: dict[str, Any] | str | None = None
    meta: dict[str, Any] | str | None = None
    m: dict[str, Any] | str | None = None
    revenue: dict[str, Any] | str | None = None
    revenue_short: dict[str, Any] | str | None = msgspec.field(default=None, name="$")
    interactive: bool | None = None
    i: bool | None = None
    hashMode: int | bool | None = None  # noqa: N815 - Plausible's wire name
    h: int | bool | None = None
    e: int | None = None  # engagement: foreground milliseconds
    sd: int | None = None  # engagement: maximum scroll depth, percent
    v: int | None = None  # the tracker's version (ignored)


class UmamiPayload(msgspec.Struct, kw_only=True):
    website: str | None = None
    hostname: str | None = None
    url: str | None = None
    referrer: str | None = None
    title: str | None = None
    language: str | None = None
    screen: str | None = None
    name: str | None = None
    data: dict[str, Any] | None = None
    tag: str | None = None
    id: str | None = None  # a distinct id (identify, or set on every event)
    timestamp: float | None = None  # seconds since the epoch, for historical events


class UmamiBody(msgspec.Struct, kw_only=True):
    """``POST /api/send``: ``{"type": "event" | "identify", "payload": {...}}``."""

    type: str = "event"
    payload: UmamiPayload


def _pick(long: Any, short: Any) -> Any:
    return long if long is not None else short


def _plausible_props(value: Any, field: str) -> dict[str, str]:
    if value is None or value == "":
        return {}
    if isinstance(value, str):  # the legacy script sends props as a JSON-encoded string
        try:
            value = _props_decoder.decode(value)
        except (msgspec.DecodeError, msgspec.ValidationError):
            raise InvalidInput(field, "must be an object or a JSON-encoded object") from None
    return _props({key: item for key, item in value.items() if not isinstance(item, dict | list)})


def _plausible_revenue(value: Any) -> dict[str, object]:
    if value is None or value == "":
        return {}
    if isinstance(value, str):
        try:
            value = _props_decoder.decode(value)
        except (msgspec.DecodeError, msgspec.ValidationError):
            raise InvalidInput("revenue", "must be an object {currency, amount}") from None
    amount = value.get("amount")
    if isinstance(amount, str):  # Plausible accepts "12.50" as well as 12.5
        try:
            amount = float(amount)
        except ValueError:
            raise InvalidInput("revenue.amount", "must be a number") from None
    if amount is None:
        raise InvalidInput("revenue.amount", "required with revenue")
    return _revenue(amount, value.get("currency"), "revenue.amount", "revenue.currency")


def drafts_from_plausible(body: PlausibleBody) -> list[Draft]:
    """One draft per domain the body names (``domain`` may be ``"a.com,b.com"``)."""
    name = _pick(body.name, body.n)
    if not name or not isinstance(name, str):
        raise InvalidInput("name", "required")
    if len(name) > MAX_NAME:
        raise InvalidInput("name", f"must be 1-{MAX_NAME} characters")
    _checked_name(name, "name")
    url = _pick(body.url, body.u)
    if not url:
        raise InvalidInput("url", "required")
    page = parse_page_url(url, "url")
    if not page.hostname:
        raise InvalidInput("url", "must be an absolute http(s) URL")
    if _pick(body.hashMode, body.h):
        page = with_fragment(page, url)
    # one event per named site; a site named twice counts once
    domains = list(dict.fromkeys(item.strip() for item in (_pick(body.domain, body.d) or "").split(",") if item.strip()))
    if not domains:
        raise InvalidInput("domain", "required")
    if len(domains) > MAX_DOMAINS:
        raise InvalidInput("domain", f"at most {MAX_DOMAINS} comma-separated domains")
    props = _plausible_props(_pick(body.props, body.p), "props") or _plausible_props(_pick(body.meta, body.m), "meta")
    fields: dict[str, object] = {"referrer": _referrer(_pick(body.referrer, body.r)), "props": props}
    if name == "pageview":
        kind = EventKind.PAGEVIEW
    elif name == "engagement":
        kind = EventKind.ENGAGEMENT
        fields["engaged_ms"] = max(0, min(body.e or 0, 86_400_000))
        fields["scroll_depth"] = max(0, min(body.sd or 0, 100))
    else:
        revenue = _plausible_revenue(_pick(body.revenue, body.revenue_short))
        kind = EventKind.CONVERSION if revenue else EventKind.CUSTOM
        fields.update(revenue)
    return [
        Draft(kind=kind, name=name, site_hint=domain, timestamp=None, user_id="", session_id="",
              page=page, fields=dict(fields))
        for domain in domains
    ]


def _screen_width(screen: str | None) -> int | None:
    """Umami's ``screen`` is ``"1920x1080"``: the width, or None."""
    width, _, _ = (screen or "").partition("x")
    return int(width) if width.isdigit() and len(width) < 6 else None


def draft_from_umami(body: UmamiBody) -> Draft:
    """The draft of an Umami ``event`` or ``identify`` body (the caller decides what an
    identify does: it names a visitor and carries session data, it is not an event)."""
    if body.type not in ("event", "identify"):
        raise InvalidInput("type", "must be event or identify")
    payload = body.payload
    if not payload.website:
        raise InvalidInput("payload.website", "required")
    hostname = (payload.hostname or "").strip()
    url = payload.url or "/"
    if url.startswith("/") and hostname:
        url = f"https://{hostname}{url}"
    elif url.startswith("/"):  # no hostname: the site's own domain stands in
        url = f"https://localhost{url}"
    page = with_fragment(parse_page_url(url, "payload.url"), url)
    if page.hostname == "localhost" and not hostname:
        page = ParsedUrl("", page.path, page.query)
    name = payload.name
    if name is not None:
        if len(name) > MAX_NAME:
            raise InvalidInput("payload.name", f"at most {MAX_NAME} characters")
        _checked_name(name, "payload.name")
    fields: dict[str, object] = {
        "referrer": _referrer(payload.referrer),
        "props": _props({key: item for key, item in (payload.data or {}).items() if not isinstance(item, dict | list)}),
        "screen": screen_class(_screen_width(payload.screen)),
        "language": _clip(payload.language, 35),
    }
    return Draft(
        kind=EventKind.CUSTOM if name else EventKind.PAGEVIEW,
        name=name or "pageview",
        site_hint=payload.website.strip(),
        timestamp=payload.timestamp,
        user_id=_clip(payload.id, 200),
        session_id="",
        page=page,
        fields=fields,
    )
