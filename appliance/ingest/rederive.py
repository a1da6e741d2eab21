"""Visit figures re-derived from time-ordered events, so they do not depend on arrival order.

The open-visit table (:mod:`appliance.ingest.visits`) counts visits incrementally, which is
exact only when each visitor's events arrive in time order. Imports, server-side queues,
offline mobile apps and retries deliver them shuffled. What depends on the order is what is
counted *per visit*: visits, bounces and duration (the site total and per entry value of
every dimension, keyed by the local day the visit started), exit pages, and — since a visit
property is its visit's first event's — the page-view counters and visitor sketches of the
visit properties (source, channel, referrer, UTM tags) by the local day of each page view.
Page views, events, conversions, goals, visitors and every event property are counted per
event and never depend on the order.

*Marking.* When the aggregation step meets an event late for its visitor (see
:attr:`VisitTable.late <appliance.ingest.visits.VisitTable.late>`) it marks the ``(site,
local day)`` pairs it can touch *visits dirty*, in LMDB (``visits_dirty``), in the same
transaction that counts the event. In-order events never mark anything: they stay on the
incremental path.

*Re-deriving a day* (:meth:`Rederiver.rederive_day`): the site's events of the day plus
:data:`~appliance.events.rederive_window.LOOK_MS` either side (widened while a visit
reaches the window's edge) are sessionised by the scan path's own code
(:class:`appliance.events.sessions.Sessions`, over a column-store frame: blocks and log rows
alike, so closed and compacted days too), and the
day's order-dependent counters and sketches listed above are replaced by what those visits
give, with the open visits of the window's visitors, in one transaction. So the counted path
and the filtered path agree by construction. If anything changed and a visit crosses the
day's start (or end), the day before (or after) is marked too, since that visit's figures
live there.

*When* (:meth:`Rederiver.run`): at the end of every aggregation step — which also runs before
every settled read — for a dirty day of at most ``IMMEDIATE_EVENTS`` events (the day and its
margins, estimated from the hourly event counters, or as read by its last re-derivation):
no read ever sees its figures before the late event's re-derivation. A bigger day is
re-derived by the hourly job only: it takes seconds (measured on 2 busy cores: 200,000 events
6.5 s from log rows, 2.4 s once compacted), which it would add to each batch of late events.
Reading and sessionising a day's window, most of that time, happens before the write mutex
is taken, so ingest commits go on meanwhile; under the mutex the window's identity
(:meth:`ColumnStore.frame_key <appliance.events.columns.ColumnStore.frame_key>`: each UTC
day's block generation and event count) is read again, and only if it is unchanged are the
open visits read and the figures written; if an event came for the window meanwhile, the day
is derived again under the mutex, as it always was. In a run of the job runner a window of
20,000 events or more is read and sessionised by the build helper process
(:mod:`appliance.events.compaction_build`, the same code over the store alone: the serving
process's interpreter stays free for requests) and only matched and written here. A run
takes the mutex for one day at a time, so commits go through between the days of a long run (after an import, dozens), and
the writer re-derives small days that became dirty meanwhile. The staleness bound: zero
for small days, the next hourly job (at most an hour) for big ones. Days older than the
site's retention are not re-derived (their events are partly purged).
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import struct
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from appliance.budget import unbounded
from appliance.events.block_cache import ScanBlocks
from appliance.events.blocks import StaleBlock
from appliance.events.columns import ColumnStore
from appliance.events.compaction_build import HelperFailed
from appliance.events.coordinator import WriteCoordinator
from appliance.events.rederive_window import LastVisits, Window, derive_window
from appliance.heap import LARGE_FRAME_ROWS, HeapTrimmer
from appliance.ingest.visits import Visit, VisitTable
from appliance.periods import day_bucket, day_from_number, day_start_timestamp
from appliance.sites import SiteRegistry
from storage import Store
from storage.counters import Counters
from storage.keys import DAY
from storage.sketches import Sketches
from storage.strings import StringTable

log = logging.getLogger(__name__)

_KEY = struct.Struct(">Ii")  # site, local day
IMMEDIATE_EVENTS = 20_000  # a day with fewer events (and its margins) is re-derived at once


@dataclass(slots=True)
class _Derived:
    """One day's re-derived window (:class:`~appliance.events.rederive_window.Window`), and
    the visits of its visitors open when it was derived before the mutex."""

    site_id: int
    day: int
    timezone: str
    window: Window
    started: float
    visits: dict  # {position in window.last: (visitor, Visit)}

    def key_now(self, columns: ColumnStore) -> tuple:
        """What the window holds now (compared with its ``frame_key`` under the mutex)."""
        return columns.frame_key(self.site_id, self.window.lo, self.window.hi)


class Rederiver:
    """The visits-dirty days and their re-derivation (see the module docstring)."""

    def __init__(
        self,
        *,
        store: Store,
        columns: ColumnStore,
        counters: Counters,
        sketches: Sketches,
        strings: StringTable,
        visits: VisitTable,
        sites: SiteRegistry,
        coordinator: WriteCoordinator,
        timeout_ms: int,
        clock: Callable[[], float] = time.time,
        scan_bytes: int | None = None,
    ) -> None:
        self._store = store
        self._db = store.db(b"visits_dirty")
        self._columns = columns
        self._counters = counters
        self._sketches = sketches
        self._strings = strings
        self._visits = visits
        self._sites = sites
        self._coordinator = coordinator
        self.timeout_ms = timeout_ms
        self._clock = clock
        #: the decoded blocks a run keeps for its next days (:class:`ScanBlocks`), in bytes
        self.scan_bytes = scan_bytes
        self._running = threading.local()
        self._cost: dict[tuple[int, int], tuple[float, float, int]] = {}  # key -> (seconds, done at, events)
        with store.read() as txn:
            self._dirty = {_KEY.unpack(key) for key, _ in txn.cursor(db=self._db)}
        self.days_rederived = 0  # for tests and the bench
        #: a day's frame and its visits are freed after its write; glibc keeps the pages
        self.trimmer = HeapTrimmer()
        self._rows_read = 0

    @property
    def dirty(self) -> set[tuple[int, int]]:
        return set(self._dirty)

    def mark(self, txn, keys) -> None:
        """Mark ``(site, local day)`` pairs visits dirty, inside the caller's transaction
        (kept in memory at once: a day re-derived needlessly after an abort is harmless)."""
        for key in keys:
            txn.put(_KEY.pack(*key), b"", db=self._db)
            self._dirty.add(key)

    def delete_site(self, txn, site_id: int) -> None:
        for key in [key for key in self._dirty if key[0] == site_id]:
            txn.delete(_KEY.pack(*key), db=self._db)
            self._dirty.discard(key)

    # -- scheduling -----------------------------------------------------------------------
    def _due(self, key, now: float) -> bool:
        """Small days now; a big day only from the hourly job (``force``): re-deriving it takes
        seconds, which the writer would add to the batch that marked it."""
        cost = self._cost.get(key)
        if cost is None:
            cost = self._cost[key] = (0.0, now, self._estimate(*key))
        return cost[2] <= IMMEDIATE_EVENTS

    def _estimate(self, site_id: int, day: int) -> int:
        """Events of the local day ``day`` and the UTC days around it (its margins), from the
        hourly event counters: what a re-derivation would read."""
        with self._store.read() as txn:
            return sum(self._columns.day_count(txn, site_id, utc_day) for utc_day in range(day - 1, day + 2))

    def run(self, force: bool = False, stop: threading.Event | None = None,
            defer: Callable[[int, int], bool] | None = None) -> int:
        """Re-derive the dirty days that are due (every one with ``force``); returns how
        many days were re-derived. Takes the write coordinator's mutex for one day at a time,
        and lets a thread waiting for it have it before the next day, so ingest commits (and
        the tracker requests waiting for them) go through between the days of a long run —
        the hourly job after an import re-derives dozens. Once ``stop`` is set (the server
        stops) no further day is begun: the rest stay dirty, in LMDB, for the next start. A
        day for which ``defer(site, day)`` is true stays dirty too (the hourly job's: a bulk
        load still on around it, :meth:`PassedDays.loading
        <appliance.runtime.passed_days.PassedDays.loading>`)."""
        if not self._dirty:
            return 0
        if getattr(self._running, "now", False):  # reading the events flushes, which calls back here
            return 0
        self._running.now = True  # per thread: the writer re-derives small days between the job's days
        done = 0
        # the run's blocks: consecutive days share theirs, the shared cache gets none
        scan = ScanBlocks(limit_bytes=self.scan_bytes)
        # the job runner's run: a big day's window is read by the build helper
        helped = self._columns.compaction_session() if force else contextlib.nullcontext()
        try:
            with unbounded(), helped:
                for _ in range(64):  # a cascade to neighbouring days settles in a few rounds
                    with self._coordinator.mutex:
                        now = time.monotonic()
                        due = sorted(key for key in self._dirty
                                     if (force or self._due(key, now)) and not (defer is not None and defer(*key)))
                    if not due:
                        break
                    for key in due:
                        if stop is not None and stop.is_set():
                            return done
                        done += self._rederive_one(key, scan)
                        self._coordinator.mutex.let_waiters_in()  # a commit between two days
                        self._trim()  # a big day's frame is freed: before the next one is read
                    force = False
        finally:
            self._running.now = False
            scan.clear()
        self._trim()
        return done

    def _trim(self) -> None:
        """Give the heap's free pages back once large frames were read (not under the mutex,
        unless the caller holds it: commits go on meanwhile)."""
        if self._rows_read >= LARGE_FRAME_ROWS and self.trimmer.trim():
            self._rows_read = 0

    def _rederive_one(self, key: tuple[int, int], scan: ScanBlocks) -> int:
        """One day, unless another thread did it meanwhile: 1 if re-derived; a failure puts
        the day off. The day's events are read and sessionised *before* the mutex is taken
        (seconds for a big day: commits go on meanwhile); under it, if the events it read are
        still what the store holds (:meth:`ColumnStore.frame_key`: each day's block
        generation and event count), only the open visits and the write remain, else the day
        is derived again under the mutex, as it always was."""
        started = time.monotonic()
        early = key in self._dirty and not self._coordinator.mutex.held()  # the writer holds it already
        try:
            derived = (self._derive_elsewhere(*key, started) or self._derive(*key, started, scan, early=True)) if early else None
        except StaleBlock:
            derived = None  # compacted meanwhile: derived again below
        with self._coordinator.mutex:
            if key not in self._dirty:
                return 0
            try:
                if derived is not None and derived.key_now(self._columns) == derived.window.frame_key:
                    self._apply(derived)
                else:
                    derived = None  # the stale window goes first: not two windows' frames at once
                    self.rederive_day(*key, scan=scan)
                return 1
            except StaleBlock:
                self._cost[key] = (1.0, time.monotonic(), IMMEDIATE_EVENTS + 1)  # compacted meanwhile: later
            except Exception:
                log.exception("re-deriving the visits of site %s day %s failed", *key)
                self._cost[key] = (60.0, time.monotonic(), IMMEDIATE_EVENTS + 1)
            return 0

    # -- one day --------------------------------------------------------------------------
    def rederive_day(self, site_id: int, day: int, scan: ScanBlocks | None = None) -> bool:
        """Replace one local day's order-dependent visit figures with those of its
        time-ordered events; returns whether anything changed. Under the coordinator mutex.
        The blocks read are kept in ``scan`` (a run's), never in the shared block cache."""
        derived = self._derive(site_id, day, time.monotonic(), ScanBlocks() if scan is None else scan, early=False)
        if derived is None:  # the site is gone, or the day is past its retention
            key = (site_id, day)
            self._store.write(lambda txn: txn.delete(_KEY.pack(*key), db=self._db))
            self._dirty.discard(key)
            return False
        return self._apply(derived)

    def _derive(self, site_id: int, day: int, started: float, scan: ScanBlocks, early: bool) -> _Derived | None:
        """Read the day's window of events and compute its figures (no write, no mutex
        needed); None when the site is gone or the day is past its retention. ``early``:
        before the mutex is taken, so the window's identity is noted (to compare under it) and
        the visits to reopen are built for the visitors open now; under the mutex neither is
        needed (:meth:`_open_visits` builds them)."""
        timezone = self._kept(site_id, day)
        if timezone is None:
            return None
        first_ms, end_ms = self._bounds(day, timezone)
        frame_key = (lambda lo, hi: self._columns.frame_key(site_id, lo, hi)) if early else (lambda lo, hi: None)
        window = derive_window(lambda lo, hi: self._columns.frame(site_id, lo, hi, scan), frame_key,
                               first_ms, end_ms, self.timeout_ms)
        return self._derived(site_id, day, timezone, window, started, early)

    def _derive_elsewhere(self, site_id: int, day: int, started: float) -> _Derived | None:
        """:meth:`_derive` (early) by the build helper, for a day whose window holds
        ``ColumnStore.helper_events`` (20,000) events or more, while a run of the job runner
        has one (:meth:`ColumnStore.compaction_session`); None: derive it here (no helper, a
        small day, the site gone, or the helper failed)."""
        helper = self._columns.build_helper
        key = (site_id, day)
        timezone = self._kept(site_id, day)
        if helper is None or not helper.in_session or timezone is None:
            return None
        cost = self._cost.get(key)
        if (cost[2] if cost is not None else self._estimate(site_id, day)) < self._columns.helper_events:
            return None
        with self._coordinator.folded():
            pass  # the window's events folded: the helper's snapshot is no older
        first_ms, end_ms = self._bounds(day, timezone)
        try:
            window = helper.derive(site_id, first_ms, end_ms, self.timeout_ms)
        except HelperFailed as failure:
            log.warning("%s; re-deriving day %s of site %s in process", failure, day, site_id)
            return None
        log.info("read the window of day %s of site %s in the helper: %d events", day, site_id, window.size)
        return self._derived(site_id, day, timezone, window, started, early=True)

    def _kept(self, site_id: int, day: int) -> str | None:
        """The site's timezone, or None when the site is gone or the day past its retention."""
        site = self._sites.by_id(site_id)
        if site is None or day <= day_bucket(self._clock() - site.retention_days * 86400, site.timezone):
            return None
        return site.timezone

    @staticmethod
    def _bounds(day: int, timezone: str) -> tuple[int, int]:
        """The local day's first and end millisecond."""
        return (int(day_start_timestamp(day_from_number(day), timezone) * 1000),
                int(day_start_timestamp(day_from_number(day + 1), timezone) * 1000))

    def _derived(self, site_id: int, day: int, timezone: str, window: Window, started: float, early: bool) -> _Derived:
        visits = self._built(timezone, window.last, self._chosen(site_id, window.last)) if early else {}
        return _Derived(site_id=site_id, day=day, timezone=timezone, window=window, started=started, visits=visits)

    def _apply(self, derived: _Derived) -> bool:
        """Write what :meth:`_derive` computed, with the window's re-derived open visits (read
        now: the table changes with every commit). Under the coordinator mutex."""
        site_id, day = derived.site_id, derived.day
        key = (site_id, day)
        window = derived.window
        counters, sketches = window.counters, window.sketches
        reopened = self._open_visits(derived)

        def write(txn):
            changed = False
            for metric, values in counters.items():
                changed |= self._counters.replace_bucket(txn, site_id, DAY, metric, day, values)
            for metric, members in sketches.items():
                changed |= self._sketches.replace_bucket(txn, site_id, DAY, metric, day, members)
            self._visits.replace(txn, site_id, reopened)
            txn.delete(_KEY.pack(*key), db=self._db)
            cascade = []
            if changed:
                crossings = ((day - 1, window.crossing_before), (day + 1, window.crossing_after))
                cascade = [(site_id, d) for d, crossing in crossings if crossing]
                for neighbour in cascade:
                    txn.put(_KEY.pack(*neighbour), b"", db=self._db)
            return changed, cascade

        try:
            changed, cascade = self._store.write(write)
        except BaseException:
            self._visits.rolled_back()
            raise
        self._visits.committed()
        self._dirty.discard(key)
        self._dirty.update(cascade)
        self._cost[key] = (time.monotonic() - derived.started, time.monotonic(), window.size)
        self._rows_read += window.size
        self.days_rederived += 1
        return changed

    def _open_visits(self, derived: _Derived) -> dict[int, Visit]:
        """The re-derived last visit of each visitor of the window who has an open visit, in
        the open-visit table's form (so in-order events that follow continue it exactly).
        Which visitors that is depends on the table now (under the mutex: matched in arrays);
        a derivation before the mutex built the visits of those open then, and only a visitor
        who has opened one since is built here (every one, for a derivation under it)."""
        last = derived.window.last
        chosen = self._chosen(derived.site_id, last)
        built = derived.visits
        missing = [position for position in chosen if position not in built]
        if missing:
            built = {**built, **self._built(derived.timezone, last, missing)}
        return dict(built[position] for position in chosen)

    def _chosen(self, site_id: int, last: LastVisits) -> list[int]:
        """Positions in ``last`` (each window visitor's last visit) of the visitors whose open
        visit (in the table now) that visit reaches. Matched in arrays, as the choice under the
        mutex holds every commit: a big day's window has ~100,000 visitors (a lookup each took
        ~0.1 s)."""
        if not len(last.visitor):
            return []
        visitors, lasts = self._visits.open_lasts(site_id)
        if not visitors:
            return []
        open_visitors = np.array(visitors, np.uint64)
        order = np.argsort(open_visitors)
        open_visitors = open_visitors[order]
        # int(last * 1000) of each open visit, as the table's float seconds truncate
        open_last_ms = (np.array(lasts, np.float64)[order] * 1000).astype(np.int64)
        at = np.minimum(np.searchsorted(open_visitors, last.visitor), len(open_visitors) - 1)
        reaches = (open_visitors[at] == last.visitor) & (last.end >= open_last_ms[at] - 1)
        return np.flatnonzero(reaches).tolist()

    def _built(self, timezone: str, last: LastVisits, positions: list[int]) -> dict[int, tuple[int, Visit]]:
        """``{position: (visitor, Visit)}`` for the last visits at ``positions``."""
        if not positions:
            return {}
        chosen = np.array(positions, np.int64)
        # Each column turned into Python values at once (not a numpy scalar per visit and
        # field): the window's visitors are every imported visitor.
        entries = last.entries[chosen].tolist()
        carried = last.carried[chosen].T.tolist()
        text = self._strings.text
        names = {value_id: text(value_id) for value_id in set(itertools.chain.from_iterable(carried))}
        carried_rows = zip(*([names[value_id] for value_id in column] for column in carried), strict=True)
        out = {}
        for position, visitor, started, ended, pageviews, interactive, exit_path, entry, visit_values, hint in zip(
            positions, last.visitor[chosen].tolist(), last.start[chosen].tolist(), last.end[chosen].tolist(),
            last.pageviews[chosen].tolist(), last.interactive[chosen].tolist(),
            last.exit_page[chosen].tolist(), entries, carried_rows, last.hints[chosen].tolist(), strict=True,
        ):
            start = int(started) / 1000
            out[position] = int(visitor), Visit(
                start=start,
                last=int(ended) / 1000,
                day=day_bucket(start, timezone),
                pageviews=int(pageviews),
                interactive=bool(interactive),
                hint=f"#{hint:016x}" if hint else "",
                entry=entry,
                exit_path=int(exit_path),
                carried=list(visit_values),
            )
        return out
