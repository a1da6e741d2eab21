"""The raw-event interchange format: one stored event as one NDJSON line or CSV row.

What the raw event export writes (:mod:`appliance.exports.raw_events`) and the ``footfall``
importer reads back (:mod:`appliance.imports.footfall`), so a round trip stores the same events
and every report comes out the same. Version 1, carried by every line (``"v":1``, a ``v``
column in CSV), so exports resumed from a cursor can be concatenated and a reader refuses a
version it does not know.

Fields (NDJSON keys, CSV columns; empty strings and zeros are left out of NDJSON lines):

- ``v`` format version (1); ``id`` the event's position in the event log (hex; a resume
  cursor, ignored on import); ``t`` event time, milliseconds since 1970-01-01 UTC;
- ``kind`` ``pageview``, ``custom``, ``conversion`` or ``engagement``; ``name`` (``pageview``,
  ``engagement``, the custom event's or conversion's name);
- ``hostname``, ``path``, ``referrer`` (scheme, host and path), ``referrer_host``;
- ``source``, ``medium``, ``channel`` (as enriched at ingest), ``utm_source`` … ``utm_content``;
- ``browser``, ``browser_version``, ``os``, ``os_version``, ``device``, ``screen`` (class),
  ``country`` (ISO 3166-1), ``region`` (ISO 3166-2), ``language``, ``timezone``;
- ``props`` (string → string; a JSON object in CSV), ``revenue`` (integer minor units of
  ``currency``), ``currency``, ``engaged_ms``, ``scroll_depth`` (percent), ``visitor_type``;
- ``visitor`` the pseudonymous visitor id: 16 hex digits of the daily-salted keyed hash (or,
  with ``user`` true, of the keyed hash of a user id) — never an IP address, user agent or
  user id; ``session`` 16 hex digits of the hashed client session id, or empty.

CSV cells that a spreadsheet would run as a formula (starting ``=``, ``+``, ``-``, ``@``, tab,
carriage return) and cells starting with ``'`` are written with a leading ``'``, which the
reader strips: a bijection, so the CSV round trip is exact too.
"""

from __future__ import annotations

import operator

import msgspec

from appliance.events.codec import STRING_FIELDS
from appliance.models import Event, EventKind

VERSION = 1
KIND_NAMES = {EventKind.PAGEVIEW: "pageview", EventKind.CUSTOM: "custom", EventKind.CONVERSION: "conversion",
              EventKind.ENGAGEMENT: "engagement"}
KINDS_BY_NAME = {name: kind for kind, name in KIND_NAMES.items()}


class InterchangeError(ValueError):
    """A line that is not a valid interchange line; ``message`` says which field and why."""


class Line(msgspec.Struct, omit_defaults=True, forbid_unknown_fields=True):
    """One event in the interchange format (see the module docstring). The string fields
    follow :data:`appliance.events.codec.STRING_FIELDS` in order (the exporter builds lines
    positionally)."""

    v: int
    t: int
    kind: str
    visitor: str
    id: str = ""
    name: str = ""
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
    currency: str = ""
    visitor_type: str = ""
    props: dict[str, str] = {}
    revenue: int = 0
    engaged_ms: int = 0
    scroll_depth: int = 0
    user: bool = False
    session: str = ""


COLUMNS: tuple[str, ...] = tuple(Line.__struct_fields__)
assert COLUMNS[5 : 5 + len(STRING_FIELDS)] == STRING_FIELDS, "Line must list the string fields in log order"
_STRINGS = operator.attrgetter(*STRING_FIELDS)  # a line's string fields, as one tuple

_NUMBERS = frozenset({"v", "t", "revenue", "engaged_ms", "scroll_depth"})
_RISKY = ("=", "+", "-", "@", "\t", "\r", "'")

encoder = msgspec.json.Encoder()
_decoder = msgspec.json.Decoder(Line)


def line_of(key_hex: str, event: Event) -> Line:
    """The interchange line of a stored event (``key_hex``: its log key)."""
    fields = {name: getattr(event, name) for name in STRING_FIELDS}
    return Line(
        v=VERSION,
        id=key_hex,
        t=round(event.timestamp * 1000),
        kind=KIND_NAMES[event.kind],
        visitor=f"{event.visitor_id:016x}",
        user=event.user_hashed,
        session=event.session_hint,
        props=event.props,
        revenue=event.revenue,
        engaged_ms=event.engaged_ms,
        scroll_depth=event.scroll_depth,
        **fields,
    )


def _hex64(text: str, field: str) -> int:
    if len(text) > 16:
        raise InterchangeError(f"{field}: more than 16 hex digits")
    try:
        return int(text, 16) if text else 0
    except ValueError:
        raise InterchangeError(f"{field}: not hexadecimal") from None


def check_line(line: Line) -> tuple[EventKind, int, int]:
    """Raise :class:`InterchangeError` unless ``line`` describes an event; returns its kind,
    visitor and session as numbers (an import's validation pass needs no :class:`Event`)."""
    if line.v != VERSION:
        raise InterchangeError(f"v: format version {line.v} is not supported (this reader knows {VERSION})")
    kind = KINDS_BY_NAME.get(line.kind)
    if kind is None:
        raise InterchangeError(f"kind: must be one of {', '.join(KINDS_BY_NAME)}")
    if not 0 < line.t < 2**53:
        raise InterchangeError("t: not a time in milliseconds since 1970")
    visitor = _hex64(line.visitor, "visitor")
    if not visitor:
        raise InterchangeError("visitor: required")
    session = _hex64(line.session, "session")
    values = _STRINGS(line)
    if max(map(len, values)) > 2000:
        name = next(name for name, value in zip(STRING_FIELDS, values, strict=True) if len(value) > 2000)
        raise InterchangeError(f"{name}: longer than 2000 characters")
    if line.revenue < 0 or line.engaged_ms < 0 or not 0 <= line.scroll_depth <= 100:
        raise InterchangeError("revenue, engaged_ms and scroll_depth must be non-negative (scroll_depth ≤ 100)")
    return kind, visitor, session


def event_of(line: Line, site_id: int) -> Event:
    """The event a line describes, for ``site_id``; raises :class:`InterchangeError`.

    The string fields are named one by one (a dict of them for ``**`` cost more than the
    event itself: ~1.3 of ~7 µs a line); ``test_event_of_carries_every_string_field`` holds
    the list to :data:`~appliance.events.codec.STRING_FIELDS`."""
    kind, visitor, session = check_line(line)
    return Event(
        kind=kind,
        site_id=site_id,
        timestamp=line.t / 1000,
        visitor_id=visitor,
        user_hashed=line.user,
        # the stored session is a hash already; the store hashes it again, which keeps
        # equal sessions equal and different ones different (all a visit boundary needs)
        session_hint=f"{session:016x}" if session else "",
        props=dict(line.props),
        revenue=line.revenue,
        engaged_ms=line.engaged_ms,
        scroll_depth=line.scroll_depth,
        name=line.name, hostname=line.hostname, path=line.path, referrer=line.referrer,
        referrer_host=line.referrer_host, source=line.source, medium=line.medium, channel=line.channel,
        utm_source=line.utm_source, utm_medium=line.utm_medium, utm_campaign=line.utm_campaign,
        utm_term=line.utm_term, utm_content=line.utm_content, browser=line.browser,
        browser_version=line.browser_version, os=line.os, os_version=line.os_version, device=line.device,
        country=line.country, region=line.region, screen=line.screen, language=line.language,
        timezone=line.timezone, currency=line.currency, visitor_type=line.visitor_type,
    )


def decode_ndjson(raw: bytes) -> Line:
    """One NDJSON line; raises :class:`InterchangeError` naming the problem."""
    try:
        return _decoder.decode(raw)
    except (msgspec.ValidationError, msgspec.DecodeError) as error:
        raise InterchangeError(str(error)) from None


# -- CSV ------------------------------------------------------------------------------------
_TEXT_POSITIONS = tuple(i for i, name in enumerate(COLUMNS) if name not in _NUMBERS and name not in ("props", "user"))
_PROPS_POSITION = COLUMNS.index("props")
_USER_POSITION = COLUMNS.index("user")
_RISKY_FIRST = frozenset(_RISKY)


def csv_row(line: Line) -> list[object]:
    """The CSV cells of a line, in :data:`COLUMNS` order."""
    row: list[object] = list(msgspec.structs.astuple(line))
    for position in _TEXT_POSITIONS:
        text = row[position]
        if text and text[0] in _RISKY_FIRST:
            row[position] = "'" + text
    props = row[_PROPS_POSITION]
    row[_PROPS_POSITION] = encoder.encode(props).decode() if props else ""
    row[_USER_POSITION] = 1 if row[_USER_POSITION] else 0
    return row


def line_of_csv(row: dict[str, str]) -> Line:
    """A line from a CSV row read with the header (:class:`csv.DictReader`)."""
    values: dict[str, object] = {}
    for name in COLUMNS:
        text = row.get(name) or ""
        if text.startswith("'"):
            text = text[1:]
        if name in _NUMBERS:
            try:
                values[name] = int(text) if text else 0
            except ValueError:
                raise InterchangeError(f"{name}: not an integer: {text[:40]!r}") from None
        elif name == "user":
            values[name] = text in ("1", "true")
        elif name == "props":
            try:
                values[name] = msgspec.json.decode(text, type=dict[str, str]) if text else {}
            except (msgspec.ValidationError, msgspec.DecodeError) as error:
                raise InterchangeError(f"props: {error}") from None
        else:
            values[name] = text
    try:
        return msgspec.convert(values, Line)
    except msgspec.ValidationError as error:
        raise InterchangeError(str(error)) from None
