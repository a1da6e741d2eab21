"""Recording: the commit that makes a batch durable, and the aggregation step that follows it.

A commit makes events durable in one fsync'd transaction, the least that must be on disk before a
request is answered: by default in the intake (:mod:`storage.intake`, an LMDB environment of its own, so
it never waits for a fold), else (``[ingest] intake = false``, a kept replication journal, a standby, a
tight disk) in the store's event log and its small ``pending`` list. Folding them into counters,
sketches, open visits and goals (and a staged event into the event log) is the *aggregation step*: every
``aggregate_interval_ms`` or when ``aggregate_max_events`` wait, in slices of at most
``aggregate_slice_events`` (:meth:`Recorder.aggregate_slice`), on a thread of its own
(:mod:`appliance.ingest.folding`) or, without the intake, on the writer's between commits, so a commit
waits for one slice at most. The backlog is bounded (``max_waiting``, from ``[memory] budget_mb``): past
it a commit waits for the folds (:meth:`Recorder.over_backlog`), so a bulk load that sends faster than
the step folds waits for it instead of queueing events in memory; nothing is refused. A slice is never
smaller than the last commit, so a flood of batches cannot outrun the step; a settled read
(:class:`~appliance.events.coordinator.WriteCoordinator`) and the close fold what waits in read slices
(:meth:`Recorder.fold_waiting`). After a crash :meth:`Recorder.replay_pending` queues what ``pending``
lists and the intake holds past the event log's end. On a tight disk the commit aggregates in its own
transaction: no acknowledged event is stuck unaggregated.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from appliance.definitions.goals import Goals
from appliance.events.codec import decode_event, encode_events
from appliance.events.coordinator import WriteCoordinator
from appliance.ingest import staging
from appliance.ingest.aggregation import BatchWrites, aggregate
from appliance.ingest.cardinality import CardinalityGuard
from appliance.ingest.rederive import Rederiver
from appliance.ingest.visits import VisitTable
from appliance.models import Event
from appliance.tracker_first import TRACKER_FIRST, never
from storage import StorageFullError, Store
from storage.counters import Counters
from storage.eventlog import EventLog
from storage.intake import Intake
from storage.journal import Journal
from storage.retention import delete_prefix
from storage.sketches import Sketches
from storage.strings import StringTable

log = logging.getLogger(__name__)

#: A settled read folds a backlog in slices of at least this many events (each a transaction:
#: 100-event slices of a second's batches took past the read's 10 s budget; 1,000 take ~0.1 s).
READ_SLICE_EVENTS = 1_000


class Recorder:
    def __init__(
        self, *, store: Store, strings: StringTable, eventlog: EventLog, counters: Counters,
        sketches: Sketches, visits: VisitTable, goals: Goals, cardinality: CardinalityGuard,
        coordinator: WriteCoordinator, timezones: Callable[[], dict[int, str]],
        aggregate_interval_seconds: float, aggregate_max_events: int, aggregate_slice_events: int = 0,
        rederiver: Rederiver | None = None, journal: Journal | None = None, max_waiting: int = 0,
        intake: Intake | None = None, tracker_first: bool = True,
    ) -> None:
        self._store = store
        self._strings = strings
        self._eventlog = eventlog
        self._counters = counters
        self._sketches = sketches
        self._visits = visits
        self._goals = goals
        self._cardinality = cardinality
        self._coordinator = coordinator
        self._timezones = timezones
        self._interval = aggregate_interval_seconds
        self._max = aggregate_max_events
        self._slice = aggregate_slice_events or None  # None: the whole queue at once
        #: the backlog's bound in events (0: none), from ``[memory] budget_mb``
        self.max_waiting = max_waiting
        self._draining = False  # a due aggregation is under way, slice by slice
        self._last_commit = 0  # events in the last commit: the least a slice folds
        self._rederiver = rederiver
        #: the replication journal while kept (None otherwise), switched under the coordinator's mutex
        self.journal = journal
        #: the global sequence of the last committed event (the replication journal's end)
        self.last_sequence = eventlog.next_sequence - 1
        #: committed events not yet folded: ``(log key, event, sequence)``, the sequence 0
        #: for events already in the event log (and ``pending``), else the intake's
        self._unaggregated: list[tuple[bytes, Event, int]] = []
        self._folding: list[tuple[bytes, Event, int]] = []  # the batch a fold took, until it commits
        self._queue_lock = threading.Lock()  # the queue between the committing and folding threads
        self._folded = threading.Condition(self._queue_lock)  # notified as folds take events
        self._intake = intake
        self._room = staging.Room(store, intake, max_waiting) if intake is not None else None
        #: the sequence the next committed event gets (in either place)
        self.next_sequence = max(eventlog.next_sequence, intake.last_sequence() + 1 if intake else 0)
        #: staged sequences at or below it are in the main store durably (the intake may drop them)
        self.durable_through = 0
        #: set while a thread folds on its own (:mod:`appliance.ingest.folding`): a commit
        #: over the backlog's bound then waits for it instead of folding itself
        self.folding_elsewhere = False
        self.folds_taken = self.folds_done = 0  # events folds took off the backlog / committed, ever
        self.tracker_first = tracker_first  # folds step aside for tracker requests (:mod:`appliance.tracker_first`)
        self._last_flush = time.monotonic()
        self._pending_db = store.db(b"pending")
        #: told of every committed batch, after it (``PassedDays``); must be quick and not raise
        self.on_commit: Callable[[list[Event]], None] | None = None
        coordinator.bind(self.fold_waiting, self.slices_waiting, lambda: self.aggregate_pending(self._read_slice),
                         self._folded, lambda: (self.folds_taken, self.folds_done, len(self._unaggregated), self.folding_elsewhere))

    @property
    def waiting(self) -> int:
        """Committed events not yet aggregated."""
        return len(self._unaggregated)

    @property
    def aggregation_lag_seconds(self) -> float:
        """How long committed events have waited to be aggregated (0 when none waits)."""
        return time.monotonic() - self._last_flush if self._unaggregated else 0.0

    def _interner(self, txn) -> Callable[[str], int]:
        known = self._strings.known_ids  # committed ids: a plain dict lookup on the hot path
        allocate = self._strings.intern

        def intern(text: str) -> int:
            found = known.get(text)
            return found if found is not None else allocate(txn, text)

        return intern

    # -- the commit -----------------------------------------------------------------------
    def commit(
        self, events: list[Event], *, sequences: list[int] | None = None, also: Callable[[object], None] | None = None
    ) -> list[bytes]:
        """Append a batch durably (the writer thread's commit); returns the log keys. A
        standby gives the primary's ``sequences``, and ``also(txn)`` writes its cursor in the
        same transaction.

        With an intake (and no journal kept, room in the store for every event it may stage:
        :class:`~appliance.ingest.staging.Room`) the batch is staged there (:meth:`_stage`);
        otherwise it goes to the event log and ``pending`` in the main store, after whatever
        the intake staged before it."""
        if sequences is None and also is None and self._staging():
            return self._stage(events)
        timezones = self._timezones()
        strings = self._strings

        def transaction(txn):
            # A retried attempt (after the map grew) starts from the committed state.
            strings.rollback()
            self._eventlog.rolled_back()
            intern = self._interner(txn)
            bounded = self._cardinality.apply(txn, events, timezones, intern)
            entries = [
                (event.site_id, int(event.timestamp * 1000), row)
                for event, row in zip(bounded, encode_events(bounded, intern), strict=True)
            ]
            first = self._eventlog.next_sequence
            keys = self._eventlog.append(txn, entries, sequences)
            if (journal := self.journal) is not None:
                numbers = sequences if sequences is not None else range(first, first + len(entries))
                rows = [(n, site, ms, row) for n, (site, ms, row) in zip(numbers, entries, strict=True)]
                journal.append(txn, rows, int(time.time()))
            if also is not None:
                also(txn)
            if combined is not None:
                self._aggregate_in(txn, combined + [(key, event, 0) for key, event in zip(keys, bounded, strict=True)], timezones)
            else:
                for key in keys:
                    txn.put(key, b"", db=self._pending_db)
            return keys, bounded

        with self._coordinator.mutex.ahead():  # its requests wait: before folds and reads
            if self._unaggregated and self._unaggregated[-1][2]:  # staged events (the queue's tail)
                self.aggregate_pending()  # first: the log keeps their order
            combined = list(self._unaggregated) if self._store.tight else None
            try:
                keys, bounded = self._store.write(transaction)
            except BaseException:
                strings.rollback()
                self._eventlog.rolled_back()
                self._cardinality.forget()
                if combined is not None:
                    self._visits.rolled_back()
                    self._sketches.forget()
                raise
            strings.commit()
            self._eventlog.committed()
            self.last_sequence = self._eventlog.next_sequence - 1
            self.next_sequence = max(self.next_sequence, self._eventlog.next_sequence)
            with self._queue_lock:
                if combined is not None:
                    self._visits.committed()
                    self._sketches.committed()
                    del self._unaggregated[: len(combined)]
                    self._last_flush = time.monotonic()
                else:
                    self._unaggregated.extend((key, event, 0) for key, event in zip(keys, bounded, strict=True))
            self._last_commit = len(events)
        self._committed(bounded)
        return keys

    def _committed(self, events: list[Event]) -> None:
        if self.on_commit is not None:
            try:
                self.on_commit(events)
            except Exception:  # the batch is durable: its answer must not fail now
                log.exception("a commit observer failed")

    def _staging(self) -> bool:
        """Whether a commit now goes to the intake (no journal kept, room in the store)."""
        return self._intake is not None and self.journal is None and self._room.enough()

    def folds_may_step_aside(self) -> bool:
        """Whether a fold may wait for the tracker's requests (:mod:`appliance.tracker_first`):
        while commits go to the intake, a thread folds them, and the backlog is under its bound
        (no commit waits for the fold)."""
        return self.tracker_first and self.folding_elsewhere and not self.over_backlog() and self._staging()

    def _stage(self, events: list[Event]) -> list[bytes]:
        """Commit a batch to the intake (:mod:`storage.intake`): durable once this returns,
        with no lock of the main store taken, so it never waits for a fold. The events reach
        the event log when they are folded (:func:`~appliance.ingest.staging.log_staged`),
        under the sequences given here."""
        if not events:
            return []
        if self.over_backlog():
            self._wait_for_folds()
        first = self.next_sequence
        sequences = range(first, first + len(events))
        keys = staging.stage(self._intake, events, first, self.durable_through)
        self.next_sequence = first + len(events)
        with self._folded:
            self._unaggregated.extend(zip(keys, events, sequences, strict=True))
            if len(self._unaggregated) >= self._max or self.over_backlog():
                self._folded.notify_all()  # the folding thread: due now
        self._last_commit = len(events)
        self._committed(events)
        return keys

    def _wait_for_folds(self) -> None:
        """The backlog is at its bound: wait until the folding thread takes it below (or fold
        a slice here when no thread folds on its own)."""
        if not self.folding_elsewhere:
            with self._coordinator.mutex:
                self.aggregate_pending(max(self._slice or 0, READ_SLICE_EVENTS))
            return
        with self._folded:
            self._folded.wait_for(lambda: not self.over_backlog() or not self.folding_elsewhere, timeout=10)

    # -- the aggregation step -------------------------------------------------------------
    def over_backlog(self) -> bool:
        """Whether the committed events waiting for the aggregation step reach the bound: the
        next commit then waits for the folding thread, or without the intake the writer folds
        before it commits more (:class:`~appliance.ingest.writer.Writer`'s ``hold``)."""
        return 0 < self.max_waiting <= len(self._unaggregated)

    def aggregation_due(self) -> bool:
        """Whether committed events should be aggregated now (interval, count, the backlog's
        bound, or a step under way)."""
        return bool(self._unaggregated) and (
            self._draining
            or len(self._unaggregated) >= self._max
            or self.over_backlog()
            or time.monotonic() - self._last_flush >= self._interval
        )

    @property
    def _read_slice(self) -> int | None:
        return max(self._slice, READ_SLICE_EVENTS) if self._slice else None

    def holds(self, site_id: int) -> bool:
        """Whether a committed event of ``site_id`` waits to be folded, or is being folded (a
        staged event reaches the event log only when its fold commits)."""
        with self._queue_lock:
            queued = (*self._unaggregated, *self._folding)
        return any(event.site_id == site_id for _, event, _ in queued)

    def wait_until_due(self, timeout: float) -> None:
        """Wait until an aggregation is due (at most ``timeout`` seconds; the folding thread)."""
        with self._folded:
            if not self.aggregation_due():
                due_in = self._interval - (time.monotonic() - self._last_flush) if self._unaggregated else timeout
                self._folded.wait(max(0.0, min(timeout, due_in)))

    def wake_folding(self) -> None:
        with self._folded:
            self._folded.notify_all()

    def slices_waiting(self) -> int:
        """How many slices a settled read folds the waiting events in (1 unsliced)."""
        if not self._unaggregated:
            return 0
        return -(-len(self._unaggregated) // self._read_slice) if self._read_slice else 1

    def fold_waiting(self) -> int:
        """The coordinator's flush: the events waiting now, a read slice per transaction (LMDB
        keeps a buffer, for good, per page its largest write transaction dirtied: ``Store``)."""
        left, folded = len(self._unaggregated), 0
        size = self._read_slice or left
        while done := self.aggregate_pending(max(1, min(size, left - folded))):  # not those committed since
            if (folded := folded + done) >= left:
                break
        return folded

    def aggregate_slice(self) -> bool:
        """When due, aggregate at most ``aggregate_slice_events`` of the waiting events in one
        transaction (the folding thread, or the writer between commits); returns whether more is
        due. A commit that failed here is not the batch's: its events stay pending."""
        if not self.aggregation_due():
            self._draining = False
            return False
        self._draining = True
        try:
            with self._coordinator.mutex:
                self.aggregate_pending(max(self._slice, self._last_commit) if self._slice else None, idle_visits=True)
        except StorageFullError as error:
            # The batch is stored: failing here would have it sent (or applied) again. Its
            # events stay pending, folded in by a later aggregation step.
            log.warning("aggregation after a commit failed, events stay pending: %s", error)
            self._draining = False
            return False
        self._draining = bool(self._unaggregated)
        return self._draining

    def aggregate_pending(self, limit: int | None = None, idle_visits: bool = False) -> int:
        """Fold committed events (the oldest ``limit``, or all) into counters, sketches,
        visits and goals; returns how many. Runs under the coordinator's mutex (call
        :meth:`WriteCoordinator.flush`). With ``idle_visits`` (the writer's slices, not a
        settled read's) a chunk of idle visits closes in the same transaction when one is due."""
        aside = TRACKER_FIRST.step_aside if self.folds_may_step_aside() else never  # the backlog before it is taken
        with self._queue_lock:
            if limit is None or limit >= len(self._unaggregated):
                batch, self._unaggregated = self._unaggregated, []
            else:
                batch, self._unaggregated = self._unaggregated[:limit], self._unaggregated[limit:]
            self.folds_taken += len(batch)
            self._folding = batch
        if not batch:
            self._rederive()
            return 0
        timezones = self._timezones()
        strings = self._strings

        def transaction(txn):
            strings.rollback()
            self._eventlog.rolled_back()
            self._aggregate_in(txn, batch, timezones, idle_visits, aside)

        try:
            self._store.write(transaction, durable=False)  # its events stay pending until it commits
        except BaseException:
            strings.rollback()
            self._eventlog.rolled_back()
            self._cardinality.forget()
            self._visits.rolled_back()
            self._sketches.forget()
            with self._folded:
                self._unaggregated[:0] = batch  # still pending (or staged), on disk and in memory
                self.folds_taken -= len(batch)
                self._folding = []
            raise
        strings.commit()
        self._eventlog.committed()
        self.last_sequence = self._eventlog.next_sequence - 1
        self._visits.committed()
        self._sketches.committed()
        self._last_flush = time.monotonic()
        with self._folded:
            self.folds_done += len(batch)
            self._folding = []
            self._folded.notify_all()
        if not self._unaggregated:
            self._rederive()
        return len(batch)

    def _rederive(self) -> None:
        """Re-derive the visits-dirty days that are due (late events; see
        :mod:`appliance.ingest.rederive`)."""
        if self._rederiver is not None:
            self._rederiver.run()

    def _aggregate_in(
        self, txn, batch: list[tuple[bytes, Event]], timezones: dict[int, str], idle_visits: bool = False, aside=never
    ) -> None:
        """Fold ``(log key, event)`` pairs into counters, sketches, goals and visits, and strike them
        from ``pending``, inside ``txn``; close what the batch puts over the visit table's bound, and
        with ``idle_visits`` a chunk of idle visits when due (:meth:`VisitTable.close_in
        <appliance.ingest.visits.VisitTable.close_in>`). Between its stages it calls ``aside`` (:meth:`TrackerFirst.step_aside <appliance.tracker_first.TrackerFirst.step_aside>`)."""
        intern = self._interner(txn)
        writes = BatchWrites()
        logged = [event for _, event, _ in batch]
        if batch[-1][2]:  # staged events (always the queue's tail): into the event log first
            logged = staging.log_staged(txn, batch, logged, timezones, intern, self._cardinality, self._eventlog, self.journal)
            aside()
        # Visits first: an event joining an open visit counts with its visit's properties (source, UTM tags...)
        events = self._visits.apply(txn, logged, timezones, writes.counter_deltas, intern)
        if self._visits.late and self._rederiver is not None:
            # events late for their visitor: their days' visit figures are derived again
            self._rederiver.mark(txn, self._visits.late)
        self._visits.close_in(txn, time.time(), idle=idle_visits)
        aside()
        aggregate(events, timezones, intern, writes)
        self._goals.count(events, timezones, writes, intern)
        aside()
        self._counters.apply(txn, writes.counters)
        aside()
        self._sketches.add(txn, writes.sketches)
        for key, _, sequence in batch:
            if not sequence:
                txn.delete(key, db=self._pending_db)

    def replay_pending(self) -> int:
        """After a crash: queue the committed events that were never aggregated."""
        text = self._strings.text
        with self._store.read() as txn:
            for key, _ in txn.cursor(db=self._pending_db):
                value = self._eventlog.get(txn, key)
                if value is None:
                    continue
                site_id, timestamp_ms, _ = self._eventlog.split_key(key)
                event = decode_event(site_id, timestamp_ms, value, lambda i: text(i, txn))
                self._unaggregated.append((key, event, 0))
        if self._intake is not None:  # and the staged events the store does not hold
            self.durable_through = self._eventlog.next_sequence - 1
            self._unaggregated.extend(staging.replay(self._intake, self._store, self.durable_through, self._timezones()))
        return len(self._unaggregated)

    def delete_site(self, txn, site_id: int) -> None:
        """Forget a deleted site's waiting events (inside the deleting transaction)."""
        with self._queue_lock:
            self._unaggregated = [item for item in self._unaggregated if item[1].site_id != site_id]
        delete_prefix(txn, self._pending_db, site_id.to_bytes(4, "big"))

    def flush_to_disk(self) -> None:
        """Flush the main store, then let the intake drop what the store now holds durably
        (the folding thread calls this every second or so; off the write lock)."""
        through = self._eventlog.next_sequence - 1
        if self._intake is None or through <= self.durable_through:
            return
        self._store.sync()
        self.durable_through = through
