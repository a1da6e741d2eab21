"""Recording: the commit that makes a batch durable, and the aggregation step that follows it.

A commit makes events durable by appending them to the event log and to the small
``pending`` database, in one fsync'd transaction: the least that must be on disk before a
request is answered. Folding them into counters, sketches, open visits and goals (many more
pages) is the *aggregation step*: every ``aggregate_interval_ms`` or when
``aggregate_max_events`` wait, the writer thread runs it between commits in slices of at most
``aggregate_slice_events`` (:meth:`Recorder.aggregate_slice`), so a commit, and the requests
waiting for it, never waits for more than one slice. The backlog itself is bounded
(``max_waiting``, from ``[memory] budget_mb``: :mod:`appliance.memory`): past it the writer
folds slices before it commits the next batch (:meth:`Recorder.over_backlog`), so a bulk load
that sends faster than the step folds waits for it (its requests take longer) instead of
queueing events in memory ahead of it; nothing is refused. A slice is never smaller than the last
commit, so under a flood of batches (a commit after every slice) the step keeps pace instead
of falling ever further behind. Before any settled read (see
:class:`~appliance.events.coordinator.WriteCoordinator`) and at close it runs whole
(:meth:`Recorder.aggregate_pending`). After a crash,
:meth:`Recorder.replay_pending` queues whatever ``pending`` still lists. When the disk is
tight the commit aggregates in its own transaction, so an acknowledged event can never be
stuck unaggregated on a full disk.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from appliance.definitions.goals import Goals
from appliance.events.codec import decode_event, encode_events
from appliance.events.coordinator import WriteCoordinator
from appliance.ingest.aggregation import BatchWrites, aggregate
from appliance.ingest.cardinality import CardinalityGuard
from appliance.ingest.rederive import Rederiver
from appliance.ingest.visits import VisitTable
from appliance.models import Event
from storage import StorageFullError, Store
from storage.counters import Counters
from storage.eventlog import EventLog
from storage.journal import Journal
from storage.retention import delete_prefix
from storage.sketches import Sketches
from storage.strings import StringTable

log = logging.getLogger(__name__)

#: A settled read folds a backlog in slices of at least this many events: each slice is a
#: transaction of its own (an fsync, and every touched sketch rewritten), so a backlog of a
#: second's batch traffic in 100-event slices took longer than the read's 10 s budget
#: (``scripts/bench``'s batch runs); 1,000 hold the mutex for about 0.1 s each.
READ_SLICE_EVENTS = 1_000


class Recorder:
    def __init__(
        self,
        *,
        store: Store,
        strings: StringTable,
        eventlog: EventLog,
        counters: Counters,
        sketches: Sketches,
        visits: VisitTable,
        goals: Goals,
        cardinality: CardinalityGuard,
        coordinator: WriteCoordinator,
        timezones: Callable[[], dict[int, str]],
        aggregate_interval_seconds: float,
        aggregate_max_events: int,
        aggregate_slice_events: int = 0,
        rederiver: Rederiver | None = None,
        journal: Journal | None = None,
        max_waiting: int = 0,
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
        #: the replication journal while it is kept (None otherwise): replication switches it
        #: on and off, holding the coordinator's mutex, so a commit sees one or the other
        self.journal = journal
        #: the global sequence of the last committed event (the replication journal's end)
        self.last_sequence = eventlog.next_sequence - 1
        self._unaggregated: list[tuple[bytes, Event]] = []
        self._last_flush = time.monotonic()
        self._pending_db = store.db(b"pending")
        #: told of every committed batch, after the commit (the job runner's
        #: :class:`~appliance.runtime.passed_days.PassedDays`); must be quick and not raise
        self.on_commit: Callable[[list[Event]], None] | None = None
        coordinator.bind(self.aggregate_pending, self.slices_waiting, lambda: self.aggregate_pending(self._read_slice))

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
        same transaction."""
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
                self._aggregate_in(txn, combined + list(zip(keys, bounded, strict=True)), timezones)
            else:
                for key in keys:
                    txn.put(key, b"", db=self._pending_db)
            return keys, bounded

        with self._coordinator.mutex.ahead():  # its requests wait: before folds and reads
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
            if combined is not None:
                self._visits.committed()
                self._sketches.committed()
                del self._unaggregated[: len(combined)]
                self._last_flush = time.monotonic()
            else:
                self._unaggregated.extend(zip(keys, bounded, strict=True))
            self._last_commit = len(events)
        if self.on_commit is not None:
            try:
                self.on_commit(bounded)
            except Exception:  # the batch is durable: its answer must not fail now
                log.exception("a commit observer failed")
        return keys

    # -- the aggregation step -------------------------------------------------------------
    def over_backlog(self) -> bool:
        """Whether the committed events waiting for the aggregation step reach the bound: the
        writer then folds before it commits more (:class:`~appliance.ingest.writer.Writer`'s
        ``hold``)."""
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

    def slices_waiting(self) -> int:
        """How many slices a settled read folds the waiting events in (1 unsliced)."""
        if not self._unaggregated:
            return 0
        return -(-len(self._unaggregated) // self._read_slice) if self._read_slice else 1

    def aggregate_slice(self) -> bool:
        """When due, aggregate at most ``aggregate_slice_events`` of the waiting events in one
        transaction (the writer thread calls this between commits); returns whether more is
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
        if limit is None or limit >= len(self._unaggregated):
            batch, self._unaggregated = self._unaggregated, []
        else:
            batch, self._unaggregated = self._unaggregated[:limit], self._unaggregated[limit:]
        if not batch:
            self._rederive()
            return 0
        timezones = self._timezones()
        strings = self._strings

        def transaction(txn):
            strings.rollback()
            self._aggregate_in(txn, batch, timezones, idle_visits)

        try:
            self._store.write(transaction, durable=False)  # its events stay pending until it commits
        except BaseException:
            strings.rollback()
            self._visits.rolled_back()
            self._sketches.forget()
            self._unaggregated[:0] = batch  # still pending, on disk and in memory
            raise
        strings.commit()
        self._visits.committed()
        self._sketches.committed()
        self._last_flush = time.monotonic()
        if not self._unaggregated:
            self._rederive()
        return len(batch)

    def _rederive(self) -> None:
        """Re-derive the visits-dirty days that are due (late events; see
        :mod:`appliance.ingest.rederive`)."""
        if self._rederiver is not None:
            self._rederiver.run()

    def _aggregate_in(
        self, txn, batch: list[tuple[bytes, Event]], timezones: dict[int, str], idle_visits: bool = False
    ) -> None:
        """Fold ``(log key, event)`` pairs into counters, sketches, goals and visits, and
        strike them from ``pending``, inside ``txn``; close what the batch puts over the visit
        table's bound, and with ``idle_visits`` a chunk of idle visits when one is due
        (:meth:`VisitTable.close_in <appliance.ingest.visits.VisitTable.close_in>`)."""
        intern = self._interner(txn)
        writes = BatchWrites()
        # Visits first: an event that joins an open visit is counted with the visit's
        # properties (source, channel, referrer, UTM tags of its first event).
        events = self._visits.apply(txn, [event for _, event in batch], timezones, writes.counter_deltas, intern)
        if self._visits.late and self._rederiver is not None:
            # events late for their visitor: their days' visit figures are derived again
            self._rederiver.mark(txn, self._visits.late)
        self._visits.close_in(txn, time.time(), idle=idle_visits)
        aggregate(events, timezones, intern, writes)
        self._goals.count(events, timezones, writes, intern)
        self._counters.apply(txn, writes.counters)
        self._sketches.add(txn, writes.sketches)
        for key, _ in batch:
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
                self._unaggregated.append((key, event))
        return len(self._unaggregated)

    def delete_site(self, txn, site_id: int) -> None:
        """Forget a deleted site's waiting events (inside the deleting transaction)."""
        self._unaggregated = [item for item in self._unaggregated if item[1].site_id != site_id]
        delete_prefix(txn, self._pending_db, site_id.to_bytes(4, "big"))
