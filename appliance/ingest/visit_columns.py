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

import msgspec
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


def apply_singles(
    events: list[Event], timezones: dict[int, str], counts, known: dict[str, int], out: list[Event], *,
    opened: dict, pending: dict, timeout: float, horizon: float, mark_late,
) -> set[int]:
    """Fold the batch's single-event visitors into ``pending`` (visits by ``(site, visitor)``),
    their visit counter deltas into ``counts`` and the events that joined a visit, carrying
    its properties, into ``out``; ``mark_late(event)`` for a new visit's event older than
    ``horizon``. ``known``: committed text ids. Returns the indices of the events left for
    the per-event loop."""
    rows = list(map(_ROW, events))
    engagement, pageview = EventKind.ENGAGEMENT, EventKind.PAGEVIEW
    per_visitor = Counter([(row[1], row[2]) for row in rows if row[0] is not engagement])
    rest: set[int] = set()
    new_at: list[int] = []
    joins: list[tuple[int, int, Visit]] = []
    for index, (kind, site, visitor, timestamp, hint, path) in enumerate(rows):
        if kind is engagement:
            continue  # no visit's business (the loop skips them too)
        key = (site, visitor)
        page_id = known.get(path)
        if hint or page_id is None or per_visitor[key] > 1:
            rest.add(index)
            continue
        visit = opened.get(key)
        if visit is None or timestamp - visit.last > timeout:
            new_at.append(index)
        elif timestamp >= visit.last and visit.pageviews and len(visit.entry) == _WIDTH:
            joins.append((index, page_id, visit))
        else:
            rest.add(index)

    # visit metric deltas as rows: (site, day, metric, entry ids, amount)
    sites: list[int] = []
    days: list[int] = []
    metrics: list[int] = []
    entries: list[list[int]] = []
    amounts: list[int] = []

    if new_at:
        texts = itertools.chain.from_iterable(_ENTRY_TEXTS(events[index]) for index in new_at)
        matrix = np.fromiter(map(known.get, texts, itertools.repeat(-1)), dtype=np.int64,
                             count=len(new_at) * _WIDTH).reshape(len(new_at), _WIDTH)
        unknown = (matrix < 0).any(axis=1)
        if unknown.any():  # a text without a committed id: the loop interns it, in order
            rest.update(itertools.compress(new_at, unknown.tolist()))
            keep = ~unknown
            new_at = list(itertools.compress(new_at, keep.tolist()))
            matrix = matrix[keep]
        page = list(dims.DIMENSIONS).index("page")
        for index, entry in zip(new_at, matrix.tolist(), strict=True):
            event = events[index]
            site, timestamp = event.site_id, event.timestamp
            key = (site, event.visitor_id)
            if timestamp < horizon and key not in opened:
                mark_late(event)
            day = day_bucket(timestamp, timezones.get(site, "UTC"))
            page_id = entry[page]
            is_pageview = event.kind is pageview
            pending[key] = Visit(
                start=timestamp, last=timestamp, day=day, pageviews=1 if is_pageview else 0,
                interactive=not is_pageview, hint="", entry=entry, exit_path=page_id,
                carried=list(_VISIT_VALUES(event)),
            )
            sites.append(site)
            days.append(day)
            metrics.append(dims.VISITS)
            entries.append(entry)
            amounts.append(1)
            if is_pageview:
                sites.append(site)
                days.append(day)
                metrics.append(dims.BOUNCES)
                entries.append(entry)
                amounts.append(1)
            if page_id:
                counts[(site, DAY, dims.EXIT_PAGES, day, page_id)] += 1

    for index, page_id, visit in joins:
        event = events[index]
        out[index] = _inherit(event, visit)
        site, timestamp = event.site_id, event.timestamp
        is_pageview = event.kind is pageview
        last = visit.last
        if timestamp > last:
            sites.append(site)
            days.append(visit.day)
            metrics.append(dims.VISIT_DURATION)
            entries.append(visit.entry)
            amounts.append(seconds(timestamp) - seconds(last))
            last = timestamp
        exit_path = visit.exit_path
        if is_pageview and page_id != exit_path:
            if exit_path:
                counts[(site, DAY, dims.EXIT_PAGES, visit.day, exit_path)] -= 1
            if page_id:
                counts[(site, DAY, dims.EXIT_PAGES, visit.day, page_id)] += 1
            exit_path = page_id
        if visit.pageviews == 1 and not visit.interactive:  # a bounce no more
            sites.append(site)
            days.append(visit.day)
            metrics.append(dims.BOUNCES)
            entries.append(visit.entry)
            amounts.append(-1)
        pending[(site, event.visitor_id)] = msgspec.structs.replace(
            visit, last=last, pageviews=visit.pageviews + 1 if is_pageview else visit.pageviews,
            interactive=visit.interactive or not is_pageview, exit_path=exit_path, entry=list(visit.entry),
        )

    if amounts:
        _spread(sites, days, metrics, entries, amounts, counts)
    return rest


def _spread(sites, days, metrics, entries, amounts, counts) -> None:
    """Each row's amount to the site total and to its entry values' counters."""
    matrix = np.fromiter(itertools.chain.from_iterable(entries), dtype=np.int64,
                         count=len(entries) * _WIDTH).reshape(len(entries), _WIDTH)
    as_array = np.array
    if spread_visit_rows(as_array(sites, dtype=np.int64), as_array(days, dtype=np.int64),
                         as_array(metrics, dtype=np.int64), matrix, amounts, counts):
        return
    for site, day, metric, entry, amount in zip(sites, days, metrics, entries, amounts, strict=True):
        counts[(site, DAY, metric, day, 0)] += amount
        for offset, value_id in enumerate(entry):
            if value_id:
                counts[(site, DAY, metric + 1 + offset, day, value_id)] += amount
