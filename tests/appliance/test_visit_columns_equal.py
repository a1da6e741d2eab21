"""The visit table's column-wise batch path (single-event visitors, appliance/ingest/visit_columns.py)
against its per-event loop alone, on generated batches: the same open visits (in memory and in
LMDB), counter deltas, late marks, returned events and string ids, batch after batch.

The per-event loop is itself held to the plain visit table it replaced in
test_ingest_fast_paths.py (test_visit_table_matches_the_plain_visit_table).
"""

from __future__ import annotations

import random
from collections import defaultdict

from hypothesis import given, settings
from hypothesis import strategies as st

from appliance import dimensions as dims
from appliance.ingest import visit_columns
from appliance.ingest.visit_columns import SINGLES_FROM
from appliance.ingest.visit_state import _ENTRY_TEXTS
from appliance.ingest.visits import VisitTable
from appliance.models import Event, EventKind
from storage import Store

_DAY0 = 1_760_000_000.0  # a fixed moment: the buckets of a run never depend on the clock
_TEXTS = ["", "", "a", "b", "Chrome", "google", "(other)", "ünï"]
_FIELDS = sorted(({field for field, _, _ in dims.DIMENSIONS.values()} | set(dims.VISIT_FIELDS)) - {"path"})
_KINDS = [EventKind.PAGEVIEW] * 7 + [EventKind.CUSTOM] * 2 + [EventKind.ENGAGEMENT, EventKind.CONVERSION]


def generated_batch(rng: random.Random, size: int, visitors: int, start: float, span: float, hints: float) -> list[Event]:
    """``size`` events of ``visitors`` visitors on two sites over ``span`` seconds from ``start``."""
    out = []
    for _ in range(size):
        fields = {name: rng.choice(_TEXTS) for name in _FIELDS if name in Event.__struct_fields__}
        out.append(Event(
            kind=rng.choice(_KINDS),
            site_id=rng.choice((1, 1, 2)),
            timestamp=start + rng.uniform(0, span) // 1 + rng.choice((0.0, 0.25, 0.999)),
            name="pageview",
            visitor_id=rng.randrange(visitors),
            path=rng.choice(("/", "/a", "/b", "/c", "")),
            session_hint=rng.choice(("s1", "s2")) if rng.random() < hints else "",
            **fields,
        ))
    return out


def interner():
    ids: dict[str, int] = {"": 0}

    def intern(text: str) -> int:
        return ids.setdefault(text, len(ids))

    return intern, ids


@settings(max_examples=30, deadline=None)
@given(
    seed=st.integers(0, 2**32),
    batches=st.integers(1, 4),
    visitors=st.sampled_from([20, 200, 2_000]),
    span=st.sampled_from([60.0, 1_800.0, 7_200.0, 3 * 86_400.0]),
    hints=st.sampled_from([0.0, 0.1]),
    committed=st.sampled_from(["all", "some", "none"]),
    timezone=st.sampled_from(["UTC", "Asia/Kolkata"]),
)
def test_single_event_visitors_column_wise_match_the_per_event_loop(
    tmp_path_factory, seed, batches, visitors, span, hints, committed, timezone
):
    rng = random.Random(seed)
    stores = [Store(tmp_path_factory.mktemp("visit-columns") / name) for name in ("columns", "loop")]
    try:
        tables = [VisitTable(store, 1800) for store in stores]
        for table in tables:
            table.horizon = _DAY0 + span / 2  # events before it with no open visit are late
        interners = [interner(), interner()]
        start = _DAY0
        for _ in range(batches):
            batch = generated_batch(rng, rng.randrange(SINGLES_FROM, 4 * SINGLES_FROM), visitors, start, span, hints)
            start += rng.choice((0.0, span / 2, span, 4_000.0))  # later batches: joins, idle visits, late events
            # what the commit interned before the aggregation step: every text, some, or none
            texts = [text for event in batch for text in (*_ENTRY_TEXTS(event), event.path)]
            if committed != "all":
                texts = [text for text in texts if committed == "some" and rng.random() < 0.5]
            for intern, _ in interners:
                for text in texts:
                    intern(text)
            results = []
            for table, store, (intern, ids), known in zip(
                tables, stores, interners, (dict(interners[0][1]), None), strict=True
            ):
                counts = defaultdict(int)
                with store.env.begin(write=True) as txn:
                    out = table.apply(txn, batch, {1: timezone, 2: "UTC"}, counts, intern, known)
                table.committed()
                with store.env.begin() as txn:
                    stored = list(txn.cursor(db=store.db(b"visits")))
                nonzero = {key: value for key, value in counts.items() if value}
                results.append((out, nonzero, set(table.late), dict(table._open), dict(ids), stored))
            assert results[0] == results[1]
    finally:
        for store in stores:
            store.close()


def test_the_column_path_takes_the_single_event_visitors(tmp_path):
    """Not a vacuous comparison: in a batch of one event per visitor, no event is left to the loop."""
    batch = generated_batch(random.Random(7), 200, 10**9, _DAY0, 600.0, 0.0)
    intern, ids = interner()
    for event in batch:
        for text in (*_ENTRY_TEXTS(event), event.path):
            intern(text)
    pending: dict = {}
    rest = visit_columns.apply_singles(
        batch, {}, defaultdict(int), ids, list(batch), opened={}, pending=pending, late=set(), timeout=1800,
        horizon=0.0,
    )
    visits = [event for event in batch if event.kind is not EventKind.ENGAGEMENT]
    assert rest == set() and len(pending) == len(visits) > 150
