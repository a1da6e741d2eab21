"""One memory budget for every cache the appliance keeps (``[memory] budget_mb``).

The budget is split between the caches that grow with traffic, by a fixed share each, and
turned into each cache's own bound with a measured size per entry:

- decoded column blocks (filtered queries): bytes, least recently used dropped first;
- open visits (the visit table; idle visits are closed first when it is full): entries,
  about 1.1 KB each (tracemalloc, a visit with 20 entry values and its visit properties);
  the log of their changes on disk is folded at ~256 bytes per entry of this bound, and
  its bookkeeping in memory (:mod:`appliance.ingest.visit_changes`: each logged visit's
  latest sequence, each log transaction's keys) adds ~60 bytes per entry (measured after
  ``scripts/bench_batch.py``: 1.8 MB for a full 7.8 MB log);
- closed visits (each visitor's latest closed visit's end, :mod:`appliance.ingest.closed_visits`:
  an event after it is judged in order or late exactly, instead of by one horizon): entries,
  about 110 bytes each (tracemalloc); past it the oldest are dropped and their visitors' events judged by the
  horizon again (marked dirty when older: correct, re-derived once more);
- decoded sketches written back by the aggregation step: bytes, each sketch's estimated
  size (an exact set of up to 256 visitors takes up to ~17 KB, a precision-12 register array
  4 KB, a site's precision-14 one 16 KB; the soak found a bound in entries, at an assumed
  6 KB each, let the cache grow to three times its share);
- the string table's in-memory maps (text to id, id to text; the LMDB copy is complete):
  entries, about 300 bytes each;
- kept sums of closed day ranges (the counted path's breakdowns, :mod:`storage.range_sums`):
  bytes, each entry's arrays, least recently used dropped first;
- HyperLogLog estimates kept by their registers' digest (:mod:`appliance.query.estimates`):
  entries, about 120 bytes each (a 16-byte digest, an int and the ordered dict's entry).
- the aggregation backlog (events committed but not yet folded into counters, sketches and
  visits, :mod:`appliance.ingest.recording`): events, about 1.2 KB each (an ``Event`` as a
  request builds it, its strings its own); past it the writer folds before it commits more,
  so a bulk load waits for the aggregation step instead of queueing ahead of it.

The interpreter, the libraries and LMDB's page cache (the kernel's, shared, and given back
under pressure) come on top: about 110 MB for ``footfall serve`` idle. The default, 160 MB,
keeps the whole server near 300 MB under steady traffic; a bulk load of the seed's month, with
the store's mapped pages, peaks near 650 MB (README *Performance*): a 1 GB server, with room.
"""

from __future__ import annotations

import msgspec

DEFAULT_BUDGET_MB = 160
MIN_BUDGET_MB = 32

SHARES = {
    "column_blocks": 0.39, "open_visits": 0.20, "closed_visits": 0.04, "sketches": 0.15, "strings": 0.15, "range_sums": 0.017,
    "estimates": 0.003, "aggregation_backlog": 0.05,
}
BYTES_PER_VISIT = 1_100
BYTES_PER_CLOSED_VISIT = 110
BYTES_PER_STRING = 300
BYTES_PER_ESTIMATE = 120
BYTES_PER_WAITING_EVENT = 1_200
MIN_BACKLOG_EVENTS = 1_000  # at least a batch request's worth (ingest.max_batch_items)


class MemoryPlan(msgspec.Struct, frozen=True, kw_only=True):
    """Each cache's bound, from one budget."""

    budget_bytes: int
    column_cache_bytes: int
    max_open_visits: int
    max_closed_visits: int = 500_000
    sketch_cache_bytes: int
    string_cache_entries: int
    range_sums_bytes: int = 0
    estimates_kept: int = 4096
    max_waiting_events: int = 0  # 0: unbounded (a plan built by hand)


def plan_memory(budget_mb: int, max_open_visits: int) -> MemoryPlan:
    """Bounds for a budget of ``budget_mb`` MiB; ``max_open_visits`` (the sites setting) caps
    the visit table further when it is lower than the budget's share."""
    budget = max(budget_mb, MIN_BUDGET_MB) << 20
    return MemoryPlan(
        budget_bytes=budget,
        column_cache_bytes=int(budget * SHARES["column_blocks"]),
        max_open_visits=max(1_000, min(max_open_visits, int(budget * SHARES["open_visits"]) // BYTES_PER_VISIT)),
        max_closed_visits=int(budget * SHARES["closed_visits"]) // BYTES_PER_CLOSED_VISIT,
        sketch_cache_bytes=int(budget * SHARES["sketches"]),
        string_cache_entries=max(10_000, int(budget * SHARES["strings"]) // BYTES_PER_STRING),
        range_sums_bytes=int(budget * SHARES["range_sums"]),
        estimates_kept=int(budget * SHARES["estimates"]) // BYTES_PER_ESTIMATE,
        max_waiting_events=max(MIN_BACKLOG_EVENTS, int(budget * SHARES["aggregation_backlog"]) // BYTES_PER_WAITING_EVENT),
    )
