"""The event log's row format: one event as a MessagePack array of interned string ids.

``encode_event`` writes what ingest appends to :mod:`storage.eventlog`; ``decode_event``
rebuilds the :class:`~appliance.models.Event`. Column blocks (:mod:`appliance.events.blocks`)
keep the same string fields, in the same order, as per-block dictionaries.
"""

from __future__ import annotations

import hashlib
import itertools
import operator

import msgspec

from appliance.models import Event, EventKind

# Event fields stored as interned string ids, in this order (part of the on-disk format).
STRING_FIELDS: tuple[str, ...] = (
    "name",
    "hostname",
    "path",
    "referrer",
    "referrer_host",
    "source",
    "medium",
    "channel",
    "utm_source",
    "utm_medium",
    "utm_campaign",
    "utm_term",
    "utm_content",
    "browser",
    "browser_version",
    "os",
    "os_version",
    "device",
    "country",
    "region",
    "screen",
    "language",
    "timezone",
    "currency",
    "visitor_type",
)
_STRINGS = operator.attrgetter(*STRING_FIELDS)  # an event's string fields, as one tuple
_encoder = msgspec.msgpack.Encoder()
_decoder = msgspec.msgpack.Decoder()


def session_hash(hint: str) -> int:
    """Client session ids are stored as 64-bit hashes: they are unbounded and never shown."""
    if not hint:
        return 0
    return int.from_bytes(hashlib.blake2b(hint.encode(), digest_size=8).digest(), "big") or 1


def encode_event(event: Event, intern) -> bytes:
    props: list[int] = []
    for prop_key, prop_value in event.props.items():
        props.append(intern(prop_key))
        props.append(intern(prop_value))
    return _encoder.encode(
        (
            int(event.kind),
            event.visitor_id,
            int(event.user_hashed),
            session_hash(event.session_hint),
            list(map(intern, _STRINGS(event))),
            props,
            event.revenue,
            event.engaged_ms,
            event.scroll_depth,
        )
    )


def encode_events(events: list[Event], intern) -> list[bytes]:
    """:func:`encode_event` for a batch: the same rows, and the same texts interned in the same
    order (event by event: properties, then the string fields), each distinct text once;
    every other occurrence is a dict lookup instead of a call of ``intern``."""
    rows = [_STRINGS(event) for event in events]
    texts: list[str] = []
    for event, strings in zip(events, rows, strict=True):
        if event.props:
            texts.extend(itertools.chain.from_iterable(event.props.items()))
        texts.extend(strings)
    ids = {text: intern(text) for text in dict.fromkeys(texts)}
    find = ids.__getitem__
    encode = _encoder.encode
    return [
        encode((
            int(event.kind),
            event.visitor_id,
            int(event.user_hashed),
            session_hash(event.session_hint),
            list(map(find, strings)),
            list(map(find, itertools.chain.from_iterable(event.props.items()))) if event.props else [],
            event.revenue,
            event.engaged_ms,
            event.scroll_depth,
        ))
        for event, strings in zip(events, rows, strict=True)
    ]


def decode_event(site_id: int, timestamp_ms: int, data: bytes, text) -> Event:
    """Rebuild an Event from a log entry; ``text(id) -> str`` resolves interned ids."""
    kind, visitor, user_hashed, session, ids, props, revenue, engaged, scroll = _decoder.decode(data)
    fields = {name: text(string_id) for name, string_id in zip(STRING_FIELDS, ids, strict=False)}
    prop_dict = {text(props[i]): text(props[i + 1]) for i in range(0, len(props), 2)}
    return Event(
        kind=EventKind(kind),
        site_id=site_id,
        timestamp=timestamp_ms / 1000,
        visitor_id=visitor,
        user_hashed=bool(user_hashed),
        session_hint=f"{session:016x}" if session else "",
        props=prop_dict,
        revenue=revenue,
        engaged_ms=engaged,
        scroll_depth=scroll,
        **fields,
    )


def row_person(data: bytes) -> tuple[int, bool]:
    """A log row's ``(visitor_id, user_hashed)``, without decoding the rest."""
    _, visitor, user_hashed, *_ = _decoder.decode(data)
    return visitor, bool(user_hashed)
