"""The batch path's fast code against the plain code it replaced, on varied input (hypothesis).

Each optimisation of the ingest batch path (scripts/bench_batch.py measures them) must give
exactly what the straightforward per-field code gave: the same event-log rows, the same
counter deltas and sketch members, the same "(other)" decisions, the same inherited visit
properties, the same sketch bytes.
"""

from __future__ import annotations

import struct
from collections import defaultdict

import msgspec
import numpy as np
import pluggy
from hypothesis import given, settings
from hypothesis import strategies as st

from appliance import dimensions as dims
from appliance.events.codec import STRING_FIELDS, encode_event, encode_events, session_hash
from appliance.hooks.manager import hot_path_calls
from appliance.ingest import cardinality as cardinality_module
from appliance.ingest import visits as visits_module
from appliance.ingest.aggregation import _DIMENSION_ITEMS, COLUMNS_FROM, BatchWrites, aggregate
from appliance.ingest.aggregation_columns import aggregate_columns, spread_visit_deltas
from appliance.ingest.cardinality import OTHER, CardinalityGuard
from appliance.ingest.visit_state import changes_nothing_inside
from appliance.ingest.visits import _VISIT_KEY, Visit, VisitTable, _inherit, other_session, seconds
from appliance.models import Event, EventKind
from appliance.periods import day_bucket, hour_bucket
from storage import Store
from storage.keys import DAY, HOUR, pack_bucket_key
from storage.sketches import (
    DIMENSION_PRECISION,
    SITE_PRECISION,
    Sketch,
    Sketches,
    exact_bytes,
    new_hll,
)

_TEXTS = st.sampled_from(["", "", "a", "b", "Chrome", "/", "/pricing", "google", "(other)", "ünï"])
_STRING_FIELDS = sorted(set(STRING_FIELDS) - {"name", "currency", "path"})
_SPREAD_FROM = visits_module.SPREAD_FROM
_BOUND_COLUMNS_FROM = cardinality_module.COLUMNS_FROM
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
    batched, batched_ids = interner()
    rows = encode_events(batch, batched)
    for event, row in zip(batch, rows, strict=True):
        assert encode_event(event, fast) == row == plain_encode(event, plain)
    assert fast_ids == plain_ids == batched_ids  # interned in the same order: the same string ids


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
    assert writes.all_members() == members


@st.composite
def varied_events(draw) -> Event:
    """Events for the column-wise path: empty names and paths, several sites, buckets over
    years (the sorting group-by) or hours (the dense one), large amounts."""
    event = draw(events())
    spread = draw(st.sampled_from([3600, 3 * 365 * 86400]))
    return msgspec.structs.replace(
        event,
        site_id=draw(st.sampled_from([1, 2, 7, 2**31])),
        timestamp=_DAY0 + draw(st.integers(0, spread)) + draw(st.sampled_from([0.0, 0.5])),
        name=draw(st.sampled_from(["pageview", "Signup", ""])),
        path=draw(st.sampled_from(["/", "/a", ""])),
        visitor_id=draw(st.sampled_from([0, 1, 2**64 - 1, draw(st.integers(0, 2**64 - 1))])),
        revenue=draw(st.sampled_from([0, 1900, -5, 2**61])),
        engaged_ms=draw(st.sampled_from([0, 7, 2**53 + 1])),
    )


@settings(max_examples=80, deadline=None)
@given(st.lists(varied_events(), min_size=1, max_size=90), st.sampled_from(["UTC", "Asia/Kolkata", "America/St_Johns"]))
def test_column_wise_aggregation_matches_the_per_field_aggregation(batch, timezone):
    timezones = {1: timezone, 7: "Europe/Berlin"}
    fast_intern, fast_ids = interner()
    plain_intern, plain_ids = interner()
    writes = BatchWrites()
    taken = aggregate_columns(batch, timezones, fast_intern, writes.counter_deltas, writes.sketch_lists)
    counts, members = plain_aggregate(batch, timezones, plain_intern)
    if not taken:  # left to the loop (amounts past its bound): nothing written
        assert not writes.counter_deltas and not writes.sketch_lists
        assert any(abs(event.revenue) >= 2**61 or event.engaged_ms > 2**53 for event in batch)
        return
    assert fast_ids == plain_ids  # interned in the same order: the same string ids
    assert dict(writes.counter_deltas) == counts
    assert writes.all_members() == members
    assert all(len(listed) == len(set(listed)) for listed in writes.sketch_lists.values())


@settings(max_examples=15, deadline=None)
@given(st.lists(events(), min_size=8, max_size=16), st.integers(0, 2**64 - 1), st.sampled_from(["UTC", "Asia/Kolkata"]))
def test_large_batches_are_aggregated_column_wise_alike(few, step, timezone):
    # a large batch from a few drawn events: copies with other visitors, some of them repeated
    batch = [msgspec.structs.replace(event, visitor_id=(event.visitor_id + step * (copy % 5)) % 2**64)
             for copy in range(COLUMNS_FROM // 8 + 1) for event in few]
    timezones = {1: timezone, 2: "UTC"}
    fast_intern, fast_ids = interner()
    plain_intern, plain_ids = interner()
    writes = aggregate(batch, timezones, fast_intern)
    counts, members = plain_aggregate(batch, timezones, plain_intern)
    assert writes.sketch_lists and not writes.sketch_members  # the column-wise path ran
    assert fast_ids == plain_ids
    assert dict(writes.counter_deltas) == counts
    assert writes.all_members() == members
    packed = {key: (precision, sorted(hashes)) for key, (precision, hashes) in writes.sketches.items()}
    assert packed == {
        pack_bucket_key(*key): (SITE_PRECISION if key[2] == dims.VISITORS else DIMENSION_PRECISION, sorted(hashes))
        for key, hashes in members.items()
    }


_ENTRY = st.lists(st.sampled_from([0, 0, 1, 2, 7, 2**32 - 1]), min_size=len(dims.DIMENSIONS), max_size=len(dims.DIMENSIONS))


@settings(max_examples=60, deadline=None)
@given(st.dictionaries(
    st.tuples(st.sampled_from([1, 3, 2**31]), st.integers(20_000, 20_400),
              st.sampled_from([dims.VISITS, dims.BOUNCES, dims.VISIT_DURATION]), _ENTRY.map(tuple)),
    st.sampled_from([-1, 0, 1, 3, 1800, 2**52]), min_size=1, max_size=200,
))
def test_spread_visit_deltas_matches_the_per_key_spread(deltas):
    plain: dict[tuple, int] = defaultdict(int)
    for (site_id, day, metric, entry), delta in deltas.items():
        VisitTable._count(plain, site_id, day, entry, metric, delta)
    fast: dict[tuple, int] = defaultdict(int)
    if not spread_visit_deltas(deltas, fast):
        # only amounts whose sums could pass int64's safe range are left to the per-key spread
        rows = len(deltas) * (len(dims.DIMENSIONS) + 1)
        assert max(map(abs, deltas.values())) >= (1 << 62) // rows
        assert not fast
        return
    assert dict(fast) == dict(plain)


# -- the cardinality bound -----------------------------------------------------------------------
class _NoCounters:
    """Counters of a fresh store: no day has values yet (the guard reads them lazily)."""

    def scan(self, txn, site, granularity, metric, first, last):
        return iter(())


def plain_bound(guard: CardinalityGuard, events_, timezones, intern, max_values):
    """The guard's check as it was: ``_values`` (which also forgets old days) per field."""
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
            values = guard._values(None, event.site_id, counter, day)
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
@given(st.lists(st.lists(events(), max_size=10), max_size=3), st.sampled_from([1, 2, 3, 4, 1000]),
       st.sampled_from([cardinality_module.COLUMNS_FROM, 1]), st.sampled_from([{}, {1: "Asia/Kolkata"}]))
def test_cardinality_bound_matches_the_per_field_check(batches, max_values, columns_from, timezones):
    batches = batches + batches[-1:]  # the last batch again: its days' sets are in memory then
    guard = CardinalityGuard(_NoCounters(), max_values)
    fast_intern, fast_ids = interner()
    plain_intern, plain_ids = interner()
    plain_guard = CardinalityGuard(_NoCounters(), max_values)
    cardinality_module.COLUMNS_FROM = columns_from  # 1: every batch checked column-wise first
    try:
        for batch in batches:  # batch by batch, as commits call it: the sets carry over between batches
            fast = guard.apply(None, batch, timezones, fast_intern)
            assert fast == plain_bound(plain_guard, batch, timezones, plain_intern, max_values)
            assert fast_ids == plain_ids
    finally:
        cardinality_module.COLUMNS_FROM = _BOUND_COLUMNS_FROM
    assert guard._seen == plain_guard._seen


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


@settings(max_examples=100, deadline=None)
@given(st.lists(st.integers(0, 2**64 - 1), max_size=60), st.sampled_from([12, 14]), st.integers(0, 2**32))
def test_few_hashes_reach_the_registers_numpy_gives(hashes, precision, seed):
    start = np.random.default_rng(seed).integers(0, 8, 1 << precision, dtype=np.int8)
    fast = Sketch(precision)
    fast.exact, fast.hll = None, new_hll(precision, start.copy())
    fast._hll_add(list(hashes))  # the plain-Python path below _SMALL_ADD
    plain = Sketch(precision)
    plain.exact, plain.hll = None, new_hll(precision, start.copy())
    plain._hll_add(np.array(hashes, dtype=np.uint64))  # the vectorised path
    assert np.array_equal(fast.hll.M, plain.hll.M)
    assert fast.to_bytes() == plain.to_bytes()


# -- visits ----------------------------------------------------------------------------------
class PlainVisitTable(VisitTable):
    """The visit table as it was before the batch fast paths: each event's visit copied
    whether or not this batch made it, every text interned by call, a getattr per field."""

    def _current(self, key):
        if key in self._pending:
            return self._pending[key]
        return self._open.get(key)

    def apply(self, txn, events: list[Event], timezones: dict[int, str], counts, intern) -> list[Event]:
        """Update visits for a batch (in ``txn``), adding visit counter deltas to ``counts``.

        Returns the batch (in its order) with each event that joined an open visit carrying
        that visit's properties (:data:`~appliance.dimensions.VISIT_FIELDS`, from its first
        event), as the counters of the batch must count it. Changes stay pending until
        :meth:`committed`; :meth:`rolled_back` forgets them.
        """
        self._pending.clear()
        self.late = late = set()
        horizon = self.horizon
        dimension_items = tuple(dims.DIMENSIONS.items())
        out = list(events)
        for index in sorted(range(len(events)), key=lambda i: events[i].timestamp):
            event = events[index]
            if event.kind is EventKind.ENGAGEMENT:
                continue
            key = (event.site_id, event.visitor_id)
            visit = self._current(key)
            timestamp = event.timestamp
            is_pageview = event.kind is EventKind.PAGEVIEW
            page_id = intern(event.path)
            if visit is None:
                if timestamp < horizon or not self.closed.in_order(event.site_id, event.visitor_id, timestamp):
                    self._mark_late(late, event, visit, timezones)
            elif timestamp < visit.last and not changes_nothing_inside(event, visit, is_pageview):
                self._mark_late(late, event, visit, timezones)
            if visit is not None and timestamp < visit.start - self.timeout:
                continue  # an old back-filled event: counted in totals, not joined to a visit
            new_visit = (
                visit is None
                or timestamp - visit.last > self.timeout
                or other_session(event.session_hint, visit.hint)
            )
            if new_visit:
                if visit is not None and timestamp < visit.last:
                    self.closed.note(event.site_id, event.visitor_id, visit.last)
                day = day_bucket(timestamp, timezones.get(event.site_id, "UTC"))
                entry = []
                for name, (field, _, _) in dimension_items:
                    entry.append(page_id if name == "page" else intern(getattr(event, field)))
                visit = Visit(
                    start=timestamp,
                    last=timestamp,
                    day=day,
                    pageviews=1 if is_pageview else 0,
                    interactive=not is_pageview,
                    hint=event.session_hint,
                    entry=entry,
                    exit_path=page_id,
                    carried=[getattr(event, field) for field in dims.VISIT_FIELDS],
                )
                bounce = 1 if is_pageview else 0
                self._count(counts, event.site_id, visit, dims.VISITS, 1)
                if bounce:
                    self._count(counts, event.site_id, visit, dims.BOUNCES, 1)
                if page_id:
                    counts[(event.site_id, DAY, dims.EXIT_PAGES, day, page_id)] += 1
                self._pending[key] = visit
                continue
            out[index] = _inherit_plain(event, visit)
            visit = msgspec.structs.replace(visit, entry=list(visit.entry))  # never mutate the committed copy
            was_bounce = visit.pageviews == 1 and not visit.interactive
            gap = max(0.0, timestamp - visit.last)
            if gap:
                self._count(counts, event.site_id, visit, dims.VISIT_DURATION, seconds(timestamp) - seconds(visit.last))
                visit.last = timestamp
            if is_pageview and visit.pageviews == 0:
                # The first page view: it becomes the entry page of a visit begun by another event.
                self._move_entry_page(counts, event.site_id, visit, page_id)
            # The exit page: the last page view's page, or the last event's without any.
            if (is_pageview or visit.pageviews == 0) and page_id != visit.exit_path:
                if visit.exit_path:
                    counts[(event.site_id, DAY, dims.EXIT_PAGES, visit.day, visit.exit_path)] -= 1
                if page_id:
                    counts[(event.site_id, DAY, dims.EXIT_PAGES, visit.day, page_id)] += 1
                visit.exit_path = page_id
            if is_pageview:
                visit.pageviews += 1
            else:
                visit.interactive = True
            if was_bounce and (visit.pageviews > 1 or visit.interactive):
                self._count(counts, event.site_id, visit, dims.BOUNCES, -1)
            self._pending[key] = visit
        encoder = msgspec.msgpack.Encoder()
        for (site_id, visitor_id), visit in self._pending.items():
            txn.put(_VISIT_KEY.pack(site_id, visitor_id), encoder.encode(visit), db=self._db)
        return out

    @staticmethod
    def _count(counts, site_id: int, visit: Visit, metric: int, delta: int) -> None:
        day = visit.day
        counts[(site_id, DAY, metric, day, 0)] += delta
        for offset, value_id in enumerate(visit.entry):
            if value_id:
                counts[(site_id, DAY, metric + 1 + offset, day, value_id)] += delta


def _inherit_plain(event, visit):
    return plain_inherit(event, visit)


@st.composite
def visitor_events(draw) -> list[Event]:
    """Events of a few visitors over a few hours, sometimes out of order or with session ids."""
    out = []
    for _ in range(draw(st.integers(0, 25))):
        event = draw(events())
        out.append(msgspec.structs.replace(
            event,
            site_id=1,
            visitor_id=draw(st.integers(1, 4)),
            timestamp=_DAY0 + draw(st.integers(0, 3)) * 1200 + draw(st.integers(0, 1500)),
            session_hint=draw(st.sampled_from(["", "", "s1", "s2"])),
        ))
    return out


@settings(max_examples=40, deadline=None)
@given(st.lists(visitor_events(), min_size=1, max_size=4), st.sampled_from(["UTC", "Asia/Kolkata"]),
       st.sampled_from([visits_module.SPREAD_FROM, 1]))
def test_visit_table_matches_the_plain_visit_table(tmp_path_factory, batches, timezone, spread_from):
    stores = [Store(tmp_path_factory.mktemp("visits") / name) for name in ("fast", "plain")]
    visits_module.SPREAD_FROM = spread_from  # 1: every batch's deltas spread column-wise
    try:
        tables = [VisitTable(stores[0], 1800), PlainVisitTable(stores[1], 1800)]
        for table in tables:
            table.horizon = _DAY0 + 1000  # some events are late: marked, as before
        interners = [interner(), interner()]
        for batch in batches:
            results = []
            for table, store, (intern, ids) in zip(tables, stores, interners, strict=True):
                counts = defaultdict(int)
                with store.env.begin(write=True) as txn:
                    out = table.apply(txn, batch, {1: timezone}, counts, intern)
                table.committed()
                results.append((out, dict(counts), set(table.late), dict(table._open), dict(ids)))
            assert results[0] == results[1]
    finally:
        visits_module.SPREAD_FROM = _SPREAD_FROM
        for store in stores:
            store.close()


# -- hook calls ----------------------------------------------------------------------------------
def test_direct_hook_calls_pass_what_pluggy_passes():
    spec = pluggy.HookspecMarker("fastpath")
    impl = pluggy.HookimplMarker("fastpath")

    class Specs:
        @spec
        def enrich(self, event, context, extra):
            """Test hook."""

    class Both:
        @impl
        def enrich(self, context, event):
            return ("both", event, context)

    class One:
        @impl
        def enrich(self, extra):
            return ("one", extra)

    class Nothing:
        @impl
        def enrich(self):
            return ("none",)

    manager = pluggy.PluginManager("fastpath")
    manager.add_hookspecs(Specs)
    for plugin in (Both(), One(), Nothing()):
        manager.register(plugin)
    calls = hot_path_calls(manager.hook.enrich)
    assert calls is not None
    direct = [call(event=1, context=2, extra=3) for call in calls]
    assert direct == manager.hook.enrich(event=1, context=2, extra=3)
    assert direct == [("none",), ("one", 3), ("both", 1, 2)]
    positional = hot_path_calls(manager.hook.enrich, ("event", "context", "extra"))
    assert [call(1, 2, 3) for call in positional] == direct
    assert [call(2, 1, 3) for call in hot_path_calls(manager.hook.enrich, ("context", "event", "extra"))] == direct


@settings(max_examples=60, deadline=None)
@given(st.sampled_from([12, 14]), st.integers(0, 2**32), st.floats(0, 1))
def test_register_sketch_bytes_match_the_int8_nonzero_encoding(precision, seed, fill):
    rng = np.random.default_rng(seed)
    registers = np.where(rng.random(1 << precision) < fill, rng.integers(1, 40, 1 << precision), 0).astype(np.int8)
    sketch = Sketch(precision)
    sketch.exact, sketch.hll = None, new_hll(precision, registers)
    filled = np.flatnonzero(registers)
    if len(filled) * 3 < len(registers):
        plain = b"S" + bytes([precision]) + filled.astype(">u2").tobytes() + registers[filled].astype(np.uint8).tobytes()
    else:
        plain = b"R" + bytes([precision]) + registers.tobytes()
    assert sketch.to_bytes() == plain
    assert np.array_equal(Sketch.from_bytes(plain).hll.M, registers)


@settings(max_examples=25, deadline=None)
@given(st.lists(st.dictionaries(
    st.tuples(st.sampled_from([1, 2]), st.integers(20_000, 20_040), st.integers(0, 3)),
    st.tuples(st.integers(0, 2**32), st.sampled_from([1, 30, 60, 300])),  # (seed, how many hashes)
    min_size=1, max_size=6,
), min_size=2, max_size=3))
def test_sketch_writes_match_adding_to_each_sketch(tmp_path_factory, rounds):
    """Sketches.add (registers and ranks computed once per list of hashes for a day and its
    week and month) writes the bytes that adding each key's hashes to its sketch gives."""
    store = Store(tmp_path_factory.mktemp("sketches") / "db")
    try:
        sketches = Sketches(store, rolled_up={1: 14, 2: 12})
        plain: dict[bytes, bytes] = {}
        for additions in rounds:
            batch = {
                pack_bucket_key(1, DAY, metric, day, dimension): (
                    14 if metric == 1 else 12,
                    np.random.default_rng(seed).integers(0, 2**64 - 1, size, dtype=np.uint64, endpoint=True).tolist(),
                )
                for (metric, day, dimension), (seed, size) in additions.items()
            }
            for key, (precision, hashes) in sketches._with_rollups(batch).items():
                sketch = Sketch.from_bytes(plain[key]) if key in plain else Sketch(precision)
                sketch.precision = precision  # a stored exact set does not say its precision
                sketch.add_many(list(hashes))
                plain[key] = sketch.to_bytes()
            with store.env.begin(write=True) as txn:
                sketches.add(txn, batch)
            sketches.committed()
        with store.env.begin() as txn:
            stored = dict(txn.cursor(db=store.db(b"sketches")))
        assert stored == plain
    finally:
        store.close()
