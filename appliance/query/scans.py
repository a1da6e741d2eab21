"""The filtered path of the stats vocabulary: the same reports, computed by scanning columns.

Unfiltered queries read counters and sketches (:mod:`appliance.query.stats`); a query with filters
(or a segment) comes here. A :class:`Selection` loads the period's column blocks
(:mod:`appliance.events.columns`), turns each event-level filter into a row mask in one vectorised
pass, rebuilds visits when a report or a visit-level filter needs them
(:mod:`appliance.events.sessions`), and every report is then a few numpy reductions over the masked
rows. The shapes returned are exactly those of the unfiltered functions.

Semantics under filters (Plausible's):

- page views, events, conversions, revenue: the matching events;
- unique visitors: the *exact* number of distinct visitor hashes among matching events
  (``np.unique``, no HyperLogLog on this path);
- visits: visits with at least one matching event; their bounce rate and duration are those
  of the whole visit; visit-level filters (``entry_page``, ``exit_page``, ``segment`` and the
  visit properties source, channel, referrer and UTM tags) keep or drop whole visits, so they
  restrict every event of a visit alike;
- visit properties (source, channel, referrer, UTM tags) are read from each visit's first
  event, for every event of the visit (``Selection.values_at``);
- breakdown rows, entry and exit pages: as unfiltered, over the matching events and visits.

Engagement pings (time on page) carry no visit; a visit-level filter keeps the pings of
visitors who have a kept visit.
"""

from __future__ import annotations

import functools
import logging
import threading
import time
from collections import OrderedDict

import numpy as np

from appliance import dimensions as dims
from appliance.channels import SEED_CATEGORIES, traffic_category
from appliance.config import QuerySettings
from appliance.definitions.goals import Goals
from appliance.definitions.segments import Segments
from appliance.events.blocks import StaleBlock
from appliance.events.columns import ColumnStore
from appliance.events.frames import Frame
from appliance.events.sessions import Sessions
from appliance.filters import Filter, event_mask, text_predicate
from appliance.models import EventKind
from appliance.query import daywise, daywise_reports
from appliance.query.background import BackgroundWork
from appliance.query.daysets import SET_DIMENSIONS, DaySets
from appliance.query.daywise_reports import (
    breakdown_answer,
    conversions_answer,
    counts_by_pair,
    custom_events_answer,
    day_groups,
    series_answer,
)
from appliance.query.flights import CLOSE_WAIT_SECONDS
from appliance.query.membership import segment_visits
from appliance.query.memo import ReportMemo
from appliance.query.selection import Selection, counts_by, grouped_distinct, top_line
from appliance.query.spec import QueryError
from storage.strings import StringTable

log = logging.getLogger(__name__)

PAGEVIEW, CUSTOM, CONVERSION, ENGAGEMENT = (int(k) for k in EventKind)
SESSION_BYTES_PER_ROW = 48  # visits and the frame's joined columns they keep (tracemalloc, 3 M rows)


def _rate(part: int, whole: int) -> float:
    return round(100 * part / whole, 2) if whole else 0.0


def _report(report):
    """A report of the vocabulary, answered through :meth:`Scans.answer`."""

    @functools.wraps(report)
    def run(self, query, *args, **kwargs):
        return self.answer(report, query, args, kwargs)

    return run


class Scans:
    """The filtered path: every report of the vocabulary, computed over a :class:`Selection`."""

    def __init__(
        self, *, columns: ColumnStore, strings: StringTable, goals: Goals, segments: Segments, timeout_ms: int, settings=None
    ) -> None:
        self.columns = columns
        self.goals = goals
        self.segments = segments
        self.timeout_ms = timeout_ms
        self._strings = strings
        self._sessions_cache: OrderedDict[tuple, Sessions] = OrderedDict()
        self._sessions_lock = threading.Lock()
        settings = settings or QuerySettings()
        # walks and refused reports finishing: a few workers, each job under a ceiling, stopped at close
        self.background = BackgroundWork(
            workers=settings.background_workers,
            ceiling_seconds=max(settings.background_seconds, settings.time_budget_seconds),
        )
        self.memo = ReportMemo(settings=settings, background=self.background)  # refused reports finish in the background
        self.day_sets = DaySets(self.background)  # the dashboard's filtered reports, walked day by day at once

    def close(self, wait_seconds: float = CLOSE_WAIT_SECONDS) -> None:
        """Stop the background work (Appliance.close): queued walks are dropped, running
        walks and finishers stop at their next check; waits for them ``wait_seconds`` at most."""
        until = time.monotonic() + wait_seconds
        self.background.stop()
        self.memo.close(wait_seconds)
        if not self.background.join(max(0.0, until - time.monotonic())):
            log.warning("a day-set walk still running at close (in a step between two budget checks)")

    def answer(self, report, query, args: tuple, kwargs: dict):
        """``report(self, query, *args, **kwargs)``: answered from :attr:`memo` when the events
        it reads are unchanged, and run again, once, if a block it was reading was rewritten
        and its old generation removed meanwhile (a query would have to outlive the grace
        period)."""
        try:
            return self.memo.answer(self, report, query, args, kwargs)
        except StaleBlock:
            self.forget()
            return self.memo.answer(self, report, query, args, kwargs)

    def frame_of(self, site: int, start_ms: int, end_ms: int) -> Frame:
        """The frame of a site's time range: the running report's own when it is that one."""
        return self.memo.frame_of(self.columns, site, start_ms, end_ms)

    def sessions_of(self, frame) -> Sessions:
        """The visits of a frame; the last few are kept, since a dashboard asks many reports
        of one period (blocks are immutable once built, so the key is exact), unless the
        frame is too large for the column share of the memory budget."""
        key = frame.key
        with self._sessions_lock:
            found = self._sessions_cache.get(key)
            if found is not None:
                self._sessions_cache.move_to_end(key)
                return found
        found = Sessions(frame, self.timeout_ms)
        if frame.size * SESSION_BYTES_PER_ROW > self.columns.cache.limit_bytes // 2:
            return found  # kept, it would hold its frame's blocks far past the memory budget
        with self._sessions_lock:
            self._sessions_cache[key] = found
            while len(self._sessions_cache) > 4:
                self._sessions_cache.popitem(last=False)
        return found

    def forget(self) -> None:
        """Drop cached blocks and visits (the benchmark's cold runs; tests)."""
        self.columns.forget()
        self.memo.clear()
        self.day_sets.clear()
        with self._sessions_lock:
            self._sessions_cache.clear()

    def text(self, string_id: int) -> str:
        return self._strings.text(string_id)

    def lookup(self, text: str) -> int | None:
        return self._strings.lookup(text)

    def select(self, query, filters: list[Filter] | None = None) -> Selection:
        return Selection(self, query, list(query.filters) if filters is None else filters)

    # -- filter evaluation ----------------------------------------------------------------
    def event_mask(self, frame, condition: Filter, site) -> np.ndarray:
        """The positive mask of an event-level filter (fields, properties, goals)."""
        if condition.dimension == "goal":
            goals = self.goals
            mask = np.zeros(frame.size, bool)
            for name in condition.values:
                test = text_predicate(condition.positive, (name,))
                for goal in goals.list(site.id):
                    if test(goal.name):
                        mask |= goals.mask(frame, goal)
            return mask
        return event_mask(frame, condition, self.text, self.lookup)

    def visit_mask(self, selection: Selection, condition: Filter) -> np.ndarray:
        """The positive mask of a visit-level filter over the selection's visits."""
        sessions = selection.sessions
        if condition.dimension == "segment":
            keep = np.zeros(sessions.count, bool)
            for value in condition.values:
                keep |= segment_visits(self, selection, value)
            return keep
        if condition.dimension in dims.VISIT_PROPERTIES:  # tested on the visit's first event
            return self.event_mask(selection.frame, condition, selection.query.site)[sessions.first_row]
        pages = sessions.entry_page if condition.dimension == "entry_page" else sessions.exit_page
        test = text_predicate(condition.positive, condition.values)
        distinct_ids, inverse = np.unique(pages, return_inverse=True)
        accepted = np.array([bool(test(self.text(int(i)))) for i in distinct_ids], bool)
        return accepted[inverse] if len(distinct_ids) else np.zeros(0, bool)

    # -- the vocabulary -------------------------------------------------------------------
    @_report
    def aggregate(self, query) -> dict[str, object]:
        found = self.day_sets.answer(self, query, "aggregate", compute=False)  # the dashboard's set, when started
        if found is None:
            found = daywise.aggregate(self, query)  # day by day: a day's memory, no period-wide visits
        if found is not None:
            return found
        return self.aggregate_of(self.select(query))

    def aggregate_of(self, selection: Selection) -> dict[str, object]:
        frame = selection.frame
        visits = selection.visits
        sessions = selection.sessions
        conversions = selection.of_kind(CONVERSION)
        return top_line(
            # every matching active event lies in a matching visit, of the same visitor
            visitors=frame.visitors.count(sessions.visitor[visits]),
            visits=int(visits.sum()),
            pageviews=int(selection.of_kind(PAGEVIEW).sum()),
            bounces=int(sessions.bounce[visits].sum()),
            duration_ms=int(sessions.duration_ms[visits].sum()),
            events=int(selection.of_kind(CUSTOM).sum()),
            conversions=int(conversions.sum()),
            converting_visitors_by_type=grouped_distinct(frame.values_at("name", conversions), selection.visitor_codes_of(conversions)),
        )

    @_report
    def timeseries(self, query) -> list[dict[str, object]]:
        found = self.day_sets.answer(self, query, "timeseries")  # day by day, with the dashboard's other reports
        if found is not None:
            return found
        return self.timeseries_of(self.select(query))

    def timeseries_of(self, selection: Selection) -> list[dict[str, object]]:
        query = selection.query
        frame = selection.frame
        active = selection.active
        pageviews = selection.of_kind(PAGEVIEW)
        if query.interval == "hour":
            ts = frame.column("ts")
            codes = frame.visitor_codes()
            hours = ts // 3_600_000
            by_hour = frame.visitors.count_groups(hours[active], codes[active])
            return series_answer(query, by_hour, counts_by(hours[pageviews]), None, None)
        days, _ = selection.day_starts()
        group_numbers, day_group = day_groups(query, days)
        row_group = day_group[selection.row_days()]
        selection.visits  # noqa: B018 - built first: visitor codes are then read through the visits
        visitors = frame.visitors.count_groups(row_group[active], selection.visitor_codes_of(active))
        views = counts_by(row_group[pageviews])
        sessions = selection.sessions
        visits = selection.visits
        visit_group = day_group[np.clip(selection.day_index(sessions.start[visits]), 0, len(days) - 1)]
        return series_answer(query, visitors, views, counts_by(visit_group), group_numbers)

    @_report
    def breakdown(self, query, dimension: str, limit: int = 10) -> dict[str, object]:
        if dimension not in dims.DIMENSIONS:
            raise QueryError("property", f"unknown dimension {dimension!r}")
        if dimension in SET_DIMENSIONS:  # day by day, with the dashboard's other reports
            found = self.day_sets.answer(self, query, "breakdown", dimension, limit)
        else:
            found = daywise_reports.breakdown(self, query, dimension, limit)
        if found is not None:
            return found
        return self.breakdown_of(self.select(query), dimension, limit)

    def breakdown_of(self, selection: Selection, dimension: str, limit: int) -> dict[str, object]:
        field = dims.DIMENSIONS[dimension][0]
        frame = selection.frame
        rows = selection.of_kind(PAGEVIEW)
        values = selection.values_at(field, rows)
        if dimension not in dims.COUNT_EMPTY:
            keep = values != 0
            values = values[keep]
            visitor = selection.visitor_codes_of(rows)[keep]
        else:
            visitor = selection.visitor_codes_of(rows)
        sessions = selection.sessions
        visits = selection.visits
        if dimension == "page":
            entry = sessions.entry_page[visits]
        else:
            entry = frame.values_at(field, sessions.first_row[visits])
        inside = entry != 0
        return breakdown_answer(
            self.text, dimension, limit, counts_by(values), grouped_distinct(values, visitor),
            counts_by(entry[inside]),
            counts_by(entry[inside], sessions.bounce[visits][inside].astype(float)),
            counts_by(entry[inside], sessions.duration_ms[visits][inside].astype(float)),
        )

    @_report
    def entry_pages(self, query, limit: int = 10) -> list[dict[str, object]]:
        selection = self.select(query)
        sessions = selection.sessions
        visits = selection.visits
        entry = sessions.entry_page[visits]
        inside = entry != 0
        counts = counts_by(entry[inside])
        bounces = counts_by(entry[inside], sessions.bounce[visits][inside].astype(float))
        durations = counts_by(entry[inside], sessions.duration_ms[visits][inside].astype(float))
        top = sorted(counts, key=lambda i: (-counts[i], self.text(i)))[:limit]
        return [
            {
                "value": self.text(i),
                "visits": counts[i],
                "bounce_rate": _rate(bounces.get(i, 0), counts[i]),
                "visit_duration": round(durations.get(i, 0) / 1000 / counts[i]),
            }
            for i in top
        ]

    @_report
    def exit_pages(self, query, limit: int = 10) -> list[dict[str, object]]:
        selection = self.select(query)
        sessions = selection.sessions
        exits_of = sessions.exit_page[selection.visits]
        exits = counts_by(exits_of[exits_of != 0])
        pageviews = counts_by(selection.frame.values_at("path", selection.of_kind(PAGEVIEW)))
        top = sorted(exits, key=lambda i: (-exits[i], self.text(i)))[:limit]
        return [
            {
                "value": self.text(i),
                "exits": exits[i],
                "pageviews": pageviews.get(i, 0),
                "exit_rate": _rate(exits[i], pageviews.get(i, 0)),
            }
            for i in top
        ]

    @_report
    def time_on_page(self, query, limit: int = 10) -> list[dict[str, object]]:
        selection = self.select(query)
        frame = selection.frame
        rows = selection.of_kind(ENGAGEMENT)
        paths = frame.values_at("path", rows)
        pings = counts_by(paths)
        engaged = counts_by(paths, frame.column("engaged")[rows].astype(float))
        depth = counts_by(paths, frame.column("scroll")[rows].astype(float))
        top = sorted(pings, key=lambda i: (-pings[i], self.text(i)))[:limit]
        return [
            {
                "value": self.text(i),
                "engagements": pings[i],
                "time_on_page": round(engaged.get(i, 0) / pings[i] / 1000, 1),
                "scroll_depth": round(depth.get(i, 0) / pings[i]),
            }
            for i in top
        ]

    @_report
    def event_counts(self, query, dimension: str) -> dict[str, int]:
        """Per value of a breakdown dimension, how many matching events of every kind but
        engagement pings (Plausible's ``events``): a visit property counts every event of the
        visits it started, a page every event sent from it, an entry (exit) page every event
        of the visits that started (ended) on it."""
        if dimension not in dims.DIMENSIONS and dimension not in ("entry_page", "exit_page"):
            raise QueryError("property", f"unknown dimension {dimension!r}")
        selection = self.select(query)
        if dimension in ("entry_page", "exit_page"):
            sessions = selection.sessions
            values = getattr(sessions, dimension)[sessions.visit_of[selection.active]]
        else:
            values = selection.values_at(dims.DIMENSIONS[dimension][0], selection.active)
        if dimension not in dims.COUNT_EMPTY:
            values = values[values != 0]
        return {self.text(value_id): count for value_id, count in counts_by(values).items()}

    @_report
    def custom_events(self, query) -> list[dict[str, object]]:
        found = self.day_sets.answer(self, query, "custom_events")  # day by day, with the dashboard's other reports
        return found if found is not None else self.custom_events_of(self.select(query))

    def custom_events_of(self, selection: Selection) -> list[dict[str, object]]:
        rows = selection.of_kind(CUSTOM)
        names = selection.frame.values_at("name", rows)
        return custom_events_answer(self.text, counts_by(names), grouped_distinct(names, selection.visitor_codes_of(rows)))

    @_report
    def conversions(self, query) -> dict[str, object]:
        found = self.day_sets.answer(self, query, "conversions")  # day by day, with the dashboard's other reports
        return found if found is not None else self.conversions_of(self.select(query))

    def conversions_of(self, selection: Selection) -> dict[str, object]:
        frame = selection.frame
        site_visitors = frame.visitors.count(selection.visitor_codes_of(selection.active))
        rows = selection.of_kind(CONVERSION)
        names = frame.values_at("name", rows)
        amounts = frame.values_at("revenue", rows)
        paid = amounts != 0
        revenue = counts_by_pair(names[paid], frame.values_at("currency", np.flatnonzero(rows)[paid]), amounts[paid])
        converting = frame.visitors.count(selection.visitor_codes_of(rows))
        return conversions_answer(self.text, site_visitors, counts_by(names), grouped_distinct(names, selection.visitor_codes_of(rows)),
                                  revenue, int(rows.sum()), converting)

    @_report
    def traffic_report(self, query) -> dict[str, object]:
        selection = self.select(query)
        frame = selection.frame
        pageviews = selection.of_kind(PAGEVIEW)
        channels = selection.values_at("channel", pageviews)  # the channel of each page view's visit
        rows = pageviews.copy()
        rows[pageviews] = channels != 0  # as the channel sketches: no empty channel
        channels = channels[channels != 0]
        distinct_ids, inverse = np.unique(channels, return_inverse=True)
        category_of = np.array(
            [SEED_CATEGORIES.index(traffic_category(self.text(int(i)))) for i in distinct_ids], np.int64
        )
        by_category = grouped_distinct(category_of[inverse] if len(distinct_ids) else np.zeros(0, np.int64), selection.visitor_codes_of(rows))
        return {
            "total_visitors": frame.visitors.count(selection.visitor_codes_of(selection.active)),
            "total_page_views": int(pageviews.sum()),
            "traffic_sources": {name: by_category.get(i, 0) for i, name in enumerate(SEED_CATEGORIES)},
        }
