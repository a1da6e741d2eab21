"""Visits (sessions): runs of one visitor's events on one site with no gap over the timeout.

Plausible's rule: a visit ends after ``visit_timeout_minutes`` (30) without an event — not a
fixed window. A client-supplied ``session_id`` (seed API) that differs from the open visit's
starts a new visit. Open visits live in a bounded in-process table; every change is written
to LMDB in the same transaction as the batch that caused it (appended to a log of changes:
:mod:`appliance.ingest.visit_changes`), so a restart neither splits nor loses an open visit.

Visit metrics are counted incrementally into day counters of the day the visit *started*
(in the site's time zone): ``visits`` +1 when it opens; ``bounces`` +1 when it opens with a page
view and −1 as soon as it gets a second page view or an interactive event; ``duration`` grows
by each new gap; the exit page moves with every page view (with none yet, with every event).
So a closed day's numbers only change while a visit that started on it is still open, or
when a late event has the day re-derived (below). Every
visit metric is also kept per entry dimension value (the source, channel, country... of the
visit's first event; for pages, the entry page: the first page view's page, or the first
event's until a page view arrives, when the visit's counters move to it), for breakdowns
with visits, bounce rate and duration.

Visit properties (:data:`appliance.dimensions.VISIT_FIELDS`: referrer, source, channel, UTM
tags) are the first event's: :meth:`VisitTable.apply` hands back each event that joined an
open visit carrying them, so the aggregation step counts its page view, visitor and
breakdowns under the visit's source. The event log keeps what was sent; scans apply the
same rule to the visits they rebuild (:meth:`appliance.query.selection.Selection.values_at`).
Not at commit: an event's open visit is only known here (the table lags the commit by up to
one aggregation interval, and a visit's events may share a batch or arrive out of order), and
a raw log lets a scan follow time order whatever the arrival order.

Arrival order: the incremental counting above is exact only when each visitor's events
arrive in time order (a batch is sorted by time first, so disorder inside one batch is
harmless). An event *late* for its visitor — earlier than the open visit's last event (unless
it changes nothing there: :func:`~appliance.ingest.visit_state.changes_nothing_inside`), or,
with no open visit, older than :attr:`VisitTable.horizon` (it may belong to a visit closed
before this process) or within the timeout after (or before) the end of the visitor's visits
closed since (:mod:`appliance.ingest.closed_visits`: it may extend or alter one) — is still
counted as above, and the local days it can touch (its own, the days of
``timestamp ± timeout`` and its open visit's start day) are listed in :attr:`VisitTable.late`
for the aggregation step to mark *visits dirty*; :mod:`appliance.ingest.rederive` then derives
those days' visit figures again from the time-ordered events and replaces the open visits it
re-derived (:meth:`VisitTable.replace`).
"""

from __future__ import annotations

import itertools
import threading
import time
from collections import defaultdict, deque

import msgspec

from appliance import dimensions as dims
from appliance.heap import HeapTrimmer
from appliance.ingest.aggregation_columns import spread_visit_deltas
from appliance.ingest.closed_visits import ClosedVisits
from appliance.ingest.visit_changes import VISIT_KEY, VisitChanges
from appliance.ingest.visit_expiry import IdleVisits, least_recent
from appliance.ingest.visit_state import (
    _ENTRY_TEXTS,
    _PAGE,
    _VISIT_VALUES,
    Visit,
    _inherit,
    changes_nothing_inside,
    other_session,
    seconds,
)
from appliance.models import Event, EventKind
from appliance.periods import day_bucket
from storage.keys import DAY
from storage.retention import delete_prefix

_VISIT_KEY = VISIT_KEY
#: from this many visit metric deltas in a batch on, they are spread over the entry dimensions
#: column-wise (:func:`appliance.ingest.aggregation_columns.spread_visit_deltas`)
SPREAD_FROM = 128
#: closing this many idle visits frees megabytes the allocator would keep (after a bulk load
#: of history every visit of it is idle): the heap is trimmed once a drain of them ends (over
#: the bound no: a load's new visits take the freed memory at once)
TRIM_AFTER_CLOSING = 10_000
#: a visit touched this recently is not closed as idle: history is idle by the wall clock as
#: soon as it is written, and its visitor's next events may be in the next batch (twice the
#: cadence of the idle list, :data:`~appliance.ingest.visit_expiry.EXPIRY_SECONDS`)
RECENT_SECONDS = 120

_ENGAGEMENT, _PAGEVIEW = EventKind.ENGAGEMENT, EventKind.PAGEVIEW
_VISITS, _BOUNCES, _VISIT_DURATION, _EXIT_PAGES = dims.VISITS, dims.BOUNCES, dims.VISIT_DURATION, dims.EXIT_PAGES
_copy = msgspec.structs.replace


class _Interned(dict):
    """A batch's text ids: a text is interned on its first lookup (``ids[text]``), so a
    visit's entry values are one ``map`` over its texts, in the order the texts come."""

    __slots__ = ("_intern",)

    def __init__(self, intern) -> None:
        super().__init__()
        self._intern = intern

    def __missing__(self, text: str) -> int:
        value_id = self[text] = self._intern(text)
        return value_id


class VisitTable:
    def __init__(
        self, store, timeout_seconds: int, max_open: int = 500_000, max_closed: int = 500_000, fresh: bool = False,
        log_bytes: int | None = None,
    ) -> None:
        self._store = store
        self._db = store.db(b"visits")
        # the log of changes is folded down to ~256 bytes per visit the table may hold (a
        # history visit closes, over the bound, before its change is folded into its row)
        self._changes = VisitChanges(store, log_bytes or max(4 << 20, min(max_open, 500_000) * 256))
        self.timeout = timeout_seconds
        self.max_open = max_open
        self._open: dict[tuple[int, int], Visit] = {}
        self._pending: dict[tuple[int, int], Visit | None] = {}
        self._lock = threading.Lock()
        # ``_open`` is kept in touch order (a committed visit moves to the end); ``_touches``
        # counts touches, ``_checkpoints`` holds (wall time, touches before) per commit
        self._touches = 0
        self._checkpoints: deque[tuple[float, int]] = deque(maxlen=4096)
        #: events older than this with no open visit may belong to a visit closed before this
        #: process (its start; nothing in a ``fresh`` store); those closed since: :attr:`closed`
        self.horizon = 0.0 if fresh else time.time()
        #: per visitor, the latest event of their visits closed in this process (bounded)
        self.closed = ClosedVisits(timeout_seconds, max_closed)
        #: ``(site, local day)`` pairs touched by late events of the last :meth:`apply`
        self.late: set[tuple[int, int]] = set()
        self.trimmer = HeapTrimmer()
        #: idle visits listed for closing, a chunk at a time (:meth:`close_in`)
        self.idle = IdleVisits()
        self._closing: list[tuple[int, int]] = []  # closed in the transaction under way
        self._idle_closing = 0  # of which idle ones (the rest: over the bound)
        self._closed_untrimmed = 0
        with store.read() as txn:
            self._open = self._changes.load(txn)

    def __len__(self) -> int:
        return len(self._open)

    def has_open(self, site_id: int, visitor_id: int, now: float) -> bool:
        visit = self._open.get((site_id, visitor_id))
        return visit is not None and now - visit.last <= self.timeout

    def apply(self, txn, events: list[Event], timezones: dict[int, str], counts, intern) -> list[Event]:
        """Update visits for a batch (in ``txn``), adding visit counter deltas to ``counts``.

        Returns the batch (in its order) with each event that joined an open visit carrying
        that visit's properties (:data:`~appliance.dimensions.VISIT_FIELDS`, from its first
        event), as the counters of the batch must count it. Changes stay pending until
        :meth:`committed`; :meth:`rolled_back` forgets them.
        """
        self._pending.clear()
        self.late = late = set()
        horizon, timeout = self.horizon, self.timeout
        in_order = self.closed.in_order
        pending, opened = self._pending, self._open
        ids = _Interned(intern)  # per batch: each distinct text interned once, in order of first sight
        text_id = ids.__getitem__
        # visit metric deltas per (site, day, metric, entry values), spread over the entry
        # dimensions once per key at the end (a visit's several duration steps: one spread)
        visit_deltas: dict[tuple[int, int, int, tuple[int, ...]], int] = defaultdict(int)
        out = list(events)
        stamps = [event.timestamp for event in events]
        for index in sorted(range(len(events)), key=stamps.__getitem__):
            event = events[index]
            kind = event.kind
            if kind is _ENGAGEMENT:
                continue
            site_id = event.site_id
            key = (site_id, event.visitor_id)
            visit = pending.get(key)  # (no None there: cleared above) a copy of this batch's own
            own = visit is not None
            if not own:
                visit = opened.get(key)
            timestamp = stamps[index]
            is_pageview = kind is _PAGEVIEW
            page_id = text_id(event.path)
            if visit is None:
                if timestamp < horizon or not in_order(site_id, event.visitor_id, timestamp):
                    self._mark_late(late, event, visit, timezones)
            else:
                last = visit.last
                if timestamp < last and not changes_nothing_inside(event, visit, is_pageview):
                    self._mark_late(late, event, visit, timezones)
                if timestamp < visit.start - timeout:
                    continue  # an old back-filled event: counted in totals, not joined to a visit
            if visit is None or timestamp - last > timeout or other_session(event.session_hint, visit.hint):
                if visit is not None and timestamp < last:
                    # a late event replaces an open visit that ends later: keep that end known
                    self.closed.note(site_id, event.visitor_id, last)
                day = day_bucket(timestamp, timezones.get(site_id, "UTC"))
                entry = list(map(text_id, _ENTRY_TEXTS(event)))
                entry[_PAGE] = page_id
                pending[key] = Visit(
                    start=timestamp,
                    last=timestamp,
                    day=day,
                    pageviews=1 if is_pageview else 0,
                    interactive=not is_pageview,
                    hint=event.session_hint,
                    entry=entry,
                    exit_path=page_id,
                    carried=list(_VISIT_VALUES(event)),
                )
                entry_key = tuple(entry)
                visit_deltas[(site_id, day, _VISITS, entry_key)] += 1
                if is_pageview:  # a bounce until a second page view or an interactive event
                    visit_deltas[(site_id, day, _BOUNCES, entry_key)] += 1
                if page_id:
                    counts[(site_id, DAY, _EXIT_PAGES, day, page_id)] += 1
                continue
            out[index] = _inherit(event, visit)
            if not own:
                visit = pending[key] = _copy(visit, entry=list(visit.entry))  # never mutate the committed copy
            pageviews = visit.pageviews
            was_bounce = pageviews == 1 and not visit.interactive
            if timestamp > last:
                visit_deltas[(site_id, visit.day, _VISIT_DURATION, tuple(visit.entry))] += (
                    seconds(timestamp) - seconds(last)
                )
                visit.last = timestamp
            if is_pageview and pageviews == 0:
                # The first page view: it becomes the entry page of a visit begun by another event.
                self._move_entry_page(counts, site_id, visit, page_id)
            # The exit page: the last page view's page, or the last event's without any.
            if (is_pageview or pageviews == 0) and page_id != visit.exit_path:
                if visit.exit_path:
                    counts[(site_id, DAY, _EXIT_PAGES, visit.day, visit.exit_path)] -= 1
                if page_id:
                    counts[(site_id, DAY, _EXIT_PAGES, visit.day, page_id)] += 1
                visit.exit_path = page_id
            if is_pageview:
                visit.pageviews = pageviews = pageviews + 1
            else:
                visit.interactive = True
            if was_bounce and (pageviews > 1 or not is_pageview):
                visit_deltas[(site_id, visit.day, _BOUNCES, tuple(visit.entry))] -= 1
        if len(visit_deltas) < SPREAD_FROM or not spread_visit_deltas(visit_deltas, counts):
            for (site_id, day, metric, entry), delta in visit_deltas.items():
                self._count(counts, site_id, day, entry, metric, delta)
        self._write_pending(txn)
        return out

    def _write_pending(self, txn) -> None:
        """Write the batch's changed visits (appended to the log of changes)."""
        self._changes.write(txn, self._pending.items())

    def _mark_late(self, late: set, event: Event, visit: Visit | None, timezones: dict[int, str]) -> None:
        """List the local days a late event can change: its own, the days a visit joined
        across the timeout either side can start on, and its open visit's start day."""
        timezone = timezones.get(event.site_id, "UTC")
        for moment in (event.timestamp - self.timeout, event.timestamp, event.timestamp + self.timeout):
            late.add((event.site_id, day_bucket(moment, timezone)))
        if visit is not None:
            late.add((event.site_id, visit.day))

    def replace(self, txn, site_id: int, visits: dict[int, Visit]) -> None:
        """Replace open visits of ``site_id`` (by visitor) with re-derived ones, in ``txn``;
        pending until :meth:`committed`."""
        self._pending.clear()
        for visitor_id, visit in visits.items():
            self._pending[(site_id, visitor_id)] = visit
        self._changes.write(txn, self._pending.items())

    def forget_visitor(self, txn, site_id: int, visitor_id: int) -> None:
        """Close one visitor's open visit without counting anything more (an erasure), in
        ``txn``; gone from memory at :meth:`committed`."""
        self._pending[(site_id, visitor_id)] = None
        self._changes.write(txn, [((site_id, visitor_id), None)])

    def open_visit(self, site_id: int, visitor_id: int) -> Visit | None:
        return self._open.get((site_id, visitor_id))

    def open_lasts(self, site_id: int) -> tuple[list[int], list[float]]:
        """The site's open visitors and the time of each one's last event: one pass over the
        table (bounded), where a lookup per visitor of a big day's window costs ~1 µs each.
        Under the lock: a re-derivation reads it outside the write mutex, while the writer's
        :meth:`committed` changes the table."""
        visitors, lasts = [], []
        with self._lock:
            for (site, visitor), visit in self._open.items():
                if site == site_id:
                    visitors.append(visitor)
                    lasts.append(visit.last)
        return visitors, lasts

    @staticmethod
    def _move_entry_page(counts, site_id: int, visit: Visit, page_id: int) -> None:
        """Re-key a visit's entry-page counters (it has no page view yet, so no bounce)."""
        old = visit.entry[_PAGE]
        if old == page_id:
            return
        duration = seconds(visit.last) - seconds(visit.start)
        for metric, amount in ((dims.VISITS, 1), (dims.VISIT_DURATION, duration)):
            if not amount:
                continue
            metric += 1 + _PAGE
            if old:
                counts[(site_id, DAY, metric, visit.day, old)] -= amount
            if page_id:
                counts[(site_id, DAY, metric, visit.day, page_id)] += amount
        visit.entry[_PAGE] = page_id

    @staticmethod
    def _count(counts, site_id: int, day: int, entry, metric: int, delta: int) -> None:
        """Add to a visit metric of a visit that started on ``day`` with ``entry`` values:
        the site total and one counter per entry dimension."""
        counts[(site_id, DAY, metric, day, 0)] += delta
        for dimension_metric, value_id in zip(range(metric + 1, metric + 1 + len(entry)), entry, strict=True):
            if value_id:  # an empty entry value is not a breakdown row
                counts[(site_id, DAY, dimension_metric, day, value_id)] += delta

    def committed(self) -> None:
        closing, self._closing = self._closing, []
        self._closed_untrimmed += self._idle_closing
        self._idle_closing = 0
        with self._lock:
            self._checkpoints.append((time.time(), self._touches))
            self._touches += len(self._pending)
            for key, visit in self._pending.items():
                self._open.pop(key, None)  # set again at the end: the most recently touched
                if visit is not None:
                    self._open[key] = visit
            for key in closing:
                visit = self._open.pop(key, None)
                if visit is not None:  # an event after it is judged by its end (ClosedVisits)
                    self.closed.note(*key, visit.last)
            self.idle.taken()
        self._pending.clear()
        self._changes.committed()
        if self._closed_untrimmed >= TRIM_AFTER_CLOSING and not self.idle:
            self._closed_untrimmed = 0  # a drain is over: what it freed goes back to the system
            self.trimmer.trim()

    def _touched_since(self, moment: float) -> int:
        """At least how many of the last visits in touch order were touched after ``moment``."""
        for at, before in self._checkpoints:
            if at >= moment:
                return self._touches - before
        return 0

    def rolled_back(self) -> None:
        self._pending.clear()
        self._closing, self._idle_closing = [], 0
        self.idle.untake()
        self._changes.rolled_back()

    def delete_site(self, txn, site_id: int) -> None:
        """Forget a deleted site's open visits (inside the deleting transaction)."""
        delete_prefix(txn, self._db, site_id.to_bytes(4, "big"))
        self._changes.delete_site(txn, site_id, [key for key in list(self._open) if key[0] == site_id])
        self.closed.delete_site(site_id)
        with self._lock:
            for key in [key for key in self._open if key[0] == site_id]:
                del self._open[key]

    def close_in(self, txn, now: float, idle: bool = False) -> int:
        """Close visits in ``txn`` (the aggregation step's, after :meth:`apply`: the deletes dirty
        the pages its writes copy anyway, and share its fsync): what the batch puts over the
        bound, the least recently touched first, and with ``idle`` a chunk of the listed idle
        visits when one is due (:mod:`appliance.ingest.visit_expiry`); none the batch touched.
        Gone from memory, and noted as closed, at :meth:`committed`; returns how many."""
        pending, opened = self._pending, self._open
        self._idle_closing = grown = 0
        for key, visit in pending.items():
            if key in opened:
                grown -= visit is None
            else:
                grown += visit is not None
        with self._lock:
            while self._checkpoints and self._checkpoints[0][0] < now - RECENT_SECONDS:
                self._checkpoints.popleft()
            excess = len(opened) + grown - self.max_open
            closing = least_recent(opened, now, self.timeout, excess, pending) if excess > 0 else []
            if idle and self.idle.chunk_due(now):
                if self.idle.list_due(now):
                    self.idle.list(now, self._idle_settled(now))
                taken = self.idle.take(now, opened, pending.keys() | closing if closing else pending)
                self._idle_closing = len(taken)
                closing += taken
        self._changes.write(txn, [(key, None) for key in closing])
        self._changes.fold(txn, opened.get)  # the log's oldest changes into their rows, when it is over its bound
        self._closing = closing
        return len(closing)

    def _idle_settled(self, now: float) -> list[tuple[tuple[int, int], Visit]]:
        """Open visits idle past the timeout, but none touched in the last :data:`RECENT_SECONDS`
        (a history visit is idle at once, and closing it before its visitor's next events would
        have them marked late), in touch order. Under the lock."""
        settled = len(self._open) - min(len(self._open), self._touched_since(now - RECENT_SECONDS))
        idle = itertools.islice(self._open.items(), settled)
        return [(key, visit) for key, visit in idle if now - visit.last > self.timeout]

    def close_idle(self, now: float) -> int:
        """The writer's idle tick (no aggregation step runs): a chunk of idle visits when one is
        due, in a transaction of its own; returns how many closed."""
        if not self.idle.chunk_due(now):
            return 0
        try:
            # (derived, as the aggregation step's writes: a crash can only undo it whole)
            closed = self._store.write(lambda txn: self.close_in(txn, now, idle=True), durable=False)
        except BaseException:
            self.rolled_back()
            raise
        self.committed()
        return closed

    def expire(self, now: float, keep: int | None = None) -> int:
        """Close at once, in a transaction of its own, every idle visit untouched for
        :data:`RECENT_SECONDS` and, over ``keep``, the least recently touched down to it
        (tests and tools; the appliance closes a chunk at a time: :meth:`close_in`)."""
        with self._lock:
            expired = [key for key, _ in self._idle_settled(now)]
        over = len(self._open) - len(expired) - (self.max_open if keep is None else keep)
        if over > 0:
            expired += least_recent(self._open, now, self.timeout, over, dict.fromkeys(expired))[:over]
        if expired:
            try:
                self._store.write(lambda txn: self._changes.write(txn, [(key, None) for key in expired]))
            except BaseException:
                self.rolled_back()
                raise
            self._closing, self._idle_closing = expired, len(expired)
            self.committed()
        return len(expired)
