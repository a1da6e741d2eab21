"""Turns a batch of events into storage writes: counter deltas, sketch additions, log entries.

Everything for one batch happens inside one LMDB write transaction (see
:mod:`appliance.ingest.writer`). Counters and sketches are keyed per site, metric and bucket:
site totals in hour and day buckets, breakdown dimensions in day buckets (in the site's time
zone). The event log stores each event as a MessagePack array of interned string ids.
"""

from __future__ import annotations

import hashlib
from collections import defaultdict

import msgspec

from appliance import dimensions as dims
from appliance.models import Event, EventKind
from appliance.periods import day_bucket, hour_bucket
from storage.keys import DAY, HOUR, pack_bucket_key
from storage.sketches import DIMENSION_PRECISION, SITE_PRECISION

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
_DIMENSION_ITEMS = tuple(
    (field, counter, sketch, name in dims.COUNT_EMPTY)
    for name, (field, counter, sketch) in dims.DIMENSIONS.items()
)
_encoder = msgspec.msgpack.Encoder()
_decoder = msgspec.msgpack.Decoder()


class BatchWrites:
    """The storage writes of one batch, gathered before the transaction opens.

    Keys are gathered as tuples and packed once per distinct key; visitor hashes are
    de-duplicated per sketch key before they reach the sketch.
    """

    def __init__(self) -> None:
        self.counter_deltas: dict[tuple, int] = defaultdict(int)
        self.sketch_members: dict[tuple, set[int]] = defaultdict(set)

    @property
    def counters(self) -> dict[bytes, int]:
        return {pack_bucket_key(*key): delta for key, delta in self.counter_deltas.items()}

    @property
    def sketches(self) -> dict[bytes, tuple[int, list[int]]]:
        out = {}
        for key, members in self.sketch_members.items():
            precision = SITE_PRECISION if key[2] == dims.VISITORS else DIMENSION_PRECISION
            out[pack_bucket_key(*key)] = (precision, list(members))
        return out


def aggregate(events: list[Event], site_timezones: dict[int, str], intern) -> BatchWrites:
    """Counter deltas and sketch additions for a batch. ``intern(text) -> id`` (in the txn)."""
    writes = BatchWrites()
    counts = writes.counter_deltas
    members = writes.sketch_members
    known: dict[str, int] = {}
    for event in events:
        site = event.site_id
        hour = hour_bucket(event.timestamp)
        day = day_bucket(event.timestamp, site_timezones.get(site, "UTC"))
        visitor = event.visitor_id
        counts[(site, HOUR, dims.EVENTS_TOTAL, hour, 0)] += 1
        counts[(site, DAY, dims.EVENTS_TOTAL, day, 0)] += 1
        if event.kind is EventKind.ENGAGEMENT:
            path_id = intern(event.path)
            counts[(site, DAY, dims.ENGAGEMENTS, day, path_id)] += 1
            counts[(site, DAY, dims.ENGAGED_MS, day, path_id)] += event.engaged_ms
            counts[(site, DAY, dims.SCROLL_DEPTH, day, path_id)] += event.scroll_depth
            continue
        members[(site, HOUR, dims.VISITORS, hour, 0)].add(visitor)
        members[(site, DAY, dims.VISITORS, day, 0)].add(visitor)
        if event.kind is EventKind.PAGEVIEW:
            counts[(site, HOUR, dims.PAGEVIEWS, hour, 0)] += 1
            counts[(site, DAY, dims.PAGEVIEWS, day, 0)] += 1
            for field, counter_metric, sketch_metric, count_empty in _DIMENSION_ITEMS:
                text = getattr(event, field)
                if not text and not count_empty:
                    continue
                value_id = known.get(text)
                if value_id is None:
                    value_id = known[text] = intern(text)
                counts[(site, DAY, counter_metric, day, value_id)] += 1
                members[(site, DAY, sketch_metric, day, value_id)].add(visitor)
        elif event.kind is EventKind.CUSTOM:
            name_id = intern(event.name)
            counts[(site, HOUR, dims.CUSTOM_EVENTS, hour, name_id)] += 1
            counts[(site, DAY, dims.CUSTOM_EVENTS, day, name_id)] += 1
            members[(site, DAY, dims.EVENT_VISITORS, day, name_id)].add(visitor)
        elif event.kind is EventKind.CONVERSION:
            type_id = intern(event.name)
            counts[(site, HOUR, dims.CONVERSIONS, hour, type_id)] += 1
            counts[(site, DAY, dims.CONVERSIONS, day, type_id)] += 1
            members[(site, DAY, dims.CONVERSION_VISITORS, day, type_id)].add(visitor)
            if event.revenue:
                revenue_id = intern(f"{event.name}{dims.REVENUE_SEPARATOR}{event.currency}")
                counts[(site, DAY, dims.REVENUE, day, revenue_id)] += event.revenue
    return writes


def _session_hash(hint: str) -> int:
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
            _session_hash(event.session_hint),
            [intern(getattr(event, field)) for field in STRING_FIELDS],
            props,
            event.revenue,
            event.engaged_ms,
            event.scroll_depth,
        )
    )


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
