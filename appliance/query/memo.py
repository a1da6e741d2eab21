"""Answers of the filtered path, kept while the events they were computed from are unchanged.

A filtered report scans every row of its period (:mod:`appliance.query.scans`): tens of
milliseconds per million events even with every column block in memory. Matomo archives its
reports for the same reason. Here an answer is kept under a key that pins everything it was
computed from, so a kept answer is always exactly what a new scan would give:

- the report's name and arguments (the query: site with its time zone, dates, interval,
  filters; a breakdown's dimension and limit);
- the period's *frame key* (:meth:`ColumnStore.frame_key <appliance.events.columns.ColumnStore.frame_key>`):
  per day of the period, the block's identity (its stored generation and the day's event
  count, as :attr:`appliance.events.blocks.Block.identity`) and the part of the day in range,
  read from counters and pointers without building a block. Any
  event acknowledged for one of those days, late ones included, changes the day's count; a
  compaction or re-derivation changes the generation;
- the site's goal and segment definitions (a filter may name either), and for a query through
  a segment the frame key of the 30 days before the period too (a ``visitor_type`` condition
  reads them, :mod:`appliance.query.membership`);
- the column block cache's ``epoch``: rewrites that keep a day's count (erasure, re-derivation)
  make the store forget its blocks, and that outdates every key made before.

A period that includes today therefore gets a fresh answer as soon as an event arrives, and
the same answer for as long as none does; closed periods are answered from memory until the
entry is dropped. Entries are few and small (totals, a breakdown's rows): at most
``max_entries`` and ``max_bytes`` (8 MiB) together, least recently used dropped first, and an
answer over ``max_entry_bytes`` (pickled) is not kept. Answers are stored pickled, so a caller that changes what it got back
(``aggregate_compared`` pops a key) never changes the kept copy.

A miss is computed once per key however many requests ask (:mod:`appliance.query.flights`),
and a computation whose requests ran out of time finishes in the background into these
answers, under the key its request computed, so a retry answers from them.
"""

from __future__ import annotations

import pickle
import threading
from collections import OrderedDict

import msgspec

from appliance.config import QuerySettings
from appliance.events.blocks import DAY_MS
from appliance.events.frames import Frame
from appliance.heap import HeapTrimmer
from appliance.query.background import BackgroundWork
from appliance.query.flights import CLOSE_WAIT_SECONDS, Flights
from appliance.query.membership import RETURNING_LOOKBACK_DAYS
from appliance.query.selection import span_ms

MAX_ENTRIES = 512
MAX_BYTES = 8 << 20  # every kept answer together, pickled (a top line is ~1 KB, a breakdown a few)
MAX_ENTRY_BYTES = 256 << 10


class ReportMemo:
    """A bounded map from a report's key to its pickled answer."""

    def __init__(
        self, max_entries: int = MAX_ENTRIES, max_bytes: int = MAX_BYTES, max_entry_bytes: int = MAX_ENTRY_BYTES,
        settings: QuerySettings | None = None, background: BackgroundWork | None = None,
    ) -> None:
        self._entries: OrderedDict[tuple, bytes] = OrderedDict()
        self._lock = threading.Lock()
        self.max_entries = max_entries
        self.max_bytes = max_bytes
        self.max_entry_bytes = max_entry_bytes
        self.bytes = 0
        self.hits = 0
        self.misses = 0
        self.computed = 0  # reports run (misses that found no computation to share)
        self._running = threading.local()  # the frame of the report this thread is answering
        settings = settings or QuerySettings()  # [query]: how a refused report finishes in the background
        self.flights = Flights(finish_seconds=settings.background_seconds, max_finishers=settings.background_finishers,
                               background=background)
        self.trimmer = HeapTrimmer()  # malloc_trim after a report over a large frame (appliance/heap.py)

    def answer(self, scans, report, query, args: tuple, kwargs: dict):
        """``report(scans, query, *args, **kwargs)``, kept under a key that pins the events and
        definitions it reads (see the module docstring)."""
        site = query.site.id
        columns = scans.columns
        epoch = columns.cache.epoch  # read first: a forget() during the report outdates the key
        start_ms, end_ms = span_ms(query)
        period = columns.frame_key(site, start_ms, end_ms)  # builds no block: a kept answer costs no scan
        definitions = msgspec.msgpack.encode([scans.goals.list(site), scans.segments.list(site)])
        before = ()
        if any(condition.dimension == "segment" for condition in query.filters):
            # a segment's visitor_type condition also reads the days before the period
            before = columns.frame_key(site, start_ms - RETURNING_LOOKBACK_DAYS * DAY_MS, start_ms)
        key = (report.__name__, msgspec.msgpack.encode(query), args, tuple(sorted(kwargs.items())), period, before,
               definitions, epoch)
        found = self.get(key)
        if found is not None:
            return found
        # One computation per key, finished into the kept answers even when the request that
        # started it runs out of time (appliance/query/flights.py); every caller gets its own
        # copy of the answer (unpickled).
        return pickle.loads(self.flights.run(key, lambda: self._compute(key, scans, report, query, args, kwargs)))

    def _compute(self, key: tuple, scans, report, query, args: tuple, kwargs: dict) -> bytes:
        """Run the report and keep its answer; returns it pickled."""
        with self._lock:
            kept = self._entries.get(key)  # a flight for the key ended between get() and this one
            self.computed += kept is None
        if kept is not None:
            return kept
        site = query.site.id
        columns = scans.columns
        start_ms, end_ms = span_ms(query)
        # Read after the key: an event acknowledged in between is in the answer, never missing
        # from it, and the key (of an older state, never asked for again) stays correct enough.
        frame = columns.frame(site, start_ms, end_ms)
        rows = frame.size
        outer = getattr(self._running, "frame", None)  # a report made of others runs them inside
        self._running.frame = (site, frame)
        try:
            answer = report(scans, query, *args, **kwargs)
        finally:
            self._running.frame = outer
            del frame  # the scan's arrays are freed here (blocks the cache keeps aside) ...
        packed = self.put(key, answer)
        self.trimmer.after_rows(rows)  # ... and a large scan's freed heap goes back to the system
        return packed

    def frame_of(self, columns, site: int, start_ms: int, end_ms: int) -> Frame:
        """The running report's frame when it is the one asked for (the key was computed from
        it: the report reads exactly what the key pins), else a new one."""
        running = getattr(self._running, "frame", None)
        if running is not None and running[0] == site and running[1].span == (start_ms, end_ms):
            return running[1]
        return columns.frame(site, start_ms, end_ms)

    def get(self, key: tuple) -> object | None:
        with self._lock:
            found = self._entries.get(key)
            if found is None:
                self.misses += 1
                return None
            self._entries.move_to_end(key)
            self.hits += 1
        return pickle.loads(found)

    def put(self, key: tuple, answer: object) -> bytes:
        """Keep ``answer`` (unless it is too large); returns it pickled."""
        packed = pickle.dumps(answer, protocol=pickle.HIGHEST_PROTOCOL)
        if len(packed) > self.max_entry_bytes:
            return packed
        with self._lock:
            replaced = self._entries.pop(key, None)
            self.bytes += len(packed) - (len(replaced) if replaced is not None else 0)
            self._entries[key] = packed
            while len(self._entries) > self.max_entries or self.bytes > self.max_bytes:
                self.bytes -= len(self._entries.popitem(last=False)[1])
        return packed

    def close(self, wait_seconds: float = CLOSE_WAIT_SECONDS) -> None:
        """Stop the reports still computing (Appliance.close), waiting a bounded time."""
        self.flights.close(wait_seconds)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()
            self.bytes = 0

    def __len__(self) -> int:
        return len(self._entries)
