"""Closed visits: per visitor, the latest event of their visits closed in this process.

The visit table (:mod:`appliance.ingest.visits`) forgets a visit when it closes it (idle past
the timeout by the wall clock, or over its bound). An event that then finds no open visit was
judged by one horizon alone (the process's start, raised past every closed visit), so a bulk
load of history, all older than the process, had every day marked *visits dirty* and
re-derived by the next hourly job (one seed-scale day: 14-15 s and ~100 MB of heap). This map
judges such an event per visitor instead.

*What it keeps*: per site, visitor id -> ``last``, the latest event time among the visits of
theirs the table forgot in this process (a float: about 110 bytes an entry with its dict
slot, measured with tracemalloc). The table notes a visit when a transaction that closed it
commits (:meth:`VisitTable.close_in <appliance.ingest.visits.VisitTable.close_in>`, then
``committed``), and an open visit that a late event
with another session id replaces by an earlier one, so ``last`` is never below any event of
the visitor the table saw and no longer holds open.

*The criterion* (:meth:`ClosedVisits.in_order`): an event with no open visit, at or after the
table's horizon (:attr:`VisitTable.horizon`: the process's start, 0 for a store that never
held an event), is in order when ``timestamp - last > timeout``, or when its visitor has no
entry. Why that is exact: every event of the visitor stored before this process is older
than the horizon; every one the table took since is either in its open visit (there is
none) or at most ``last``, or was dropped (below). So the event comes more than the timeout
after each of them: in time order it starts a new visit, as the incremental path counts it,
and it joins, extends or splits no visit already written. Visits, bounces, duration, entry
and exit pages, and the visit properties it carries are then what a re-derivation gives
(``tests/appliance/test_closed_visits.py`` re-derives an in-order load and finds nothing to
change). Anything else may extend or alter a written visit and is marked as before.

*The bound*: at most ``limit`` entries (``[memory] budget_mb``'s share,
:func:`appliance.memory.plan_memory`). Past it the earliest noted entries of the largest
site are dropped (a 64th of the bound at a time) and their latest end plus the timeout
raises :attr:`dropped_until`; an event with no open visit up to that time is not in order,
whoever sent it: correct, only marked (and re-derived) more often. A bulk load in time order
drops the oldest history first, so the mark rarely reaches the day being loaded.
"""

from __future__ import annotations

import itertools


class ClosedVisits:
    """Per ``(site, visitor)`` the latest event time of their closed visits (see the module
    docstring); ``limit`` entries at most."""

    def __init__(self, timeout_seconds: float, limit: int) -> None:
        self.timeout = timeout_seconds
        self.limit = max(1, limit)
        # one dict per site keyed by the visitor id alone (a tuple key would cost 64 B an entry);
        # a dict keeps insertion order, and a visitor noted again moves to the end: the oldest
        # noted come first, dropped first
        self._by_site: dict[int, dict[int, float]] = {}
        self._count = 0
        #: events with no open visit up to this time may belong to a dropped visit
        self.dropped_until = 0.0
        self.dropped = 0  # entries dropped over the bound, for tests and the bench

    def __len__(self) -> int:
        return self._count

    def note(self, site_id: int, visitor_id: int, last: float) -> None:
        """A visit of the visitor whose latest event was at ``last`` is forgotten by the table."""
        visitors = self._by_site.get(site_id)
        if visitors is None:
            visitors = self._by_site[site_id] = {}
        known = visitors.pop(visitor_id, None)
        if known is None:
            self._count += 1
        visitors[visitor_id] = last if known is None or last > known else known
        if self._count > self.limit:
            # a 64th of the bound at a time: a bulk load of history is over it at every note
            self._drop(max(self._count - self.limit, self.limit // 64))

    def _drop(self, count: int) -> None:
        """Drop the ``count`` oldest noted entries of the site with the most (their ends move
        into :attr:`dropped_until`)."""
        visitors = max(self._by_site.values(), key=len)
        doomed = list(itertools.islice(visitors, count))
        latest = max(visitors.pop(visitor_id) for visitor_id in doomed)
        self.dropped_until = max(self.dropped_until, latest + self.timeout)
        self._count -= len(doomed)
        self.dropped += len(doomed)

    def in_order(self, site_id: int, visitor_id: int, timestamp: float) -> bool:
        """Whether an event of a visitor with no open visit starts a new visit after every
        visit of theirs this map knows or dropped (the caller checks the table's horizon)."""
        if timestamp <= self.dropped_until:
            return False
        visitors = self._by_site.get(site_id)
        last = None if visitors is None else visitors.get(visitor_id)
        return last is None or timestamp - last > self.timeout

    def delete_site(self, site_id: int) -> None:
        self._count -= len(self._by_site.pop(site_id, ()))
