"""A person's rights over their stored events (GDPR articles 15 and 17, CCPA): export and erasure.

Only events sent with a ``user_id`` can be found again. Such an event's stored visitor id is
a keyed hash of the site and the user id (:meth:`VisitorHasher.user_id_hash
<appliance.ingest.visitors.VisitorHasher.user_id_hash>`, the key is the data dir's secret),
so hashing the id a person gives the same way finds exactly their events; the raw id is
never stored. Anonymous visitors are daily-salted hashes of address and browser that nobody
can link back to a person once the salt is gone, so there is nothing to look up for them.

*Export* returns every stored event of the person, from column blocks and log rows alike.

*Erasure* runs under the write coordinator's mutex from start to end, so no batch is aggregated
in between, and under the column store's lock for block rewrites, taken before the mutex as
compaction takes them, so no compaction runs in between either: pending events are folded in
first; the person's rows leave the column blocks (a new block generation without them) and the
event log; their open visit is closed without being counted; then every local day and UTC hour
they had events in is rebuilt from the events that remain. A sketch cannot forget one visitor,
and a counter of a visit figure cannot tell whose visit it counted, so a rebuilt bucket is
replaced whole: each counter and sketch of those days and hours is set to what aggregating the
remaining events gives (:func:`appliance.ingest.aggregation.aggregate` and the goals' own
counting, the ingest path's code), and then the days' order-dependent visit figures are
re-derived from the remaining events (:meth:`Rederiver.rederive_day
<appliance.ingest.rederive.Rederiver.rederive_day>`). Afterwards every report reads as it would
had the person's events never arrived. Materialised segments notice the changed hourly event
counts and materialise those days again.
"""

from __future__ import annotations

import time
from collections import defaultdict

import msgspec
import numpy as np

from appliance.definitions.goals import Goals
from appliance.events.block_cache import ScanBlocks
from appliance.events.codec import row_person
from appliance.events.columns import DAY_MS, ColumnStore
from appliance.events.coordinator import WriteCoordinator
from appliance.ingest.aggregation import BatchWrites, aggregate
from appliance.ingest.rederive import Rederiver
from appliance.ingest.visitors import VisitorHasher
from appliance.ingest.visits import VisitTable
from appliance.models import Event, Site
from appliance.periods import day_bucket, day_from_number, day_start_timestamp, hour_bucket
from storage import Store
from storage.counters import Counters
from storage.eventlog import EventLog
from storage.journal import Journal
from storage.keys import DAY, HOUR, unpack_bucket_key
from storage.records import Records
from storage.sketches import Sketch, Sketches
from storage.strings import StringTable

_HOUR_MS = 3_600_000
ERASURE_KIND = "erasure"


def erasure_identifier(site_id: int, visitor: int) -> str:
    return f"{site_id:010d}/{visitor:016x}"


class Erasure(msgspec.Struct, frozen=True, kw_only=True):
    """What an erasure removed: how many events, and the local days rebuilt."""

    events: int
    days: list[str]


class PersonalEvents:
    """Find, export and erase the events of one ``user_id`` on one site."""

    def __init__(
        self,
        *,
        store: Store,
        strings: StringTable,
        eventlog: EventLog,
        columns: ColumnStore,
        counters: Counters,
        sketches: Sketches,
        goals: Goals,
        visits: VisitTable,
        visitors: VisitorHasher,
        rederiver: Rederiver,
        coordinator: WriteCoordinator,
        records: Records,
        journal: Journal | None = None,
    ) -> None:
        self._store = store
        self._strings = strings
        self._eventlog = eventlog
        self._columns = columns
        self._counters = counters
        self._sketches = sketches
        self._goals = goals
        self._visits = visits
        self._visitors = visitors
        self._rederiver = rederiver
        self._coordinator = coordinator
        self._journal = journal
        self._records = records

    def visitor_of(self, site: Site, user_id: str) -> int:
        """The stored visitor id of ``user_id``'s events on ``site``."""
        return self._visitors.user_id_hash(site.id, user_id)

    def export(self, site: Site, user_id: str) -> list[tuple[str, Event]]:
        """Every stored event of the person as ``(event id, event)``, in time order
        (acknowledged ones included)."""
        with self._coordinator.mutex:
            self._coordinator.flush()
            return [(key.hex(), event) for key, event in self._find(site, self.visitor_of(site, user_id))]

    def _mask(self, visitor: int):
        return lambda block: (block.scalar("visitor") == visitor) & (block.scalar("user") != 0)

    def _find(self, site: Site, visitor: int) -> list[tuple[bytes, Event]]:
        found = []
        mask = self._mask(visitor)
        text = self._strings.text
        scan = ScanBlocks(limit=1)  # every day once: none of them kept in the shared cache
        for day in self._columns.days_with_events(site.id, 0, 0xFFFFFFFF):
            block = self._columns.block(site.id, day, scan)
            for row in np.flatnonzero(mask(block)).tolist():
                found.extend(block.events(text, row, row + 1))
        return found

    def erase(self, site: Site, user_id: str) -> Erasure:
        """Remove every event of the person and rebuild the figures they were part of."""
        return self.erase_visitor(site, self.visitor_of(site, user_id))

    def erase_visitor(self, site: Site, visitor: int) -> Erasure:
        """:meth:`erase` by the stored visitor id. The erasure is written down as a record
        (``erasure/<site>/<visitor hash>``, never the user id), which a standby copies and
        carries out too."""
        coordinator = self._coordinator
        # the block rewrites' lock before the mutex, as compaction takes them (ColumnStore.rewrite_lock)
        with self._columns.rewrite_lock, coordinator.mutex:
            coordinator.flush()
            found = self._find(site, visitor)
            if not found:
                if self._journal is not None:  # rows only in the journal (a standby's own erasure)
                    self._store.write(lambda txn: self._drop_journal_rows(txn, site.id, visitor))
                return Erasure(events=0, days=[])
            for day in sorted({int(event.timestamp * 1000) // DAY_MS for _, event in found}):
                self._columns.erase_rows(site.id, day, self._mask(visitor))
            events_db = self._store.db(b"events")

            def remove(txn):
                for key, _ in found:
                    if self._eventlog.get(txn, key) is not None:
                        txn.delete(key, db=events_db)
                self._visits.forget_visitor(txn, site.id, visitor)
                marker = msgspec.msgpack.encode({"at": time.time(), "events": len(found)})
                self._records.put(txn, ERASURE_KIND, erasure_identifier(site.id, visitor), marker)
                self._drop_journal_rows(txn, site.id, visitor)

            try:
                self._store.write(remove)
            except BaseException:
                self._visits.rolled_back()
                raise
            self._visits.committed()
            self._columns.forget(site.id)
            days = sorted({day_bucket(event.timestamp, site.timezone) for _, event in found})
            hours = sorted({hour_bucket(event.timestamp) for _, event in found})
            self._rebuild(site, days, hours)
            for day in days:
                self._rederiver.rederive_day(site.id, day)
        return Erasure(events=len(found), days=[day_from_number(day).isoformat() for day in days])

    def _drop_journal_rows(self, txn, site_id: int, visitor: int) -> None:
        """The person's rows a standby has not pulled yet go too."""
        if self._journal is not None:
            self._journal.delete_where(txn, lambda row_site, row: row_site == site_id and row_person(row) == (visitor, True))

    # -- rebuilding ------------------------------------------------------------------------
    def _events(self, site: Site, start_ms: int, end_ms: int) -> list[Event]:
        return [event for _, event in self._columns.events(site.id, start_ms, end_ms, self._strings.text)]

    def _rebuild(self, site: Site, days: list[int], hours: list[int]) -> None:
        """Replace every counter and sketch of the local ``days`` and UTC ``hours`` with what
        the remaining events give."""
        timezones = {site.id: site.timezone}
        day_events: list[Event] = []
        for day in days:
            start = int(day_start_timestamp(day_from_number(day), site.timezone) * 1000)
            end = int(day_start_timestamp(day_from_number(day + 1), site.timezone) * 1000)
            day_events.extend(self._events(site, start, end))
        hour_events: list[Event] = []
        for hour in hours:
            hour_events.extend(self._events(site, hour * _HOUR_MS, (hour + 1) * _HOUR_MS))
        strings = self._strings
        targets = [(DAY, day) for day in days] + [(HOUR, hour) for hour in hours]

        def write(txn):
            strings.rollback()
            intern = self._interner(txn)
            by_day, by_hour = BatchWrites(), BatchWrites()
            aggregate(day_events, timezones, intern, by_day)
            self._goals.count(day_events, timezones, by_day, intern)
            aggregate(hour_events, timezones, intern, by_hour)
            counts: dict[tuple[int, int], dict[int, dict[int, int]]] = defaultdict(lambda: defaultdict(dict))
            members: dict[tuple[int, int], dict[int, dict[int, Sketch]]] = defaultdict(lambda: defaultdict(dict))
            for writes, granularity in ((by_day, DAY), (by_hour, HOUR)):
                for key, value in writes.counters.items():
                    _, key_granularity, metric, bucket, dimension = unpack_bucket_key(key)
                    if key_granularity == granularity:
                        counts[(granularity, bucket)][metric][dimension] = value
                for key, (precision, hashes) in writes.sketches.items():
                    _, key_granularity, metric, bucket, dimension = unpack_bucket_key(key)
                    if key_granularity == granularity:
                        sketch = Sketch(precision)
                        sketch.add_many(hashes)
                        members[(granularity, bucket)][metric][dimension] = sketch
            counter_metrics = {g: set(self._counters.metrics(txn, site.id, g)) for g in (DAY, HOUR)}
            sketch_metrics = {g: set(self._sketches.metrics(txn, site.id, g)) for g in (DAY, HOUR)}
            for granularity, bucket in targets:
                new_counts, new_members = counts[(granularity, bucket)], members[(granularity, bucket)]
                for metric in sorted(counter_metrics[granularity] | new_counts.keys()):
                    self._counters.replace_bucket(txn, site.id, granularity, metric, bucket, new_counts.get(metric, {}))
                for metric in sorted(sketch_metrics[granularity] | new_members.keys()):
                    self._sketches.replace_bucket(txn, site.id, granularity, metric, bucket, new_members.get(metric, {}))

        try:
            self._store.write(write)
        except BaseException:
            strings.rollback()
            self._sketches.forget()
            raise
        strings.commit()
        self._sketches.forget()

    def _interner(self, txn):
        known = self._strings.known_ids
        allocate = self._strings.intern

        def intern(text: str) -> int:
            found = known.get(text)
            return found if found is not None else allocate(txn, text)

        return intern
