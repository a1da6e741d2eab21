"""Turns a batch of committed events into storage writes: counter deltas and sketch additions.

The aggregation step folds committed events into counters and sketches (and, through their
owners, open visits and goals) in one LMDB write transaction, after the commit that made them
durable (see :mod:`appliance.ingest.writer`). Counters and sketches are keyed per site, metric
and bucket: site totals in hour and day buckets, breakdown dimensions in day buckets (in the
site's time zone). The event log's row format is :mod:`appliance.events.codec`.
"""

from __future__ import annotations

import operator
from collections import defaultdict

from appliance import dimensions as dims
from appliance.ingest.aggregation_columns import aggregate_columns
from appliance.models import Event, EventKind
from appliance.periods import day_bucket, hour_bucket
from storage.keys import DAY, HOUR, pack_bucket_key
from storage.sketches import DIMENSION_PRECISION, SITE_PRECISION

_DIMENSION_ITEMS = tuple(
    (field, counter, sketch, name in dims.COUNT_EMPTY)
    for name, (field, counter, sketch) in dims.DIMENSIONS.items()
)

_DIMENSION_TEXTS = operator.attrgetter(*(field for field, _, _, _ in _DIMENSION_ITEMS))
#: from this many events on, a batch is counted column-wise (:mod:`appliance.ingest.aggregation_columns`)
COLUMNS_FROM = 64
_DIMENSION_METRICS = tuple((counter, sketch, count_empty) for _, counter, sketch, count_empty in _DIMENSION_ITEMS)


class BatchWrites:
    """The storage writes of one batch, gathered before the transaction opens.

    Keys are gathered as tuples and packed once per distinct key; visitor hashes are
    de-duplicated per sketch key before they reach the sketch: in sets (the per-event loop,
    goals), or in lists of distinct hashes (the column-wise path, which de-duplicates them
    itself).
    """

    def __init__(self) -> None:
        self.counter_deltas: dict[tuple, int] = defaultdict(int)
        self.sketch_members: dict[tuple, set[int]] = defaultdict(set)
        self.sketch_lists: dict[tuple, list[int]] = {}

    def all_members(self) -> dict[tuple, set[int]]:
        """Every sketch key's members, from the sets and the lists."""
        out = {key: set(members) for key, members in self.sketch_members.items()}
        for key, listed in self.sketch_lists.items():
            out.setdefault(key, set()).update(listed)
        return out

    @property
    def counters(self) -> dict[bytes, int]:
        return {pack_bucket_key(*key): delta for key, delta in self.counter_deltas.items()}

    @property
    def sketches(self) -> dict[bytes, tuple[int, list[int]]]:
        out = {}
        for key, members in self.sketch_members.items():
            precision = SITE_PRECISION if key[2] == dims.VISITORS else DIMENSION_PRECISION
            listed = self.sketch_lists.get(key)
            out[pack_bucket_key(*key)] = (precision, list(members if listed is None else members.union(listed)))
        for key, listed in self.sketch_lists.items():
            if key not in self.sketch_members:
                precision = SITE_PRECISION if key[2] == dims.VISITORS else DIMENSION_PRECISION
                out[pack_bucket_key(*key)] = (precision, listed)
        return out


def aggregate(events: list[Event], site_timezones: dict[int, str], intern, writes: BatchWrites | None = None) -> BatchWrites:
    """Counter deltas and sketch additions for a batch (added to ``writes`` if given).
    ``intern(text) -> id`` (in the txn). Events that joined an open visit already carry its
    properties (see :meth:`appliance.ingest.visits.VisitTable.apply`)."""
    writes = BatchWrites() if writes is None else writes
    counts = writes.counter_deltas
    members = writes.sketch_members
    if len(events) >= COLUMNS_FROM and aggregate_columns(events, site_timezones, intern, counts, writes.sketch_lists):
        return writes
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
            for text, (counter_metric, sketch_metric, count_empty) in zip(
                _DIMENSION_TEXTS(event), _DIMENSION_METRICS, strict=True
            ):
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
