"""Turns a batch of events into storage writes: counter deltas, sketch additions, log entries.

Everything for one batch happens inside one LMDB write transaction (see
:mod:`appliance.writer`). Counters and sketches are keyed per site, metric and bucket:
site totals in hour and day buckets, breakdown dimensions in day buckets (in the site's time
zone). The event log stores each event as a MessagePack array of interned string ids.
"""

from __future__ import annotations

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
    "session_hint",
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
)
_DIMENSION_ITEMS = tuple(dims.DIMENSIONS.values())
_encoder = msgspec.msgpack.Encoder()
_decoder = msgspec.msgpack.Decoder()


class BatchWrites:
    """The storage writes of one batch, gathered before the transaction opens."""

    def __init__(self) -> None:
        self.counters: dict[bytes, int] = defaultdict(int)
        self.sketches: dict[bytes, tuple[int, list[int]]] = {}

    def count(self, key: bytes, delta: int = 1) -> None:
        self.counters[key] += delta

    def visitor(self, key: bytes, precision: int, visitor: int) -> None:
        entry = self.sketches.get(key)
        if entry is None:
            self.sketches[key] = (precision, [visitor])
        else:
            entry[1].append(visitor)


def aggregate(events: list[Event], site_timezones: dict[int, str], intern) -> BatchWrites:
    """Counter deltas and sketch additions for a batch. ``intern(text) -> id`` (in the txn)."""
    writes = BatchWrites()
    key = pack_bucket_key
    for event in events:
        site = event.site_id
        hour = hour_bucket(event.timestamp)
        day = day_bucket(event.timestamp, site_timezones.get(site, "UTC"))
        visitor = event.visitor_id
        writes.count(key(site, HOUR, dims.EVENTS_TOTAL, hour, 0))
        writes.count(key(site, DAY, dims.EVENTS_TOTAL, day, 0))
        if event.kind is EventKind.ENGAGEMENT:
            continue
        writes.visitor(key(site, HOUR, dims.VISITORS, hour, 0), SITE_PRECISION, visitor)
        writes.visitor(key(site, DAY, dims.VISITORS, day, 0), SITE_PRECISION, visitor)
        if event.kind is EventKind.PAGEVIEW:
            writes.count(key(site, HOUR, dims.PAGEVIEWS, hour, 0))
            writes.count(key(site, DAY, dims.PAGEVIEWS, day, 0))
            for field, counter_metric, sketch_metric in _DIMENSION_ITEMS:
                value_id = intern(getattr(event, field))
                writes.count(key(site, DAY, counter_metric, day, value_id))
                writes.visitor(key(site, DAY, sketch_metric, day, value_id), DIMENSION_PRECISION, visitor)
        elif event.kind is EventKind.CUSTOM:
            name_id = intern(event.name)
            writes.count(key(site, HOUR, dims.CUSTOM_EVENTS, hour, name_id))
            writes.count(key(site, DAY, dims.CUSTOM_EVENTS, day, name_id))
            writes.visitor(key(site, DAY, dims.EVENT_VISITORS, day, name_id), DIMENSION_PRECISION, visitor)
        elif event.kind is EventKind.CONVERSION:
            type_id = intern(event.name)
            writes.count(key(site, HOUR, dims.CONVERSIONS, hour, type_id))
            writes.count(key(site, DAY, dims.CONVERSIONS, day, type_id))
            writes.visitor(
                key(site, DAY, dims.CONVERSION_VISITORS, day, type_id), DIMENSION_PRECISION, visitor
            )
            if event.revenue:
                revenue_id = intern(f"{event.name}{dims.REVENUE_SEPARATOR}{event.currency}")
                writes.count(key(site, DAY, dims.REVENUE, day, revenue_id), event.revenue)
    return writes


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
            [intern(getattr(event, field)) for field in STRING_FIELDS],
            props,
            event.revenue,
            event.engaged_ms,
            event.scroll_depth,
        )
    )


def decode_event(site_id: int, timestamp_ms: int, data: bytes, text) -> Event:
    """Rebuild an Event from a log entry; ``text(id) -> str`` resolves interned ids."""
    kind, visitor, user_hashed, ids, props, revenue, engaged, scroll = _decoder.decode(data)
    fields = {name: text(string_id) for name, string_id in zip(STRING_FIELDS, ids, strict=False)}
    prop_dict = {text(props[i]): text(props[i + 1]) for i in range(0, len(props), 2)}
    return Event(
        kind=EventKind(kind),
        site_id=site_id,
        timestamp=timestamp_ms / 1000,
        visitor_id=visitor,
        user_hashed=bool(user_hashed),
        props=prop_dict,
        revenue=revenue,
        engaged_ms=engaged,
        scroll_depth=scroll,
        **fields,
    )
