"""Materialised segments: a segment's dashboard metrics kept as counters and sketches per day.

A segment marked ``materialised`` is answered like the unfiltered dashboard — counters
summed and visitor sketches unioned over the period — instead of scanning and re-deciding
membership for every visit of the period. Membership is per *visit* and can change until
the visit ends (a later event can satisfy ``did_event`` or break a negated filter), so a
day is materialised once its visits are over: for each local day ``D`` (the site's time
zone) that ended :data:`SETTLE_SECONDS` ago, the visits that *started* on ``D`` are rebuilt
and tested with the scan path's own code (:func:`appliance.query.membership.members`), and
the member visits are written as

- visits, bounces and duration (ms) in day ``D``'s bucket;
- page views, custom events, conversions, a visitor sketch and a sketch per conversion type
  in the bucket of each event's local day (``D`` and, for a visit crossing midnight, the
  next day),

all under the dimension ``"<counter id>\\x1f<D>"`` (interned), so the day can be
re-materialised by deleting exactly what it wrote. A per-day record keeps those keys and
the day's *basis*: the number of events counted (hourly ``EVENTS_TOTAL``) from the visit
timeout before ``D`` to the visit timeout after its last visit ended. A late event in that
window changes the count, and the day is stale until the hourly job materialises it again.

Queries (:meth:`Materialiser.aggregate`, :meth:`Materialiser.timeseries`): the period's
fresh days come from the counters; the days after the last fresh day (today, yesterday
before it settles) are scanned, keeping the member visits that started on them; a stale day
inside the period sends the whole query to the scan path. Visits are counted whole, by the
day they started (as the unfiltered counters count them), where the scan path cuts a visit
at the period's first midnight; both agree whenever no visit crosses the period's start.
Visitors are HyperLogLog unions (exact up to 256, as everywhere on the fast path).

A changed definition gets a new counter id and is materialised again from the log
(back-fill, in a background thread; progress in :meth:`Materialiser.status`). Segments
whose membership depends on the queried period (``visitor_type``) cannot be materialised.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import defaultdict

import msgspec
import numpy as np

from appliance import dimensions as dims
from appliance.definitions.goals import Goals
from appliance.definitions.segments import Segments
from appliance.definitions.tasks import BackgroundTasks
from appliance.events.coordinator import WriteCoordinator
from appliance.models import EventKind
from appliance.periods import (
    day_from_number,
    day_number,
    day_start_timestamp,
    local_today,
)
from appliance.query.membership import members as segment_members
from appliance.query.scans import Scans
from appliance.query.spec import FIRST_DAY, Query
from appliance.sites import SiteRegistry
from storage import Store
from storage.arrays import distinct_values
from storage.counters import Counters
from storage.keys import DAY, HOUR, pack_bucket_key
from storage.records import Records
from storage.sketches import SITE_PRECISION, Sketch, Sketches
from storage.strings import StringTable

log = logging.getLogger(__name__)

# Metric ids (storage keys; see appliance.dimensions and appliance.definitions.goals — never renumber).
SEGMENT_VISITS = 60  # bucket: the local day the visit started
SEGMENT_BOUNCES = 61
SEGMENT_DURATION_MS = 62
SEGMENT_PAGEVIEWS = 63  # bucket: the local day of the event
SEGMENT_EVENTS = 64
SEGMENT_CONVERSIONS = 65
SEGMENT_VISITORS = 160  # sketch, bucket: the local day of the event
SEGMENT_CONVERTERS = 161  # sketch per conversion type; dimension "<counter>\x1f<day>\x1f<type>"
SETTLE_SECONDS = 2 * 3600  # a day is materialised this long after it ends
CHUNK_DAYS = 7  # days materialised from one frame
_RECORD = "segment-day"
SEPARATOR = "\x1f"
_PAGEVIEW, _CUSTOM, _CONVERSION = int(EventKind.PAGEVIEW), int(EventKind.CUSTOM), int(EventKind.CONVERSION)


class DayRecord(msgspec.Struct, array_like=True):
    """What materialising one day of one segment wrote, and the events it saw."""

    counter: int
    first_hour: int
    last_hour: int
    events: int
    keys: list[bytes]
    goals: str = ""  # the goal definitions the segment used (see _goals_version)


_record_decoder = msgspec.msgpack.Decoder(DayRecord)


def _identifier(site_id: int, counter: int, day: int) -> str:
    return f"{site_id:010d}/{counter:010d}/{day:06d}"


class Materialiser:
    """Keeps materialised segments' per-day figures and answers queries from them."""

    def __init__(
        self,
        *,
        store: Store,
        records: Records,
        counters: Counters,
        sketches: Sketches,
        strings: StringTable,
        coordinator: WriteCoordinator,
        sites: SiteRegistry,
        scans: Scans,
        segments: Segments,
        goals: Goals,
    ) -> None:
        self._store = store
        self._records = records
        self._counters = counters
        self._sketches = sketches
        self._strings = strings
        self._coordinator = coordinator
        self._sites = sites
        self._scans = scans
        self._segments = segments
        self._goals = goals
        self._lock = threading.Lock()  # one materialisation at a time
        self._tasks = BackgroundTasks("segment")

    # -- what is fresh --------------------------------------------------------------------
    def _hours(self, txn, site_id: int, first_hour: int, last_hour: int) -> dict[int, int]:
        counts: dict[int, int] = defaultdict(int)
        for hour, _, value in self._counters.scan(txn, site_id, HOUR, dims.EVENTS_TOTAL, first_hour, last_hour):
            counts[hour] += value
        return counts

    def _window(self, site, day: int) -> tuple[int, int]:
        """The hours whose events can change day ``day``'s visits, at the least."""
        timeout = self._scans.timeout_ms
        start = int(day_start_timestamp(day_from_number(day), site.timezone) * 1000)
        end = int(day_start_timestamp(day_from_number(day + 1), site.timezone) * 1000)
        return (start - timeout) // 3_600_000, (end + timeout) // 3_600_000

    def fresh_days(self, txn, site, segment, first_day: int, last_day: int) -> set[int]:
        """Local days of the range whose materialised figures are current."""
        if not segment.counter_id:
            return set()
        first_hour = self._window(site, first_day)[0]
        last_hour = self._window(site, last_day)[1] + 48
        hours = self._hours(txn, site.id, first_hour, last_hour)
        records = self._records
        goals = self._goals_version(segment)
        fresh = set()
        for day in range(first_day, last_day + 1):
            raw = records.get(_RECORD, _identifier(site.id, segment.counter_id, day), txn)
            if raw is None:
                low, high = self._window(site, day)
                if self._settled(site, day) and not any(hours.get(h, 0) for h in range(low, high + 1)):
                    fresh.add(day)  # nothing happened that day: nothing to materialise
                continue
            record = _record_decoder.decode(raw)
            if record.goals != goals:
                continue  # a goal it tests was changed: materialise again
            if sum(hours.get(h, 0) for h in range(record.first_hour, record.last_hour + 1)) == record.events:
                fresh.add(day)
        return fresh

    def _goals_version(self, segment) -> str:
        """The counter ids of the goals a segment's membership depends on: a changed goal
        definition gets a new one, which makes every materialised day stale."""
        goals = self._goals
        if any(f.dimension == "goal" for f in segment.filters):
            used = goals.list(segment.site_id)
        else:
            ids = {int(c.value) for c in segment.conditions if c.kind == "completed_goal"}
            used = [g for g in goals.list(segment.site_id) if g.id in ids]
        return ",".join(f"{goal.id}:{goal.counter_id}" for goal in sorted(used, key=lambda g: g.id))

    def _settled(self, site, day: int) -> bool:
        end = day_start_timestamp(day_from_number(day + 1), site.timezone)
        return time.time() >= end + SETTLE_SECONDS

    # -- materialising --------------------------------------------------------------------
    def start(self, segment) -> None:
        """Back-fill ``segment`` in a background thread (creating or changing it)."""
        self._tasks.start(segment.id, lambda progress: self.run(segment, progress))

    def wait(self, timeout: float = 60) -> None:
        self._tasks.wait(timeout)

    def status(self, segment) -> dict[str, object] | None:
        if not segment.materialised:
            return None
        return self._tasks.status(segment.id, {"status": "complete"})

    def run(self, segment, progress: dict | None = None) -> int:
        """Materialise every settled, stale day of the segment's site's retention; returns
        how many days were written."""
        progress = {} if progress is None else progress
        site = self._sites.by_id(segment.site_id)
        if site is None or not segment.materialised:
            return 0
        today = day_number(local_today(site.timezone))
        first = day_number(local_today(site.timezone, time.time() - site.retention_days * 86400))
        # a century of retention reaches before 1970: start where a query (from the day
        # before) may begin; no event is that old
        first = max(first, day_number(FIRST_DAY) + 1)
        last = today
        while last >= first and not self._settled(site, last):
            last -= 1
        progress.update(status="running", days_done=0, days_total=max(0, last - first + 1))
        written = 0
        with self._lock:
            for chunk_start in range(first, last + 1, CHUNK_DAYS):
                current = self._segments.find(segment.site_id, segment.id)
                if current is None or current.counter_id != segment.counter_id:
                    progress["status"] = "superseded"
                    return written
                chunk_end = min(last, chunk_start + CHUNK_DAYS - 1)
                with self._store.read() as txn:
                    fresh = self.fresh_days(txn, site, segment, chunk_start, chunk_end)
                stale = [d for d in range(chunk_start, chunk_end + 1) if d not in fresh]
                if stale:
                    written += self._materialise(site, segment, stale)
                progress["days_done"] = chunk_end - first + 1
        progress["status"] = "complete"
        return written

    def _materialise(self, site, segment, days: list[int]) -> int:
        scans = self._scans
        first, last = days[0], days[-1]
        query = Query(site=site, date_from=day_from_number(first - 1), date_to=day_from_number(last + 1))
        window_first = self._window(site, first - 1)[0]
        window_last = self._window(site, last + 1)[1]
        # The basis (and the goals used) are read before the events: a later event or goal
        # change can only make a day stale.
        goals = self._goals_version(segment)
        with self._coordinator.settled() as txn:
            hours = self._hours(txn, site.id, window_first, window_last)
        selection = scans.select(query, [])
        sessions = selection.sessions
        frame = selection.frame
        members = segment_members(scans, selection, segment)
        start_day = selection.day_index(sessions.start) + (first - 1)
        kind = selection.kind
        ts = frame.column("ts")
        visitor = frame.column("visitor")
        names = frame.column("name")
        timeout = scans.timeout_ms
        text = self._strings.text
        writes: dict[int, tuple[DayRecord, dict, dict]] = {}
        for day in days:
            starting = start_day == day
            member = members & starting
            day_end = int(day_start_timestamp(day_from_number(day + 1), site.timezone) * 1000)
            horizon = max(day_end, int(sessions.end[starting].max()) if starting.any() else 0) + timeout
            first_hour, last_hour = self._window(site, day)[0], horizon // 3_600_000
            counters: dict[tuple[int, int, str], int] = {}
            sketches: dict[tuple[int, int, str], np.ndarray] = {}
            source = f"{segment.counter_id}{SEPARATOR}{day}"
            if member.any():
                counters[(SEGMENT_VISITS, day, source)] = int(member.sum())
                counters[(SEGMENT_BOUNCES, day, source)] = int(sessions.bounce[member].sum())
                counters[(SEGMENT_DURATION_MS, day, source)] = int(sessions.duration_ms[member].sum())
                rows = np.flatnonzero(sessions.rows_in(member))
                for event_day, figures in by_day(rows, selection.day_index(ts[rows]) + (first - 1), kind, visitor, names, text):
                    counters[(SEGMENT_PAGEVIEWS, event_day, source)] = figures["pageviews"]
                    counters[(SEGMENT_EVENTS, event_day, source)] = figures["events"]
                    counters[(SEGMENT_CONVERSIONS, event_day, source)] = figures["conversions"]
                    sketches[(SEGMENT_VISITORS, event_day, source)] = figures["visitors"]
                    for name, who in figures["converters"].items():
                        sketches[(SEGMENT_CONVERTERS, event_day, f"{source}{SEPARATOR}{name}")] = who
            events = sum(hours.get(h, 0) for h in range(first_hour, last_hour + 1))
            record = DayRecord(segment.counter_id, first_hour, last_hour, events, [], goals)
            writes[day] = (record, counters, sketches)
        self._write(site, segment, writes)
        return len(days)

    def _write(self, site, segment, writes) -> None:
        strings = self._strings
        records = self._records
        counters_db = self._store.db(b"counters")
        sketches_db = self._store.db(b"sketches")

        def write(txn):
            strings.rollback()
            current = self._segments.find(segment.site_id, segment.id)
            if current is None or current.counter_id != segment.counter_id:
                return False
            for day, (record, counters, sketches) in writes.items():
                identifier = _identifier(site.id, segment.counter_id, day)
                old = records.get(_RECORD, identifier, txn)
                if old is not None:
                    for key in _record_decoder.decode(old).keys:
                        txn.delete(key, db=counters_db) or txn.delete(key, db=sketches_db)
                keys = []
                for (metric, bucket, dimension), value in sorted(counters.items()):
                    key = pack_bucket_key(site.id, DAY, metric, bucket, strings.intern(txn, dimension))
                    self._counters.apply(txn, {key: value - self._counters.get(txn, key)})
                    keys.append(key)
                for (metric, bucket, dimension), members in sorted(sketches.items()):
                    sketch = Sketch(SITE_PRECISION)
                    sketch.add_array(members)
                    key = pack_bucket_key(site.id, DAY, metric, bucket, strings.intern(txn, dimension))
                    txn.put(key, sketch.to_bytes(), db=sketches_db)
                    keys.append(key)
                record = msgspec.structs.replace(record, keys=keys)
                records.put(txn, _RECORD, identifier, msgspec.msgpack.encode(record))
            return True

        with self._coordinator.mutex:
            try:
                self._store.write(write)
            except BaseException:
                strings.rollback()
                raise
            strings.commit()

    def drop(self, site_id: int, counter_id: int) -> None:
        """Delete what a (changed or deleted) definition materialised."""
        prefix = f"{site_id:010d}/{counter_id:010d}/"
        found = [(key, raw) for key, raw in self._records.scan(_RECORD) if key.startswith(prefix)]
        if not found:
            return
        counters_db = self._store.db(b"counters")
        sketches_db = self._store.db(b"sketches")

        def write(txn):
            for key, raw in found:
                for stored in _record_decoder.decode(raw).keys:
                    txn.delete(stored, db=counters_db) or txn.delete(stored, db=sketches_db)
                self._records.delete(txn, _RECORD, key)

        self._store.write(write)

    def delete_site(self, txn, site_id: int) -> None:
        """Forget a deleted site's materialised days (its counters and sketches go with it)."""
        records = self._records
        prefix = f"{site_id:010d}/"
        for key in [key for key, _ in records.scan(_RECORD, txn) if key.startswith(prefix)]:
            records.delete(txn, _RECORD, key)


def by_day(rows: np.ndarray, days: np.ndarray, kind, visitor, names, text):
    """Per local day of ``rows`` (indices, with their ``days``): page views, custom events,
    conversions, distinct visitor hashes and, per conversion type, distinct converters."""
    kinds = kind[rows]
    for day in distinct_values(days).tolist():
        chosen = rows[days == day]
        chosen_kinds = kinds[days == day]
        converting = chosen[chosen_kinds == _CONVERSION]
        converters = {}
        if len(converting):
            type_ids = names[converting]
            for type_id in distinct_values(type_ids).tolist():
                converters[text(type_id)] = distinct_values(visitor[converting[type_ids == type_id]])
        yield day, {
            "pageviews": int((chosen_kinds == _PAGEVIEW).sum()),
            "events": int((chosen_kinds == _CUSTOM).sum()),
            "conversions": len(converting),
            "visitors": distinct_values(visitor[chosen]),
            "converters": converters,
        }
