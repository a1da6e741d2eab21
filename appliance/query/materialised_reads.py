"""Reading materialised segments: a query through one segment from its per-day figures.

:class:`~appliance.query.materialised.Materialiser` keeps each settled day's figures of a
segment's member visits; here a query over a period reads them for the days that are fresh
and scans only the unsettled tail (the last day or two), then folds both into the shapes of
the counted and scanned paths. When a day in the middle is stale (a late event, a changed
goal) the answer is ``None`` and the planner scans instead.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import timedelta

import msgspec
import numpy as np

from appliance.events.coordinator import WriteCoordinator
from appliance.filters import make_filter
from appliance.periods import (
    day_from_number,
    day_number,
    day_start_timestamp,
    month_start,
    week_start,
)
from appliance.query.materialised import (
    SEGMENT_BOUNCES,
    SEGMENT_CONVERSIONS,
    SEGMENT_CONVERTERS,
    SEGMENT_DURATION_MS,
    SEGMENT_EVENTS,
    SEGMENT_PAGEVIEWS,
    SEGMENT_VISITORS,
    SEGMENT_VISITS,
    SEPARATOR,
    Materialiser,
    by_day,
)
from appliance.query.scans import Scans
from storage.arrays import distinct_values
from storage.counters import Counters
from storage.keys import DAY
from storage.sketches import SITE_PRECISION, Sketch, Sketches
from storage.strings import StringTable


class MaterialisedReports:
    def __init__(
        self,
        *,
        materialiser: Materialiser,
        scans: Scans,
        counters: Counters,
        sketches: Sketches,
        strings: StringTable,
        coordinator: WriteCoordinator,
    ) -> None:
        self._materialiser = materialiser
        self._scans = scans
        self._counters = counters
        self._sketches = sketches
        self._strings = strings
        self._coordinator = coordinator

    def _plan(self, query, segment):
        """``(txn figures, tail start day)`` or None when the scan path must answer."""
        site = query.site
        first, last = query.first_day, query.last_day
        with self._coordinator.settled() as txn:
            fresh = self._materialiser.fresh_days(txn, site, segment, first - 1, last)
            tail = last + 1
            while tail - 1 >= first and tail - 1 not in fresh:
                tail -= 1
            if any(day not in fresh for day in range(first - 1, tail)):
                return None
            figures = self._figures(txn, site, segment, first, last, tail)
        return figures, tail

    def _figures(self, txn, site, segment, first: int, last: int, tail: int) -> dict:
        """Per bucket (local day) of the fresh part: counters and sketches of the segment."""
        strings = self._strings
        sources = {}
        for day in range(first - 1, tail):
            found = strings.lookup(f"{segment.counter_id}{SEPARATOR}{day}", txn)
            if found is not None:
                sources[found] = day
        out: dict = {"counters": defaultdict(lambda: defaultdict(int)), "visitors": {}, "converters": defaultdict(dict)}
        top = min(last, tail)
        counters = self._counters
        for metric in (SEGMENT_VISITS, SEGMENT_BOUNCES, SEGMENT_DURATION_MS, SEGMENT_PAGEVIEWS, SEGMENT_EVENTS, SEGMENT_CONVERSIONS):
            highest = tail - 1 if metric in (SEGMENT_VISITS, SEGMENT_BOUNCES, SEGMENT_DURATION_MS) else top
            for bucket, dimension, value in counters.scan(txn, site.id, DAY, metric, first, highest):
                if dimension in sources:
                    out["counters"][metric][bucket] += value
        sketches = self._sketches
        for bucket, dimension, raw in sketches.scan(txn, site.id, DAY, SEGMENT_VISITORS, first, top):
            if dimension in sources:
                target = out["visitors"].setdefault(bucket, Sketch(SITE_PRECISION))
                target.merge(Sketch.from_bytes(raw))
        prefixes = {f"{segment.counter_id}{SEPARATOR}{day}{SEPARATOR}": day for day in range(first - 1, tail)}
        for bucket, dimension, raw in sketches.scan(txn, site.id, DAY, SEGMENT_CONVERTERS, first, top):
            label = strings.text(dimension, txn)
            head, _, name = label.rpartition(SEPARATOR)
            if head + SEPARATOR in prefixes:
                target = out["converters"][bucket].setdefault(name, Sketch(SITE_PRECISION))
                target.merge(Sketch.from_bytes(raw))
        return out

    def _tail(self, query, segment, tail: int):
        """The member visits that started on days ``tail``..``last``, scanned: per local day
        (index into the tail) their figures and visitor hashes."""
        scans = self._scans
        scoped = msgspec.structs.replace(
            query,
            date_from=day_from_number(tail - 1),
            filters=[make_filter("is", "segment", [str(segment.id)])],
        )
        selection = scans.select(scoped)
        sessions = selection.sessions
        tail_start = int(day_start_timestamp(day_from_number(tail), query.site.timezone) * 1000)
        visits = selection.visits & (sessions.start >= tail_start)
        rows = np.flatnonzero(sessions.rows_in(visits))
        frame = selection.frame
        out: dict[str, dict] = {name: defaultdict(int) for name in ("visits", "bounces", "duration")}
        start_days = selection.day_index(sessions.start[visits]) + tail - 1
        for day in distinct_values(start_days).tolist():
            chosen = start_days == day
            out["visits"][day] = int(chosen.sum())
            out["bounces"][day] = int(sessions.bounce[visits][chosen].sum())
            out["duration"][day] = int(sessions.duration_ms[visits][chosen].sum())
        days = selection.day_index(frame.column("ts")[rows]) + tail - 1
        out["by_day"] = dict(
            by_day(rows, days, selection.kind, frame.column("visitor"), frame.column("name"), self._strings.text)
        )
        return out

    def _days(self, query, segment):
        """Per local day of the period: counts, a visitor sketch and converter sketches."""
        planned = self._plan(query, segment)
        if planned is None:
            return None
        figures, tail = planned
        per_day = {}
        counters = figures["counters"]
        for day in range(query.first_day, query.last_day + 1):
            visitors = Sketch(SITE_PRECISION)
            if day in figures["visitors"]:
                visitors.merge(figures["visitors"][day])
            converters = {}
            for name, sketch in figures["converters"].get(day, {}).items():
                converters[name] = Sketch(SITE_PRECISION)
                converters[name].merge(sketch)
            per_day[day] = {
                "visits": counters[SEGMENT_VISITS].get(day, 0),
                "bounces": counters[SEGMENT_BOUNCES].get(day, 0),
                "duration": counters[SEGMENT_DURATION_MS].get(day, 0),
                "pageviews": counters[SEGMENT_PAGEVIEWS].get(day, 0),
                "events": counters[SEGMENT_EVENTS].get(day, 0),
                "conversions": counters[SEGMENT_CONVERSIONS].get(day, 0),
                "visitors": visitors,
                "converters": converters,
            }
        if tail <= query.last_day:
            scanned = self._tail(query, segment, tail)
            for day, entry in per_day.items():
                for name in ("visits", "bounces", "duration"):
                    entry[name] += scanned[name].get(day, 0)
                found = scanned["by_day"].get(day)
                if found is None:
                    continue
                for name in ("pageviews", "events", "conversions"):
                    entry[name] += found[name]
                entry["visitors"].add_array(found["visitors"])
                for name, members in found["converters"].items():
                    entry["converters"].setdefault(name, Sketch(SITE_PRECISION)).add_array(members)
        return per_day

    def aggregate(self, query, segment) -> dict[str, object] | None:
        per_day = self._days(query, segment)
        if per_day is None:
            return None
        totals = {name: sum(entry[name] for entry in per_day.values()) for name in ("visits", "bounces", "duration", "pageviews", "events", "conversions")}
        visitors = Sketch(SITE_PRECISION)
        converters: dict[str, Sketch] = {}
        for entry in per_day.values():
            visitors.merge(entry["visitors"])
            for name, sketch in entry["converters"].items():
                converters.setdefault(name, Sketch(SITE_PRECISION)).merge(sketch)
        visits = totals["visits"]
        lookup = self._strings.lookup
        return {
            "visitors": visitors.count(),
            "visits": visits,
            "pageviews": totals["pageviews"],
            "views_per_visit": round(totals["pageviews"] / visits, 2) if visits else 0.0,
            "bounce_rate": round(100 * totals["bounces"] / visits, 2) if visits else 0.0,
            "visit_duration": round(totals["duration"] / 1000 / visits) if visits else 0,
            "events": totals["events"],
            "conversions": totals["conversions"],
            "converting_visitors_by_type": {
                lookup(name): sketch.count() for name, sketch in converters.items() if lookup(name) is not None
            },
        }

    def timeseries(self, query, segment) -> list[dict[str, object]] | None:
        if query.interval == "hour":
            return None
        per_day = self._days(query, segment)
        if per_day is None:
            return None
        group_of = {"day": lambda d: d, "week": week_start, "month": month_start}[query.interval]
        groups: dict = {}
        for offset in range((query.date_to - query.date_from).days + 1):
            day = query.date_from + timedelta(days=offset)
            groups.setdefault(group_of(day), []).append(day_number(day))
        series = []
        for label, numbers in groups.items():
            visitors = Sketch(SITE_PRECISION)
            for number in numbers:
                visitors.merge(per_day[number]["visitors"])
            series.append(
                {
                    "date": label.isoformat(),
                    "visitors": visitors.count(),
                    "pageviews": sum(per_day[n]["pageviews"] for n in numbers),
                    "visits": sum(per_day[n]["visits"] for n in numbers),
                }
            )
        return series
