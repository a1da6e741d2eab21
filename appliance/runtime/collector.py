"""The garbage collector's policy in a process that writes (ingests, imports, aggregates).

CPython collects its youngest generation every 700 net container allocations, and every
tenth of those collections also the middle one; a full collection follows when enough
objects have survived. Ingest allocates many short-lived containers per event (events,
drafts, tuples, dicts) while the process holds many long-lived ones (open visits, cached
sketches, plugin tables), so with the default the collector ran ~590 times per 30,000 batch
events and took 10–13 % of the batch path's CPU (``scripts/bench_batch.py``; almost nothing it
collects is garbage: reference counting frees short-lived objects). A young-generation
threshold of 10,000 runs it ~20 times for the same work, about a third of the CPU, with the
same peak memory (reference cycles are rare here, and they are still collected, a little
later). The middle and old thresholds are left as they are.
"""

from __future__ import annotations

import gc

#: collections of the young generation after this many net container allocations (at least)
YOUNG_THRESHOLD = 10_000


def apply() -> tuple[int, int, int]:
    """Raise the young generation's threshold to :data:`YOUNG_THRESHOLD` (never lower it);
    returns the thresholds now in force."""
    young, middle, old = gc.get_threshold()
    if young and young < YOUNG_THRESHOLD:  # 0: collection disabled by the embedder, left so
        gc.set_threshold(YOUNG_THRESHOLD, middle, old)
    return gc.get_threshold()
