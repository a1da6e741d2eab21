"""The batch path's fast code against the plain code it replaced, on varied input (hypothesis).

Each optimisation of the ingest batch path (scripts/bench_batch.py measures them) must give
exactly what the straightforward per-field code gave: the same event-log rows, the same
counter deltas and sketch members, the same "(other)" decisions, the same inherited visit
properties, the same sketch bytes.
"""

from __future__ import annotations

import struct

import msgspec
from hypothesis import given, settings
from hypothesis import strategies as st

from appliance import dimensions as dims
from appliance.events.codec import STRING_FIELDS, encode_event, session_hash
from appliance.ingest.aggregation import _DIMENSION_ITEMS, aggregate
from appliance.ingest.cardinality import OTHER, CardinalityGuard
from appliance.ingest.visits import Visit, _inherit
from appliance.models import Event, EventKind
from appliance.periods import day_bucket, hour_bucket
from storage.keys import DAY, HOUR
from storage.sketches import Sketch, exact_bytes

_TEXTS = st.sampled_from(["", "", "a", "b", "Chrome", "/", "/pricing", "google", "(other)", "ünï"])
_STRING_FIELDS = sorted(set(STRING_FIELDS) - {"name", "currency", "path"})
_DAY0 = 1_760_000_000.0  # a fixed moment: the buckets of a run never depend on the clock


@st.composite
def events(draw) -> Event:
    kind = draw(st.sampled_from([EventKind.PAGEVIEW] * 4 + [EventKind.CUSTOM, EventKind.CONVERSION, EventKind.ENGAGEMENT]))
    fields = {name: draw(_TEXTS) for name in _STRING_FIELDS if name in Event.__struct_fields__}
    fields["path"] = draw(st.sampled_from(["/", "/a", "/b"]))
    return Event(
        kind=kind,
        site_id=draw(st.integers(1, 2)),
        timestamp=_DAY0 + draw(st.integers(0, 4 * 86400)) + draw(st.sampled_from([0.0, 0.25, 0.999])),
        name=draw(st.sampled_from(["pageview", "Signup", "purchase"])),
        visitor_id=draw(st.integers(0, 2**64 - 1)),
        props=draw(st.dictionaries(st.sampled_from(["plan", "k", ""]), _TEXTS, max_size=2)),
        revenue=draw(st.sampled_from([0, 1900])),
        currency=draw(st.sampled_from(["", "EUR"])),
        engaged_ms=draw(st.integers(0, 5000)),
        scroll_depth=draw(st.integers(0, 100)),
        **fields,
    )


def interner():
    ids: dict[str, int] = {"": 0}
    calls: list[str] = []

    def intern(text: str) -> int:
        calls.append(text)
        return ids.setdefault(text, len(ids))

    return intern, ids


# -- the event-log row ------------------------------------------------------------------------
def plain_encode(event: Event, intern) -> bytes:
    props: list[int] = []
    for key, value in event.props.items():
        props.append(intern(key))
        props.append(intern(value))
    strings = [intern(getattr(event, field)) for field in STRING_FIELDS]
    return msgspec.msgpack.encode((
        int(event.kind), event.visitor_id, int(event.user_hashed),
        session_hash(event.session_hint),
        strings, props, event.revenue, event.engaged_ms, event.scroll_depth,
    ))


@settings(max_examples=60, deadline=None)
@given(st.lists(events(), max_size=8))
def test_encode_event_matches_the_per_field_encoding(batch):
    fast, fast_ids = interner()
    plain, plain_ids = interner()
    for event in batch:
        assert encode_event(event, fast) == plain_encode(event, plain)
    assert fast_ids == plain_ids  # interned in the same order: the same string ids


# -- counter deltas and sketch members ---------------------------------------------------------
def plain_aggregate(events_, timezones, intern):
    """The per-field aggregation the fast one replaced (getattr per dimension)."""
    counts: dict[tuple, int] = {}
    members: dict[tuple, set[int]] = {}

    def add(key, amount):
        counts[key] = counts.get(key, 0) + amount

    for event in events_:
        site = event.site_id
        hour = hour_bucket(event.timestamp)
        day = day_bucket(event.timestamp, timezones.get(site, "UTC"))
        visitor = event.visitor_id
        add((site, HOUR, dims.EVENTS_TOTAL, hour, 0), 1)
        add((site, DAY, dims.EVENTS_TOTAL, day, 0), 1)
        if event.kind is EventKind.ENGAGEMENT:
            path_id = intern(event.path)
            add((site, DAY, dims.ENGAGEMENTS, day, path_id), 1)
            add((site, DAY, dims.ENGAGED_MS, day, path_id), event.engaged_ms)
            add((site, DAY, dims.SCROLL_DEPTH, day, path_id), event.scroll_depth)
            continue
        members.setdefault((site, HOUR, dims.VISITORS, hour, 0), set()).add(visitor)
        members.setdefault((site, DAY, dims.VISITORS, day, 0), set()).add(visitor)
        if event.kind is EventKind.PAGEVIEW:
            add((site, HOUR, dims.PAGEVIEWS, hour, 0), 1)
            add((site, DAY, dims.PAGEVIEWS, day, 0), 1)
            for field, counter, sketch, count_empty in _DIMENSION_ITEMS:
                text = getattr(event, field)
                if not text and not count_empty:
                    continue
                value_id = intern(text)
                add((site, DAY, counter, day, value_id), 1)
                members.setdefault((site, DAY, sketch, day, value_id), set()).add(visitor)
        elif event.kind is EventKind.CUSTOM:
            name_id = intern(event.name)
            add((site, HOUR, dims.CUSTOM_EVENTS, hour, name_id), 1)
            add((site, DAY, dims.CUSTOM_EVENTS, day, name_id), 1)
            members.setdefault((site, DAY, dims.EVENT_VISITORS, day, name_id), set()).add(visitor)
        elif event.kind is EventKind.CONVERSION:
            type_id = intern(event.name)
            add((site, HOUR, dims.CONVERSIONS, hour, type_id), 1)
            add((site, DAY, dims.CONVERSIONS, day, type_id), 1)
            members.setdefault((site, DAY, dims.CONVERSION_VISITORS, day, type_id), set()).add(visitor)
            if event.revenue:
                revenue_id = intern(f"{event.name}{dims.REVENUE_SEPARATOR}{event.currency}")
                add((site, DAY, dims.REVENUE, day, revenue_id), event.revenue)
    return counts, members


@settings(max_examples=60, deadline=None)
@given(st.lists(events(), max_size=12), st.sampled_from(["UTC", "Asia/Kolkata", "America/St_Johns"]))
def test_aggregate_matches_the_per_field_aggregation(batch, timezone):
    timezones = {1: timezone, 2: "UTC"}
    fast_intern, fast_ids = interner()
    plain_intern, plain_ids = interner()
    writes = aggregate(batch, timezones, fast_intern)
    counts, members = plain_aggregate(batch, timezones, plain_intern)
    assert fast_ids == plain_ids
    assert dict(writes.counter_deltas) == counts
    assert dict(writes.sketch_members) == members


# -- the cardinality bound -----------------------------------------------------------------------
class _NoCounters:
    """Counters of a fresh store: no day has values yet (the guard reads them lazily)."""

    def scan(self, txn, site, granularity, metric, first, last):
        return iter(())


def plain_bound(events_, timezones, intern, max_values):
    seen: dict[tuple, set[int]] = {}
    out = []
    for event in events_:
        if event.kind is not EventKind.PAGEVIEW:
            out.append(event)
            continue
        day = day_bucket(event.timestamp, timezones.get(event.site_id, "UTC"))
        replaced = {}
        for field, counter, _ in dims.DIMENSIONS.values():
            text = getattr(event, field)
            if not text:
                continue
            value_id = intern(text)
            values = seen.setdefault((event.site_id, counter, day), set())
            if value_id in values:
                continue
            if len(values) >= max_values:
                replaced[field] = OTHER
                values.add(intern(OTHER))
            else:
                values.add(value_id)
        out.append(msgspec.structs.replace(event, **replaced) if replaced else event)
    return out


@settings(max_examples=60, deadline=None)
@given(st.lists(st.lists(events(), max_size=10), max_size=3), st.integers(1, 4))
def test_cardinality_bound_matches_the_per_field_check(batches, max_values):
    guard = CardinalityGuard(_NoCounters(), max_values)
    fast_intern, _ = interner()
    plain_intern, _ = interner()
    everything = [event for batch in batches for event in batch]
    # batch by batch, as commits call it: the sets carry over between batches
    fast = [event for batch in batches for event in guard.apply(None, batch, {}, fast_intern)]
    assert fast == plain_bound(everything, {}, plain_intern, max_values)


# -- visit properties ----------------------------------------------------------------------------
def plain_inherit(event: Event, visit: Visit) -> Event:
    carried = visit.carried
    if len(carried) != len(dims.VISIT_FIELDS):
        return event
    changed = {field: value for field, value in zip(dims.VISIT_FIELDS, carried, strict=True) if getattr(event, field) != value}
    return msgspec.structs.replace(event, **changed) if changed else event


@settings(max_examples=80, deadline=None)
@given(events(), st.one_of(st.just([]), st.lists(_TEXTS, min_size=len(dims.VISIT_FIELDS), max_size=len(dims.VISIT_FIELDS))),
       st.booleans())
def test_inherit_matches_the_per_field_comparison(event, carried, same):
    if same:  # the common case: the event carries its visit's values already
        carried = [getattr(event, field) for field in dims.VISIT_FIELDS]
    visit = Visit(start=0.0, last=0.0, day=0, pageviews=1, interactive=False, hint="", entry=[], exit_path=0, carried=carried)
    fast = _inherit(event, visit)
    assert fast == plain_inherit(event, visit)
    if same or not carried:
        assert fast is event  # nothing changed: no copy


# -- sketch bytes --------------------------------------------------------------------------------
@settings(max_examples=100, deadline=None)
@given(st.sets(st.integers(0, 2**64 - 1), max_size=300))
def test_exact_sketch_bytes_match_struct_packing(members):
    plain = b"".join(struct.pack(">Q", h) for h in sorted(members))
    assert exact_bytes(members) == plain
    sketch = Sketch(12, exact_limit=1000)
    sketch.add_many(members)
    data = sketch.to_bytes()
    assert data == b"E" + plain
    back = Sketch.from_bytes(data, exact_limit=1000)
    assert back.exact == members
    assert all(type(member) is int for member in back.exact)
