"""Recording: the commit that makes a batch durable, and the aggregation step that follows it.

A commit makes events durable by appending them to the event log and to the small
``pending`` database, in one fsync'd transaction: the least that must be on disk before a
request is answered. Folding them into counters, sketches, open visits and goals (many more
pages) is the *aggregation step*, :meth:`Recorder.aggregate_pending`: before any settled read
(see :class:`~appliance.events.coordinator.WriteCoordinator`), when the writer is idle, and at
close. Under traffic it goes in *slices*: once events have waited ``aggregate_interval_ms``,
each commit also folds the oldest :data:`SLICE_EVENTS` (or twice its batch) in its own
transaction (one fsync for both; should that fail, the batch is committed alone), until none
waits, so no commit waits behind a whole interval's aggregation; when
``aggregate_max_events`` wait, the writer folds them all once the batch is acknowledged
(:meth:`Recorder.aggregate_after_commit`). After a crash,
:meth:`Recorder.replay_pending` queues whatever ``pending`` still lists. When the disk is
tight the commit aggregates in its own transaction, so an acknowledged event can never be
stuck unaggregated on a full disk.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from appliance.definitions.goals import Goals
from appliance.events.codec import decode_event, encode_event
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

#: At most this many waiting events (or twice the batch, so the slices keep up with big
#: batches) are folded into one commit: 5-20 ms of work at 20-80 us an event. Each slice
#: rewrites every sketch and counter it touches, so smaller slices cost more per event
#: (128: about 35 % more CPU than 256 in a closed-loop writer test; 2,048: ~10 % less, but
#: its longest commits took 0.3-0.5 s).
SLICE_EVENTS = 256


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
        rederiver: Rederiver | None = None,
        journal: Journal | None = None,
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
        self._rederiver = rederiver
        self._journal = journal
        #: the global sequence of the last committed event (the replication journal's end)
        self.last_sequence = eventlog.next_sequence - 1
        self._unaggregated: list[tuple[bytes, Event]] = []
        self._last_flush = time.monotonic()
        self._rederive_due = False  # a commit's slice folded the last waiting events
        self._pending_db = store.db(b"pending")
        coordinator.bind(self.aggregate_pending)

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
                (event.site_id, int(event.timestamp * 1000), encode_event(event, intern)) for event in bounded
            ]
            first = self._eventlog.next_sequence
            keys = self._eventlog.append(txn, entries, sequences)
            if self._journal is not None:
                numbers = sequences if sequences is not None else range(first, first + len(entries))
                rows = [(n, site, ms, row) for n, (site, ms, row) in zip(numbers, entries, strict=True)]
                self._journal.append(txn, rows, int(time.time()))
            if also is not None:
                also(txn)
            if combined is not None:
                self._aggregate_in(txn, combined + list(zip(keys, bounded, strict=True)), timezones)
            else:
                if folding:  # older events, due: folded in this transaction, one fsync for both
                    self._aggregate_in(txn, folding, timezones)
                for key in keys:
                    txn.put(key, b"", db=self._pending_db)
            return keys, bounded

        with self._coordinator.mutex:
            combined = list(self._unaggregated) if self._store.tight else None
            folding = self._due_slice(len(events)) if combined is None else []
            try:
                keys, bounded = self._store.write(transaction)
            except Exception:
                self._rolled_back(aggregated=combined is not None or bool(folding))
                if not folding:
                    raise
                # The batch must not fail for the aggregation riding along: commit it alone.
                log.exception("folding %d waiting events into a commit failed; committing the batch alone",
                              len(folding))
                folding = []
                try:
                    keys, bounded = self._store.write(transaction)
                except BaseException:
                    self._rolled_back(aggregated=False)
                    raise
            except BaseException:
                self._rolled_back(aggregated=combined is not None or bool(folding))
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
                if folding:
                    self._visits.committed()
                    self._sketches.committed()
                    del self._unaggregated[: len(folding)]
                    if not self._unaggregated:
                        self._last_flush = time.monotonic()
                        self._rederive_due = True  # after the acknowledgement, not before it
                self._unaggregated.extend(zip(keys, bounded, strict=True))
        return keys

    def _due_slice(self, committing: int) -> list[tuple[bytes, Event]]:
        """The waiting events to fold into this commit: none until they have waited
        ``aggregate_interval_ms``, then the oldest :data:`SLICE_EVENTS` (or twice the batch
        being committed, so the step keeps up with big batches) each commit until none waits."""
        if not self._unaggregated or time.monotonic() - self._last_flush < self._interval:
            return []
        return self._unaggregated[: max(SLICE_EVENTS, 2 * committing)]

    def _rolled_back(self, *, aggregated: bool) -> None:
        """Forget what a failed commit transaction changed in memory."""
        self._strings.rollback()
        self._eventlog.rolled_back()
        self._cardinality.forget()
        if aggregated:
            self._visits.rolled_back()
            self._sketches.forget()

    def aggregate_after_commit(self) -> int:
        """The writer's step after a commit, its batch acknowledged: everything waiting is
        folded at once when ``aggregate_max_events`` wait (the commits' slices fell behind),
        and late events' days are re-derived once the slices have folded every waiting event.
        Returns how many were folded. A failure (a full disk) leaves them pending."""
        try:
            if len(self._unaggregated) >= self._max:
                return self._coordinator.flush()
            if self._rederive_due:
                self._rederive_due = False
                with self._coordinator.mutex:
                    self._rederive()
        except StorageFullError as error:
            # The batch is stored: failing here would have it sent (or applied) again. Its
            # events stay pending, folded in by a later aggregation step.
            log.warning("aggregation after a commit failed, events stay pending: %s", error)
        return 0

    # -- the aggregation step -------------------------------------------------------------
    def aggregate_pending(self) -> int:
        """Fold committed events into counters, sketches, visits and goals; returns how many.
        Runs under the coordinator's mutex (call :meth:`WriteCoordinator.flush`)."""
        batch, self._unaggregated = self._unaggregated, []
        if not batch:
            self._rederive()
            return 0
        timezones = self._timezones()
        strings = self._strings

        def transaction(txn):
            strings.rollback()
            self._aggregate_in(txn, batch, timezones)

        try:
            self._store.write(transaction)
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
        self._rederive()
        return len(batch)

    def _rederive(self) -> None:
        """Re-derive the visits-dirty days that are due (late events; see
        :mod:`appliance.ingest.rederive`)."""
        if self._rederiver is not None:
            self._rederiver.run()

    def _aggregate_in(self, txn, batch: list[tuple[bytes, Event]], timezones: dict[int, str]) -> None:
        """Fold ``(log key, event)`` pairs into counters, sketches, goals and visits, and
        strike them from ``pending``, inside ``txn``."""
        intern = self._interner(txn)
        writes = BatchWrites()
        # Visits first: an event that joins an open visit is counted with the visit's
        # properties (source, channel, referrer, UTM tags of its first event).
        events = self._visits.apply(txn, [event for _, event in batch], timezones, writes.counter_deltas, intern)
        if self._visits.late and self._rederiver is not None:
            # events late for their visitor: their days' visit figures are derived again
            self._rederiver.mark(txn, self._visits.late)
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
