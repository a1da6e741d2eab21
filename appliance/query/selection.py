"""A selection: the period's events with a query's filters applied, and the exact-count helpers.

A :class:`Selection` loads the period's frame (:mod:`appliance.events.frames`), turns each
event-level filter into a row mask in one vectorised pass, and rebuilds visits when a report
or a visit-level filter needs them (:mod:`appliance.events.sessions`). ``rows`` is the mask of
matching events; ``visits`` the mask of visits that contain one.
"""

from __future__ import annotations

from datetime import date, timedelta
from typing import Protocol

import numpy as np

from appliance import dimensions as dims
from appliance.events.columns import ColumnStore
from appliance.events.frames import Frame
from appliance.events.sessions import Sessions
from appliance.filters import Filter
from appliance.models import EventKind, Site
from appliance.periods import day_start_timestamp
from appliance.query.spec import Query

PAGEVIEW, CUSTOM, CONVERSION, ENGAGEMENT = (int(k) for k in EventKind)


def distinct(values: np.ndarray) -> int:
    """How many distinct values (sorting: numpy's hash-based ``unique`` is slower here)."""
    if not len(values):
        return 0
    ordered = np.sort(values)
    return int(np.count_nonzero(ordered[1:] != ordered[:-1])) + 1


def grouped_distinct(groups: np.ndarray, values: np.ndarray) -> dict[int, int]:
    """For each group id, how many distinct ``values`` it has (exact). Non-negative ids and
    values below 2**32 (string ids, frame visitor codes) are paired into one sorted key."""
    if not len(groups):
        return {}
    groups = groups.astype(np.int64, copy=False)
    values = values.astype(np.int64, copy=False)
    if groups.min() < 0 or values.min() < 0 or groups.max() >= 1 << 31 or values.max() >= 1 << 32:
        _, dense = np.unique(values, return_inverse=True)
        values = dense.astype(np.int64)
    keys = np.sort((groups << 32) | values)
    first = np.ones(len(keys), bool)
    first[1:] = keys[1:] != keys[:-1]
    return counts_by(keys[first] >> 32)


def counts_by(groups: np.ndarray, weights: np.ndarray | None = None) -> dict[int, int]:
    """Per group id, how many rows (or the sum of their ``weights``)."""
    if not len(groups):
        return {}
    groups = groups.astype(np.int64, copy=False)
    top = int(groups.max())
    if groups.min() >= 0 and top < 1 << 24:  # ids: a dense count beats sorting
        present = np.flatnonzero(np.bincount(groups, minlength=top + 1))
        totals = np.bincount(groups, weights=weights, minlength=top + 1)[present] if weights is not None else None
        if totals is None:
            totals = np.bincount(groups, minlength=top + 1)[present]
        return {int(i): int(round(t)) for i, t in zip(present.tolist(), totals.tolist(), strict=True)}
    ids, inverse = np.unique(groups, return_inverse=True)
    totals = np.bincount(inverse, weights=weights, minlength=len(ids))
    return {int(i): int(round(t)) for i, t in zip(ids.tolist(), totals.tolist(), strict=True)}


def top_line(
    *, visitors: int, visits: int, pageviews: int, bounces: int, duration_ms: int, events: int, conversions: int,
    converting_visitors_by_type: dict[int, int],
) -> dict[str, object]:
    """The filtered top line's answer from its counts (the frame path and the day-by-day
    path, :mod:`appliance.query.daywise`, give it alike)."""
    return {
        "visitors": visitors,
        "visits": visits,
        "pageviews": pageviews,
        "views_per_visit": round(pageviews / visits, 2) if visits else 0.0,
        "bounce_rate": round(100 * bounces / visits, 2) if visits else 0.0,
        "visit_duration": round(duration_ms / 1000 / visits) if visits else 0,
        "events": events,
        "conversions": conversions,
        "converting_visitors_by_type": converting_visitors_by_type,
    }


def span_ms(query: Query) -> tuple[int, int]:
    """The query's period as UTC milliseconds: its first local day's start to the start of
    the day after its last."""
    tz = query.site.timezone
    start = day_start_timestamp(query.date_from, tz)
    end = day_start_timestamp(query.date_to + timedelta(days=1), tz)
    return int(start * 1000), int(end * 1000)


class Evaluator(Protocol):
    """What a selection asks of the scan path (:class:`appliance.query.scans.Scans`)."""

    columns: ColumnStore

    def event_mask(self, frame: Frame, condition: Filter, site: Site) -> np.ndarray: ...

    def visit_mask(self, selection: Selection, condition: Filter) -> np.ndarray: ...

    def sessions_of(self, frame: Frame) -> Sessions: ...

    def frame_of(self, site: int, start_ms: int, end_ms: int) -> Frame: ...


class Selection:
    """The period's events with the query's filters applied: ``rows`` is the boolean mask."""

    def __init__(self, scans: Evaluator, query: Query, filters: list[Filter]) -> None:
        self.scans = scans
        self.query = query
        site = query.site
        self.start_ms, self.end_ms = span_ms(query)
        self.frame = scans.frame_of(site.id, self.start_ms, self.end_ms)
        self.kind = self.frame.column("kind")
        self._sessions: Sessions | None = None
        self._visits: np.ndarray | None = None
        rows = np.ones(self.frame.size, bool)
        visit_filters = []
        for condition in filters:
            if condition.is_visit_level:
                visit_filters.append(condition)
                continue
            mask = scans.event_mask(self.frame, condition, site)
            rows &= ~mask if condition.negated else mask
        if visit_filters:
            sessions = self.sessions
            keep = np.ones(sessions.count, bool)
            for condition in visit_filters:
                mask = scans.visit_mask(self, condition)
                keep &= ~mask if condition.negated else mask
            kept_rows = sessions.rows_in(keep)
            pings = self.kind == ENGAGEMENT
            if pings.any():
                kept_visitors = np.zeros(self.frame.visitors.size, bool)
                kept_visitors[sessions.visitor[keep]] = True
                kept_rows[pings] |= kept_visitors[self.frame.visitor_codes_of(pings)]
            rows &= kept_rows
        self.rows = rows

    @property
    def sessions(self) -> Sessions:
        if self._sessions is None:
            self._sessions = self.scans.sessions_of(self.frame)
        return self._sessions

    def visitor_codes_of(self, rows: np.ndarray) -> np.ndarray:
        """Frame visitor codes of ``rows``, a boolean mask without engagement pings: read
        through the visits when they are built already (every such row has one)."""
        if self._sessions is not None:
            sessions = self._sessions
            return sessions.visitor[sessions.visit_of[rows]]
        return self.frame.visitor_codes_of(rows)

    def values_at(self, field: str, rows: np.ndarray) -> np.ndarray:
        """``frame.values_at(field, rows)``, but a visit property (source, channel, referrer,
        UTM tags: :data:`appliance.dimensions.VISIT_FIELDS`) is read from the first event of
        each row's visit. Engagement pings, which belong to no visit, keep their own."""
        if field not in dims.VISIT_FIELDS:
            return self.frame.values_at(field, rows)
        rows = np.flatnonzero(rows) if rows.dtype == bool else np.asarray(rows, np.int64)
        sessions = self.sessions
        visit = sessions.visit_of[rows]
        inside = visit >= 0
        return self.frame.values_at(field, np.where(inside, sessions.first_row[np.maximum(visit, 0)], rows))

    def of_kind(self, *kinds: int) -> np.ndarray:
        if len(kinds) == 1:
            return self.rows & (self.kind == kinds[0])
        return self.rows & np.isin(self.kind, kinds)

    @property
    def active(self) -> np.ndarray:
        """Matching events that count a visitor: everything but engagement pings."""
        return self.rows & (self.kind != ENGAGEMENT)

    @property
    def visits(self) -> np.ndarray:
        """Visits with at least one matching event."""
        if self._visits is None:
            self._visits = self.sessions.visits_with(self.active)
        return self._visits

    # -- calendar -------------------------------------------------------------------------
    def day_starts(self) -> tuple[list[date], np.ndarray]:
        """The local days of the period and their start times (ms), plus the end."""
        days = [self.query.date_from + timedelta(days=i) for i in range((self.query.date_to - self.query.date_from).days + 1)]
        tz = self.query.site.timezone
        bounds = [int(day_start_timestamp(day, tz) * 1000) for day in days]
        bounds.append(self.end_ms)
        return days, np.array(bounds, np.int64)

    def day_index(self, ts: np.ndarray) -> np.ndarray:
        _, bounds = self.day_starts()
        return np.searchsorted(bounds, ts, "right") - 1

    def row_days(self) -> np.ndarray:
        """Per row of the frame, its local day's index in the period. Rows are in time order
        within each block, so each block is a few runs of one day: found with a binary search
        per day boundary, not one per row."""
        _, bounds = self.day_starts()
        pieces = []
        for block, lo, hi in self.frame.parts:
            ts = block.scalar("ts")
            inside = bounds[(bounds > int(ts[lo])) & (bounds <= int(ts[hi - 1]))]
            cuts = np.concatenate([[lo], np.searchsorted(ts[lo:hi], inside, "left") + lo, [hi]])
            first = int(np.searchsorted(bounds, ts[lo], "right")) - 1
            pieces.append(np.repeat(np.arange(first, first + len(cuts) - 1, dtype=np.int32), np.diff(cuts)))
        return np.concatenate(pieces) if pieces else np.zeros(0, np.int32)


