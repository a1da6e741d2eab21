"""The column store: per site and UTC day, the event log re-laid as column blocks
(:mod:`appliance.events.blocks`), the source of truth for closed days once compacted.

The event log (``storage.eventlog``) is the write-optimised tail: ingest appends MessagePack
rows and never touches a block. A block holds one site's events of one UTC day as columns
(their layout: :mod:`appliance.events.blocks`).

Compaction runs in the background (:func:`appliance.runtime.jobs.compact_closed_days`), never on the
query path: a closed day's rows (the day ended more than :data:`CLOSE_GRACE_SECONDS` ago) are
encoded, compressed (:mod:`storage.columns`), decoded again and compared, stored as the day's
new block generation, and deleted from the log in the same transaction. From then on a day's
events are its block's rows plus whatever log rows arrived for it later (late events), which
the next compaction folds in. Rows still waiting for aggregation (``pending``) are never
compacted. :meth:`ColumnStore.events` yields a site's events over a time range from blocks and
log alike; everything that needs stored events (exports, goal and segment back-fills, the
retention purge, deleting a site, the brute-force tests) goes through it or through frames.

Reading: a stored block loads each column on first use, so a query reads the few columns it
needs. Whether a cached block is still current is decided in a *settled snapshot* (under the
appliance's write mutex pending events are aggregated and the read transaction opened, so no
commit falls between): the day's event count (the sum of its hourly ``EVENTS_TOTAL``
counters) and the stored generation must both be what the block was built against. Days
without a block (today, and closed days not yet compacted) are read from the log into an
in-memory block that is extended incrementally with the rows appended after its last key;
a new process starts today's from its stored checkpoint (:mod:`appliance.events.openday`).
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator

import numpy as np

from appliance import dimensions as dims
from appliance.budget import check_budget
from appliance.events import compaction_build as building
from appliance.events.block_cache import BlockCache, ScanBlocks
from appliance.events.blocks import (
    CACHE_BYTES,
    CLOSE_GRACE_SECONDS,
    DAY_MS,
    DELTA_COLUMNS,
    FORMAT_VERSION,
    RETIRED_GRACE_MS,
    Block,
)
from appliance.events.coordinator import WriteCoordinator
from appliance.events.encoding import (
    concatenate,
    in_key_order,
    rows_to_columns,
    stored_columns,
    take,
)
from appliance.events.frames import Frame, VisitorSpace
from appliance.events.openday import OpenDays
from appliance.events.window_reader import content_of, frame_key_in, stored_block
from appliance.models import Event
from storage import Store
from storage.columns import ColumnBlocks, encode_array
from storage.counters import Counters
from storage.eventlog import EventLog, MissingRow
from storage.keys import HOUR, unpack_event_key

COMPACT_READ_ROWS = 20_000  # a closed day's log rows a query read, over which it asks for compaction

log = logging.getLogger(__name__)


def _changed(pointer) -> int:
    return max(content_of(pointer), pointer.generation) + 1  # above every number the day had


class ColumnStore:
    """Builds, stores, caches and serves column blocks (see the module docstring)."""

    def __init__(
        self,
        *,
        store: Store,
        eventlog: EventLog,
        counters: Counters,
        coordinator: WriteCoordinator,
        timeout_ms: int,
        cache_bytes: int = CACHE_BYTES,
        clock: Callable[[], float] = time.time,
        build_helper: bool = False,
    ) -> None:
        self._store = store
        self._eventlog = eventlog
        self._counters = counters
        self._coordinator = coordinator
        self.blocks = ColumnBlocks(store)
        self.timeout_ms = timeout_ms
        self.cache = BlockCache(cache_bytes)
        self._spaces: OrderedDict[tuple, VisitorSpace] = OrderedDict()
        self._lock = threading.Lock()
        self._day_locks = [threading.Lock() for _ in range(64)]  # striped by (site, day)
        # held by each rewrite of a day's block (compaction, retention, erasure); taken before the
        # write mutex, never under it (compaction's read may settle, which takes the mutex)
        self.rewrite_lock = threading.RLock()
        self._clock = clock
        self.compactions = 0  # blocks written (for tests and the bench)
        # (site, first day, last day): a closed day a query read from the log, compacted soon (runtime.jobs)
        self.compaction_wanted: Callable[[int, int, int], None] | None = None
        self.compact_read_rows = COMPACT_READ_ROWS  # ...if it has this many rows (fewer build fast)
        self.open_days = OpenDays(store, eventlog, self)  # days without a block; checkpoints
        #: builds large days in a process of its own during compaction sessions (None: in process)
        self.build_helper: building.BuildHelper | None = building.BuildHelper(store.path) if build_helper else None
        self.helper_events = building.HELPER_EVENTS

    # -- freshness ------------------------------------------------------------------------
    def settled(self):
        """A read transaction in which every committed event is also aggregated."""
        return self._coordinator.settled()

    def day_count(self, txn, site: int, day: int) -> int:
        """Events of ``site`` counted with a timestamp in UTC day ``day``."""
        return sum(
            value for _, _, value in self._counters.scan(txn, site, HOUR, dims.EVENTS_TOTAL, day * 24, day * 24 + 23)
        )

    def days_with_events(self, site: int, first_day: int, last_day: int) -> list[int]:
        """UTC days of the range on which ``site`` has events (counters or a stored block)."""
        with self.settled() as txn:
            hours = self._counters.scan(txn, site, HOUR, dims.EVENTS_TOTAL, first_day * 24, last_day * 24 + 23)
            found = {hour // 24 for hour, _, value in hours if value}
            found.update(self.blocks.days(txn, site, first_day, last_day))
            return sorted(found)

    def frame_key(self, site: int, start_ms: int, end_ms: int) -> tuple:
        """What :meth:`frame` would read, without reading it: per day with events, which rows
        (:func:`~appliance.events.window_reader.content_of`: a compaction keeps it) and how many, and the part in range. One settled
        read of counters and pointers, no block built (the memo and day sets key answers on it)."""
        with self.settled() as txn:
            return frame_key_in(txn, self._counters, self.blocks, site, start_ms, end_ms)

    def is_closed(self, day: int) -> bool:
        return self._clock() * 1000 >= (day + 1) * DAY_MS + CLOSE_GRACE_SECONDS * 1000

    # -- blocks ---------------------------------------------------------------------------
    def block(self, site: int, day: int, scan: ScanBlocks | None = None) -> Block:
        """The current block of ``(site, day)``: cached, stored (plus late log rows), or read
        from the log. A one-shot background ``scan`` keeps what it builds in its own
        :class:`ScanBlocks`, not in the shared cache (whose current blocks it uses as they are)."""
        key = (site, day)
        # the settled read first: it may wait for the write mutex, whose holder (the writer
        # re-deriving a day) may want this day's lock, so no day lock is held while it waits
        with self.settled() as txn, self._day_locks[hash(key) % len(self._day_locks)]:
            total = self.day_count(txn, site, day)
            pointer = self.blocks.pointer(txn, site, day)
            generation = pointer.generation if pointer is not None else 0
            cached = self.cache.requested(key) if scan is None else scan.requested(key)
            if scan is not None and (cached is None or cached.identity != (generation, total)):
                cached = self.cache.peek(key) or cached  # a query's block, used, not counted
            if cached is not None and cached.identity == (generation, total):
                if scan is None:
                    self.cache.resize(cached)  # lazily loaded columns count against the cache
                return cached
            if pointer is not None:
                block = self._stored(txn, site, day, pointer)
                tail = list(self._eventlog.scan(txn, site, day * DAY_MS, (day + 1) * DAY_MS))
                if tail:
                    merged = in_key_order(concatenate([block.plain(), rows_to_columns(tail)]))
                    block = Block(site, day, len(merged["ts"]), merged, generation=generation)
            else:
                block = self.open_days.block(txn, site, day, total, cached)  # cached, a checkpoint, or the log
                if self.compaction_wanted and block.count >= self.compact_read_rows and self.is_closed(day):
                    self.compaction_wanted(site, day, day)
            block.identity = (generation, total)
            block.built_against = total
            if scan is not None:
                scan.remember(block)
            else:
                self._remember(block)
            return block

    def _stored(self, txn, site: int, day: int, pointer) -> Block:
        def read(name: str) -> np.ndarray | None:
            with self._store.read() as txn:  # a transaction per column, as it is first used
                return self.blocks.get(txn, site, day, pointer.generation, name)

        return stored_block(site, day, pointer, read)

    def _remember(self, block: Block) -> None:
        if block.count:  # an empty day costs one counter scan to find again
            self.cache.remember(block)

    def forget(self, site: int | None = None, day: int | None = None) -> None:
        """Drop cached blocks; the cache's ``epoch`` counts the calls, so whatever was computed
        from a dropped block (:mod:`appliance.query.memo`) can tell it is from before."""
        self.cache.forget(site, day)
        with self._lock:
            self._spaces.clear()

    # -- compaction (background) ----------------------------------------------------------
    def compact_day(self, site: int, day: int) -> bool:
        """Fold the day's log rows into its block (a new generation) and delete them from the
        log, in one transaction, after checking the encoded block decodes to the same rows
        (:mod:`appliance.events.compaction_build`: a large day is built in the helper process
        of a :meth:`compaction_session`). Rows still pending aggregation stay in the log.
        Returns whether a block was written."""
        if not self.is_closed(day):
            return False
        started = time.monotonic()
        with self.rewrite_lock:
            built = self._build(site, day)
            if built is None:
                return False

            def write(txn):
                current = self.blocks.pointer(txn, site, day)
                if (current.generation if current is not None else None) != built.generation:
                    return False
                content = _changed(current) if current and self._outdated(current) else content_of(current)
                info = {"format": FORMAT_VERSION, "count": built.count, "timeout_ms": self.timeout_ms, "content": content}
                self._eventlog.delete_rows(txn, built.key_list())  # MissingRow (purged meanwhile): aborted
                self.blocks.put(txn, site, day, built.encoded, info)
                self.open_days.drop(txn, site, day)  # superseded by the block
                return True

            try:
                written = self._store.write(write, bulk=True)  # a delete per log row
            except MissingRow:
                written = False  # nothing deleted, nothing stored: the next run reads the log again
        if written:
            self.compactions += 1
            log.info("compacted day %s of site %s: %d rows in %.2f s", day, site, built.count, time.monotonic() - started)
        return written

    def _build(self, site: int, day: int) -> building.Built | None:
        """The day's new block, built by the session's helper when the day is large."""
        helper = self.build_helper
        if helper is not None and helper.in_session:
            with self._store.read() as txn:
                large = self.day_count(txn, site, day) >= self.helper_events
            if large:
                with self._coordinator.folded():
                    pass  # the closed day's rows came before: the helper's snapshot is later still
                try:
                    return helper.build(site, day, self.timeout_ms)
                except building.HelperFailed as failure:
                    log.warning("%s; building day %s of site %s in process", failure, day, site)
        return building.build_day(self._store, self.blocks, self._eventlog, site, day, self.timeout_ms, self._coordinator.folded())

    def compaction_session(self):
        """A run of compactions sharing one build helper (started on the first large day)."""
        return self.build_helper.session() if self.build_helper is not None else contextlib.nullcontext()

    def _outdated(self, pointer) -> bool:
        return building.outdated(pointer, self.timeout_ms)

    def compact(self, site: int, first_day: int, last_day: int, stop: threading.Event | None = None) -> int:
        """Compact every closed day of the range that has log rows, and re-encode blocks of
        an older format (or visit timeout); returns how many blocks were written. Once
        ``stop`` is set no further day is begun (the rest stay in the log for the next run)."""
        with self._coordinator.folded() as txn:
            days = set(self.log_days(txn, site, first_day, last_day))
            for day in self.blocks.days(txn, site, first_day, last_day):
                if self._outdated(self.blocks.pointer(txn, site, day)):
                    days.add(day)
        stopped = stop.is_set if stop is not None else lambda: False
        with self.compaction_session():
            return sum(self.compact_day(site, day) for day in sorted(days) if self.is_closed(day) and not stopped())

    def log_days(self, txn, site: int, first_day: int, last_day: int) -> list[int]:
        """UTC days of the range with rows in the event log (one cursor seek per day found)."""
        found = []
        day = first_day
        while day <= last_day:
            key = next(iter(self._eventlog.scan(txn, site, day * DAY_MS, (last_day + 1) * DAY_MS)), None)
            if key is None:
                break
            day = unpack_event_key(key[0])[1] // DAY_MS
            found.append(day)
            day += 1
        return found

    def collect(self, site: int, now_ms: int | None = None) -> int:
        """Delete block generations retired more than :data:`RETIRED_GRACE_MS` ago."""
        now_ms = int(self._clock() * 1000) if now_ms is None else now_ms
        with self._store.read() as txn:
            days = self.blocks.days(txn, site)
        removed = 0
        for day in days:
            removed += self._store.write(lambda txn, day=day: self.blocks.collect(txn, site, day, now_ms - RETIRED_GRACE_MS))
        return removed

    def purge_before(self, site: int, cutoff_ms: int) -> int:
        """Retention: delete the site's block rows older than ``cutoff_ms`` (whole days' blocks,
        and the older rows of the day the cutoff falls in); returns how many rows went."""
        cutoff_day = cutoff_ms // DAY_MS
        removed = 0
        with self.rewrite_lock:
            with self._store.read() as txn:
                days = [d for d in self.blocks.days(txn, site, 0, cutoff_day)]
                pointers = {d: self.blocks.pointer(txn, site, d) for d in days}
            for day in days:
                pointer = pointers[day]
                if day < cutoff_day:
                    self._store.write(lambda txn, day=day: self.blocks.delete(txn, site, day))  # checkpoints: below
                    removed += int(pointer.info.get("count", 0))
                    self.forget(site, day)
                    continue
                old = self._stored(None, site, day, pointer)
                ts = old.scalar("ts")
                first = int(np.searchsorted(ts, cutoff_ms, "left"))
                if first and self._keep_rows(site, day, pointer, old, np.arange(first, old.count)):
                    removed += first
                    self.forget(site, day)
            self._store.write(lambda txn: self.open_days.drop_before(txn, site, cutoff_day))
        return removed  # nothing to purge, nothing forgotten: the hourly job keeps the cache

    def erase_rows(self, site: int, day: int, doomed: Callable[[Block], np.ndarray]) -> int:
        """Rewrite the day's stored block without the rows ``doomed(block)`` marks (a boolean
        mask; a person's erasure); returns how many went. Log rows are the caller's, who holds
        :attr:`rewrite_lock` from before it takes the write mutex."""
        with self.rewrite_lock:
            self.open_days.erasing(site, day)  # the day's checkpoint goes; taken again without the rows
            with self._store.read() as txn:
                pointer = self.blocks.pointer(txn, site, day)
            if pointer is None:
                return 0
            old = self._stored(None, site, day, pointer)
            mask = doomed(old)
            if mask.any() and not self._keep_rows(site, day, pointer, old, np.flatnonzero(~mask)):
                raise RuntimeError(f"block {site}/{day} was rewritten during an erasure")
        self.forget(site, day)
        return int(mask.sum())

    def _keep_rows(self, site: int, day: int, pointer, old: Block, rows: np.ndarray) -> bool:
        """Write the day's block again with only ``rows`` of ``old`` (a new generation) unless
        another write replaced it meanwhile; returns whether it was written."""
        columns = take(old.plain(), rows)
        arrays = stored_columns(columns, day, self.timeout_ms)
        encoded = {name: encode_array(a, delta=name in DELTA_COLUMNS) for name, a in arrays.items()}
        info = {"format": FORMAT_VERSION, "count": len(rows), "timeout_ms": self.timeout_ms, "content": _changed(pointer)}

        def write(txn):
            current = self.blocks.pointer(txn, site, day)
            if current is None or current.generation != pointer.generation:
                return False
            self.blocks.put(txn, site, day, encoded, info)
            return True

        return self._store.write(write)

    def delete_site(self, txn, site: int) -> None:
        self.blocks.delete_site(txn, site)
        self.open_days.drop_site(txn, site)
        self.forget(site)

    # -- events ---------------------------------------------------------------------------
    def events(self, site: int, start_ms: int, end_ms: int, text: Callable[[int], str]) -> Iterator[tuple[bytes, Event]]:
        """The site's events with ``start_ms <= ts < end_ms`` in log-key (time) order, from
        blocks and log rows alike, as ``(log key, Event)``. A one-shot walk: the blocks it
        builds stay out of the shared cache (:class:`ScanBlocks`)."""
        if end_ms <= start_ms:
            return
        first_day, last_day = start_ms // DAY_MS, (end_ms - 1) // DAY_MS
        with self.settled() as txn:
            stored = set(self.blocks.days(txn, site, first_day, last_day))
            log_days = set(self.log_days(txn, site, first_day, last_day))
        scan = ScanBlocks(limit=1)  # day by day: a block is not read again
        for day in sorted(stored | log_days):
            block = self.block(site, day, scan)
            ts = block.scalar("ts")
            lo = int(np.searchsorted(ts, start_ms, "left"))
            hi = int(np.searchsorted(ts, end_ms, "left"))
            yield from block.events(text, lo, hi)

    # -- frames ---------------------------------------------------------------------------
    def frame(self, site: int, start_ms: int, end_ms: int, scan: ScanBlocks | None = None) -> Frame:
        """The site's events with ``start_ms <= ts < end_ms``, as a :class:`Frame` (``scan``: see :meth:`block`)."""
        parts = []
        for day in self.days_with_events(site, start_ms // DAY_MS, (end_ms - 1) // DAY_MS):
            check_budget()
            block = self.block(site, day, scan)
            if not block.count:
                continue
            lo, hi = 0, block.count
            if start_ms > day * DAY_MS or end_ms < (day + 1) * DAY_MS:
                ts = block.scalar("ts")
                lo = 0 if start_ms <= day * DAY_MS else int(np.searchsorted(ts, start_ms, "left"))
                hi = block.count if end_ms >= (day + 1) * DAY_MS else int(np.searchsorted(ts, end_ms, "left"))
            if hi > lo:
                parts.append((block, lo, hi))
        frame = Frame(parts, self.visitor_space)
        frame.span = (start_ms, end_ms)
        return frame

    def visitor_space(self, blocks: list[Block]) -> VisitorSpace:
        """The :class:`VisitorSpace` of some blocks; the last few are kept (a dashboard asks
        many reports of one period)."""
        key = tuple((block.site, block.day, block.identity) for block in blocks)
        with self._lock:
            found = self._spaces.get(key)
            if found is not None:
                self._spaces.move_to_end(key)
                return found
        found = VisitorSpace(blocks)
        with self._lock:
            self._spaces[key] = found
            while len(self._spaces) > 2:  # each holds its blocks' visitor dictionaries
                self._spaces.popitem(last=False)
        return found
