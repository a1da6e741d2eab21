"""The visit table's batch path: the visitors with one event in a batch, all at once.

In a batch of hundreds or thousands of events most visitors send one event (an import's or a
busy site's batch spans a few minutes of many visitors). For such a visitor the per-event
state machine of :meth:`appliance.ingest.visits.VisitTable.apply` has two outcomes, decided by
its open visit alone: a **new visit** (none open, or the open one idle past the timeout) or an
**in-order join** (the event is not earlier than the open visit's last and the visit already
has a page view, so its entry page cannot move). Both are computed here a column at a time:
the entry values' ids by one lookup pass over the batch's texts, and the visit metric deltas
(visits, bounces, duration) spread over the entry dimensions in one numpy group-by
(:func:`~appliance.ingest.aggregation_columns.spread_visit_rows`) instead of a dict keyed by
each visit's tuple of entry ids.

Everything else goes through the per-event loop in time order: a visitor with several events
in the batch, a client session id, an event earlier than its open visit's last (late or
back-filled), a visit without a page view yet, and any event with a text that has no committed
id. This path never allocates a string id (the commit interned every text of the batch's
events already), so the loop allocates exactly the ids, in the same order, that it would
alone. Visitors are independent of each other, so the visits, counters, late marks and the
events returned are those of the loop alone (``tests/appliance/test_visit_columns_equal.py``
holds the two to each other on generated batches).
"""

from __future__ import annotations

import itertools
import operator
from collections import Counter

import numpy as np

from appliance import dimensions as dims
from appliance.ingest.aggregation_columns import spread_visit_rows
from appliance.ingest.visit_state import _ENTRY_TEXTS, _VISIT_VALUES, Visit, _inherit, seconds
from appliance.models import Event, EventKind
from appliance.periods import day_bucket
from storage.keys import DAY

#: from this many events on, a batch's single-event visitors take this path
SINGLES_FROM = 64

_ROW = operator.attrgetter("kind", "site_id", "visitor_id", "timestamp", "session_hint", "path")
_WIDTH = len(dims.DIMENSIONS)
_PAGE_COLUMN = list(dims.DIMENSIONS).index("page")


def apply_singles(
    events: list[Event], timezones: dict[int, str], counts, known: dict[str, int], out: list[Event], *,
    opened: dict, pending: dict, late: set, timeout: float, horizon: float,
) -> set[int]:
    """Fold the batch's single-event visitors into ``pending`` (visits by ``(site, visitor)``),
    their visit counter deltas into ``counts``, the events that joined a visit, carrying its
    properties, into ``out``, and the local days a late event can change into ``late``.
    ``known``: committed text ids. Returns the indices of the events left for the per-event
    loop."""
    kinds, sites, visitors, stamps, hints, paths = zip(*map(_ROW, events), strict=True)
    keys = list(zip(sites, visitors, strict=True))
    engagement = EventKind.ENGAGEMENT
    visiting = np.fromiter(map(engagement.__ne__, kinds), dtype=bool, count=len(kinds))
    per_visitor = Counter(itertools.compress(keys, visiting.tolist()))
    page_ids = list(map(known.get, paths))
    candidate = (
        visiting
        & (np.fromiter(map(per_visitor.__getitem__, keys), dtype=np.int64, count=len(keys)) == 1)
        & ~np.fromiter(map(bool, hints), dtype=bool, count=len(hints))
        & np.fromiter((page is not None for page in page_ids), dtype=bool, count=len(page_ids))
    )
    at = np.flatnonzero(candidate)
    found = list(map(opened.get, map(keys.__getitem__, at.tolist())))
    has = np.fromiter((visit is not None for visit in found), dtype=bool, count=len(found))
    times = np.array(stamps, dtype=np.float64)
    new = ~has
    join = np.zeros(len(at), dtype=bool)
    if has.any():
        visits = list(itertools.compress(found, has.tolist()))
        lasts = np.array([visit.last for visit in visits], dtype=np.float64)
        stamp = times[at[has]]
        idle = stamp - lasts > timeout
        new[has] = idle
        join[has] = ~idle & (stamp >= lasts) & np.array(
            [visit.pageviews > 0 and len(visit.entry) == _WIDTH for visit in visits], dtype=bool
        )
    rest = set(np.flatnonzero(visiting).tolist()) - set(at[new | join].tolist())
    rows = _Rows()
    if new.any():
        rest.update(_open_visits(events, at[new], times, keys, sites, kinds, timezones, counts, known,
                                 opened, pending, late, timeout, horizon, rows))
    if join.any():
        _join_visits(events, at[join], list(itertools.compress(found, join.tolist())), times, keys, sites, kinds,
                     page_ids, counts, out, pending, rows)
    rows.spread(counts)
    return rest


class _Rows:
    """Visit metric deltas as rows, spread over the entry dimensions at once."""

    def __init__(self) -> None:
        self.parts: list[tuple[np.ndarray, np.ndarray, int, np.ndarray, list[int]]] = []

    def add(self, sites, days, metric: int, entries, amounts: list[int]) -> None:
        if len(amounts):
            self.parts.append((sites, days, metric, entries, amounts))

    def spread(self, counts) -> None:
        if not self.parts:
            return
        sites = np.concatenate([part[0] for part in self.parts])
        days = np.concatenate([part[1] for part in self.parts])
        metrics = np.concatenate([np.full(len(part[1]), part[2], dtype=np.int64) for part in self.parts])
        entries = np.concatenate([part[3] for part in self.parts])
        amounts = [amount for part in self.parts for amount in part[4]]
        if spread_visit_rows(sites, days, metrics, entries, amounts, counts):
            return
        for site, day, metric, entry, amount in zip(sites.tolist(), days.tolist(), metrics.tolist(), entries.tolist(),
                                                    amounts, strict=True):
            counts[(site, DAY, metric, day, 0)] += amount
            for offset, value_id in enumerate(entry):
                if value_id:
                    counts[(site, DAY, metric + 1 + offset, day, value_id)] += amount


def _days(times: np.ndarray, sites: list[int], timezones: dict[int, str]) -> list[int]:
    """Each moment's local day (:func:`appliance.periods.day_bucket`) on its site."""
    if all(timezones.get(site, "UTC") == "UTC" for site in set(sites)):
        return np.floor_divide(times, 86400.0).astype(np.int64).tolist()  # day_bucket's float // for UTC
    return [day_bucket(moment, timezones.get(site, "UTC")) for moment, site in zip(times.tolist(), sites, strict=True)]


def _open_visits(events, at, times, keys, sites, kinds, timezones, counts, known, opened, pending, late, timeout,
                 horizon, rows: _Rows) -> list[int]:
    """New visits for the events at ``at``; returns those with a text without an id (for the loop)."""
    texts = itertools.chain.from_iterable(map(_ENTRY_TEXTS, map(events.__getitem__, at.tolist())))
    matrix = np.fromiter(map(known.get, texts, itertools.repeat(-1)), dtype=np.int64,
                         count=len(at) * _WIDTH).reshape(len(at), _WIDTH)
    unknown = (matrix < 0).any(axis=1)
    left = at[unknown].tolist()
    if unknown.any():  # a text without a committed id: the loop interns it, in order
        at, matrix = at[~unknown], matrix[~unknown]
    index = at.tolist()
    their_keys = list(map(keys.__getitem__, index))
    their_sites = list(map(sites.__getitem__, index))
    stamps = times[at]
    days = _days(stamps, their_sites, timezones)
    early = np.flatnonzero(stamps < horizon).tolist()
    for position in early:  # late: no open visit, older than the horizon
        if their_keys[position] not in opened:
            site, moment = their_sites[position], float(stamps[position])
            moments = np.array((moment - timeout, moment, moment + timeout))
            late.update((site, day) for day in _days(moments, [site] * 3, timezones))
    pageviews = np.fromiter((kinds[i] is EventKind.PAGEVIEW for i in index), dtype=bool, count=len(index))
    pages = matrix[:, _PAGE_COLUMN]
    entries = matrix.tolist()
    carried = [list(_VISIT_VALUES(events[i])) for i in index]
    moments = stamps.tolist()
    pending.update(zip(their_keys, map(
        Visit, moments, moments, days, pageviews.astype(np.int64).tolist(), (~pageviews).tolist(),
        itertools.repeat(""), entries, pages.tolist(), carried,
    ), strict=True))
    site_array, day_array = np.array(their_sites, dtype=np.int64), np.array(days, dtype=np.int64)
    rows.add(site_array, day_array, dims.VISITS, matrix, [1] * len(index))
    rows.add(site_array[pageviews], day_array[pageviews], dims.BOUNCES, matrix[pageviews],
             [1] * int(pageviews.sum()))
    exits = Counter(itertools.compress(zip(their_sites, days, pages.tolist(), strict=True), (pages != 0).tolist()))
    for (site, day, page), number in exits.items():
        counts[(site, DAY, dims.EXIT_PAGES, day, page)] += number
    return left


def _join_visits(events, at, visits, times, keys, sites, kinds, page_ids, counts, out, pending, rows: _Rows) -> None:
    """The events at ``at`` join their open ``visits`` (not earlier than their last, each
    with a page view already)."""
    index = at.tolist()
    for position, joined in zip(index, map(_inherit, map(events.__getitem__, index), visits), strict=True):
        out[position] = joined
    stamps = times[at]
    lasts = np.array([visit.last for visit in visits], dtype=np.float64)
    their_sites = np.array(list(map(sites.__getitem__, index)), dtype=np.int64)
    days = np.array([visit.day for visit in visits], dtype=np.int64)
    entries = np.fromiter(itertools.chain.from_iterable(visit.entry for visit in visits), dtype=np.int64,
                          count=len(visits) * _WIDTH).reshape(len(visits), _WIDTH)
    counted = np.array([visit.pageviews for visit in visits], dtype=np.int64)
    interactive = np.array([visit.interactive for visit in visits], dtype=bool)
    pageviews = np.fromiter((kinds[i] is EventKind.PAGEVIEW for i in index), dtype=bool, count=len(index))
    gap = stamps > lasts
    moments, previous = stamps[gap].tolist(), lasts[gap].tolist()
    rows.add(their_sites[gap], days[gap], dims.VISIT_DURATION, entries[gap],
             [seconds(moment) - seconds(last) for moment, last in zip(moments, previous, strict=True)])
    bounced = (counted == 1) & ~interactive  # a bounce no more
    rows.add(their_sites[bounced], days[bounced], dims.BOUNCES, entries[bounced], [-1] * int(bounced.sum()))
    pages = np.array(list(map(page_ids.__getitem__, index)), dtype=np.int64)
    exits = np.array([visit.exit_path for visit in visits], dtype=np.int64)
    moved = pageviews & (pages != exits)
    site_list, day_list = their_sites.tolist(), days.tolist()
    for position in np.flatnonzero(moved & (exits != 0)).tolist():
        counts[(site_list[position], DAY, dims.EXIT_PAGES, day_list[position], int(exits[position]))] -= 1
    for position in np.flatnonzero(moved & (pages != 0)).tolist():
        counts[(site_list[position], DAY, dims.EXIT_PAGES, day_list[position], int(pages[position]))] += 1
    exits[moved] = pages[moved]
    pending.update(zip(map(keys.__getitem__, index), map(
        Visit, [visit.start for visit in visits], stamps.tolist(), day_list, (counted + pageviews).tolist(),
        (interactive | ~pageviews).tolist(), [visit.hint for visit in visits], [list(visit.entry) for visit in visits],
        exits.tolist(), [visit.carried for visit in visits],
    ), strict=True))
