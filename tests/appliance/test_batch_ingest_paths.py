"""Fast paths of the batch ingest path (issue 17, third round) held to the plain code they replace.

Each test feeds the same generated input to the fast path and to the plain implementation
(kept here, as it was before) and compares everything they write.
"""

from __future__ import annotations

import itertools
import random
import time
from collections import defaultdict

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from appliance import dimensions as dims
from appliance.events.sessions import Sessions
from appliance.ingest.aggregation_columns import spread_visit_deltas
from appliance.ingest.visits import Visit, VisitTable
from appliance.models import Event, EventKind
from appliance.periods import day_bucket
from storage import Store
from storage.keys import DAY, MONTH, WEEK, pack_bucket_key
from storage.sketches import Sketch, Sketches

# -- sketches: a day's week and month get only the hashes that changed the day -------------------


class PlainSketches(Sketches):
    """Sketches.add as it was: every hash of a rolled-up day added to its week and month too."""

    def add(self, txn, additions):
        if self._uncommitted:
            self._clear_cache()
        self._uncommitted = True
        cursor = txn.cursor(db=self._db)
        for key, (precision, hashes) in sorted(self._with_rollups(additions).items()):
            raw = cursor.get(key)
            sketch = Sketch.from_bytes(raw) if raw is not None else Sketch(precision)
            sketch.precision = precision
            if sketch.add_many(list(hashes)) or raw is None:
                cursor.put(key, sketch.to_bytes())


_VISITORS = st.integers(0, 2**64 - 1)


@st.composite
def sketch_rounds(draw) -> list[dict[tuple[int, int, int], list[int]]]:
    """A few batches of (metric, day, dimension) -> distinct visitor hashes: days across a week
    and a month boundary, small and large lists (exact sets that turn into HyperLogLogs, the
    few-hash and the numpy paths), visitors seen again in later batches."""
    pool = draw(st.lists(_VISITORS, min_size=1, max_size=40, unique=True))
    rounds = []
    for _ in range(draw(st.integers(1, 4))):
        batch = {}
        for key in draw(st.lists(st.tuples(st.sampled_from([1, 2, 7]), st.sampled_from([20_086, 20_088, 20_089, 20_120]),
                                           st.integers(0, 2)), min_size=1, max_size=5, unique=True)):
            seed, size, reuse = draw(st.integers(0, 2**32)), draw(st.sampled_from([1, 5, 49, 300])), draw(st.booleans())
            fresh = np.random.default_rng(seed).integers(0, 2**64 - 1, size, dtype=np.uint64, endpoint=True).tolist()
            hashes = list(dict.fromkeys((pool if reuse else []) + fresh))
            batch[key] = hashes
        rounds.append(batch)
    return rounds


@settings(max_examples=60, deadline=None)
@given(sketch_rounds(), st.sampled_from([24 << 20, 6_000]))
def test_rollups_fed_only_what_changed_a_day_match_every_hash_added(tmp_path_factory, rounds, cache_bytes):
    """Metric 1 (precision 14) and 2 (precision 12) are rolled up, 7 is not; a small cache
    (6,000 bytes) evicts between keys, so sketches are read back from the transaction too."""
    stores = [Store(tmp_path_factory.mktemp("sketches") / name) for name in ("fast", "plain")]
    try:
        tables = [Sketches(stores[0], cache_bytes=cache_bytes, rolled_up={1: 14, 2: 12}),
                  PlainSketches(stores[1], rolled_up={1: 14, 2: 12})]
        for batch in rounds:
            additions = {
                pack_bucket_key(1, DAY, metric, day, dimension): (14 if metric == 1 else 12, hashes)
                for (metric, day, dimension), hashes in batch.items()
            }
            for table, store in zip(tables, stores, strict=True):
                with store.env.begin(write=True) as txn:
                    table.add(txn, dict(additions))
                table.committed()
        contents = []
        for store in stores:
            with store.env.begin() as txn:
                contents.append(dict(txn.cursor(db=store.db(b"sketches"))))
        assert contents[0] == contents[1]
        if any(metric != 7 for batch in rounds for metric, _, _ in batch):
            assert {WEEK, MONTH} <= {key[4] for key in contents[0]}  # the rollups were written
    finally:
        for store in stores:
            store.close()


def test_a_day_that_changes_nothing_leaves_its_week_and_month_unread(tmp_path):
    """The point of it: a batch whose visitors the day has already counted does not touch the
    day's week and month (neither read nor decoded nor written)."""
    store = Store(tmp_path / "db")
    try:
        sketches = Sketches(store, rolled_up={1: 14})
        day = pack_bucket_key(1, DAY, 1, 20_088, 0)
        hashes = list(range(1, 400))  # a HyperLogLog (over 256 members)
        with store.env.begin(write=True) as txn:
            sketches.add(txn, {day: (14, hashes)})
        sketches.committed()
        sketches._clear_cache()
        with store.env.begin(write=True) as txn:
            sketches.add(txn, {day: (14, hashes[:100])})
        sketches.committed()
        assert list(sketches._cache) == [day]
    finally:
        store.close()


# -- visits: deltas spread without a dict of transposed keys ------------------------------------
_ENTRY = st.lists(st.sampled_from([0, 0, 1, 2, 7, 2**32 - 1, 2**40]), min_size=len(dims.DIMENSIONS),
                  max_size=len(dims.DIMENSIONS))


@settings(max_examples=80, deadline=None)
@given(st.dictionaries(
    st.tuples(st.sampled_from([1, 3, 2**31]), st.sampled_from([20_000, 20_001, 20_400, 2**20]),
              st.sampled_from([dims.VISITS, dims.BOUNCES, dims.VISIT_DURATION]), _ENTRY.map(tuple)),
    st.sampled_from([-1, 0, 1, 3, 1800, 2**52]), min_size=1, max_size=300,
))
def test_spread_deltas_match_the_per_key_spread_with_raw_and_numbered_values(deltas):
    """Large value ids and day spans take the path that numbers the values densely first,
    small ones the one that keys rows by the ids themselves: both as the per-key loop."""
    plain: dict[tuple, int] = defaultdict(int)
    for (site_id, day, metric, entry), delta in deltas.items():
        VisitTable._count(plain, site_id, day, entry, metric, delta)
    fast: dict[tuple, int] = defaultdict(int)
    assert spread_visit_deltas(deltas, fast)
    assert dict(fast) == dict(plain)
    assert set(itertools.chain.from_iterable(entry for *_, entry in deltas)) - {0} <= {key[4] for key in fast}


# -- re-derivation: the open visits of a window, column by column -------------------------------


def plain_open_visits(rederiver, site_id, timezone, frame, sessions):
    """Rederiver._open_visits as it was: a numpy scalar per visit and field, a text lookup
    per visit and visit property."""
    if not sessions.count:
        return {}
    hashes = sessions.visitor_hash
    end = sessions.end
    order = np.lexsort((end, hashes))
    ordered = hashes[order]
    last = order[np.append(ordered[1:] != ordered[:-1], True)]
    chosen = []
    for index, visitor in zip(last.tolist(), hashes[last].tolist(), strict=True):
        current = rederiver._visits.open_visit(site_id, visitor)
        if current is not None and int(end[index]) >= int(current.last * 1000) - 1:
            chosen.append(index)
    if not chosen:
        return {}
    chosen = np.array(chosen, np.int64)
    rows = sessions.first_row[chosen]
    entry = [
        sessions.entry_page[chosen] if name == "page" else frame.values_at(field, rows)
        for name, (field, _, _) in dims.DIMENSIONS.items()
    ]
    carried = [frame.values_at(field, rows).tolist() for field in dims.VISIT_FIELDS]
    hints = frame.values_at("session", rows).tolist()
    text = rederiver._strings.text
    out = {}
    for position, index in enumerate(chosen.tolist()):
        start = int(sessions.start[index]) / 1000
        out[int(hashes[index])] = Visit(
            start=start,
            last=int(end[index]) / 1000,
            day=day_bucket(start, timezone),
            pageviews=int(sessions.pageviews[index]),
            interactive=bool(sessions.interactive[index]),
            hint=f"#{hints[position]:016x}" if hints[position] else "",
            entry=[int(ids[position]) for ids in entry],
            exit_path=int(sessions.exit_page[index]),
            carried=[text(ids[position]) for ids in carried],
        )
    return out


_SOURCES = [("", "Direct", ""), ("Google", "Organic Search", "https://www.google.com/"),
            ("news.example", "Referral", "https://news.example/a")]


def test_rederived_open_visits_match_the_per_visit_build(make_appliance, monkeypatch):
    """Yesterday's events of 60 visitors sent shuffled in batches (as an import does): every
    window a visits-dirty day is re-derived over gives the same open visits as before."""
    appliance = make_appliance()
    site = appliance.sites.add("rederive.test")
    rng = random.Random(3)
    start = (time.time() // 86400 - 1) * 86400 + 3600
    events = []
    for visitor in range(1, 61):
        moment = start + rng.randrange(0, 20 * 3600)
        for index in range(rng.randint(1, 6)):
            source, channel, referrer = rng.choice(_SOURCES)
            kind = EventKind.CUSTOM if rng.random() < 0.2 else EventKind.PAGEVIEW
            events.append(Event(
                kind=kind, site_id=site.id, timestamp=moment, name="pageview" if kind is EventKind.PAGEVIEW else "Signup",
                visitor_id=visitor * 7919 + 1, path=rng.choice(["/", "/pricing", "/docs"]), source=source,
                channel=channel, referrer=referrer, referrer_host=source.lower(), country=rng.choice(["DE", "FR", ""]),
                session_hint=rng.choice(["", "", "s1"]) if index == 0 else "",
            ))
            moment += rng.choice([60, 900, 1700, 2000, 4000])
    rng.shuffle(events)
    rederiver = appliance.rederiver
    built = []
    fast_open_visits = rederiver._open_visits

    def compared(derived):
        fast = fast_open_visits(derived)
        window = derived.window  # read again: the window holds no frame
        frame = appliance.columns.frame(derived.site_id, window.lo, window.hi)
        sessions = Sessions(frame, rederiver.timeout_ms)
        assert fast == plain_open_visits(rederiver, derived.site_id, derived.timezone, frame, sessions)
        built.append(len(fast))
        return fast

    monkeypatch.setattr(rederiver, "_open_visits", compared)
    for lo in range(0, len(events), 25):
        appliance.record_sync(events[lo:lo + 25])
    assert rederiver.days_rederived > 0 and sum(built) > 0
