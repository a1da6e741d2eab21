"""Goal reports: completions, unique converters, conversion rate and revenue per goal.

Unfiltered reports read the goal counters and sketches the aggregation step keeps per goal
and local day (:mod:`appliance.definitions.goals`); filtered ones test each goal against the
selection's rows. The conversion rate of a goal is its unique converters ÷ unique visitors of
the period, × 100 (per dimension value in :meth:`GoalReports.breakdown`).
"""

from __future__ import annotations

from collections import defaultdict

import numpy as np

from appliance import dimensions as dims
from appliance.definitions.common import DefinitionError
from appliance.definitions.goals import (
    GOAL_COMPLETIONS,
    GOAL_REVENUE,
    GOAL_REVENUE_EVENTS,
    GOAL_VISITORS,
    SEPARATOR,
    Goal,
    Goals,
)
from appliance.events.coordinator import WriteCoordinator
from appliance.models import EventKind
from appliance.periods import day_from_number
from appliance.query.counted import CountedReports
from appliance.query.scans import Scans
from appliance.query.spec import Query
from storage.counters import Counters
from storage.keys import DAY
from storage.sketches import DIMENSION_PRECISION, Sketch, Sketches
from storage.strings import StringTable


class GoalReports:
    def __init__(
        self,
        *,
        goals: Goals,
        counted: CountedReports,
        scans: Scans,
        counters: Counters,
        sketches: Sketches,
        strings: StringTable,
        coordinator: WriteCoordinator,
    ) -> None:
        self._goals = goals
        self._counted = counted
        self._scans = scans
        self._counters = counters
        self._sketches = sketches
        self._strings = strings
        self._coordinator = coordinator

    def report(self, query: Query) -> list[dict[str, object]]:
        """One row per defined goal: completions, unique visitors, conversion rate, revenue."""
        goals = self._goals.list(query.site.id)
        if not goals:
            return []
        # Each back-fill's state is read before its numbers: "complete" then promises them.
        statuses = {goal.id: self._goals.status(goal) for goal in goals}
        if query.filters:
            return self._filtered_report(query, goals, statuses)
        site_id = query.site.id
        with self._coordinator.settled() as txn:
            site_visitors = self._counted.site_visitors(txn, query)
            counts = _sum(self._counters.scan(txn, site_id, DAY, GOAL_COMPLETIONS, query.first_day, query.last_day))
            sketches = self._sketches.union(
                txn, site_id, DAY, GOAL_VISITORS, query.first_day, query.last_day, DIMENSION_PRECISION
            )
            amounts = _sum(self._counters.scan(txn, site_id, DAY, GOAL_REVENUE, query.first_day, query.last_day))
            paid = _sum(self._counters.scan(txn, site_id, DAY, GOAL_REVENUE_EVENTS, query.first_day, query.last_day))
            revenue_names = {i: self._strings.text(i, txn) for i in amounts}
        revenue: dict[int, dict[str, dict[str, int]]] = defaultdict(dict)
        for revenue_id, amount in amounts.items():
            counter, _, currency = revenue_names[revenue_id].partition(SEPARATOR)
            if counter.isdigit():
                revenue[int(counter)][currency] = _money(amount, paid.get(revenue_id, 0))
        rows = []
        for goal in goals:
            sketch = sketches.get(goal.counter_id)
            unique = sketch.count() if sketch else 0
            row = self._row(goal, counts.get(goal.counter_id, 0), unique, site_visitors, revenue.get(goal.counter_id, {}))
            rows.append(row | {"backfill": statuses[goal.id]})
        return rows

    def _filtered_report(self, query, goals: list[Goal], statuses) -> list[dict[str, object]]:
        # kept by the scans' memo, as the scan reports are (a filtered dashboard asks again)
        site_visitors, figures = self._scans.answer(_filtered_goal_figures, query, (), {})
        rows = []
        for goal in goals:
            completions, unique, revenue = figures.get(goal.id, (0, 0, {}))
            row = self._row(goal, completions, unique, site_visitors, revenue)
            rows.append(row | {"backfill": statuses[goal.id]})
        return rows

    def _row(self, goal: Goal, completions: int, unique: int, site_visitors: int, revenue) -> dict[str, object]:
        return {
            "goal_id": goal.id,
            "name": goal.name,
            "kind": goal.kind,
            "conversions": completions,
            "visitors": unique,
            "conversion_rate": round(100 * unique / site_visitors, 2) if site_visitors else 0.0,
            "revenue": revenue,
        }

    def timeseries(self, query, goal: Goal) -> list[dict[str, object]]:
        """Per local day: completions, unique visitors and the conversion rate (fast path)."""
        with self._coordinator.settled() as txn:
            counts = {
                day: value
                for day, dim, value in self._counters.scan(txn, query.site.id, DAY, GOAL_COMPLETIONS, query.first_day, query.last_day)
                if dim == goal.counter_id
            }
            converters = {
                day: Sketch.from_bytes(raw).count()
                for day, dim, raw in self._sketches.scan(txn, query.site.id, DAY, GOAL_VISITORS, query.first_day, query.last_day)
                if dim == goal.counter_id
            }
            site = {
                day: Sketch.from_bytes(raw).count()
                for day, _, raw in self._sketches.scan(txn, query.site.id, DAY, dims.VISITORS, query.first_day, query.last_day)
            }
        return [
            {
                "date": day_from_number(day).isoformat(),
                "conversions": counts.get(day, 0),
                "visitors": converters.get(day, 0),
                "conversion_rate": round(100 * converters.get(day, 0) / site[day], 2) if site.get(day) else 0.0,
            }
            for day in range(query.first_day, query.last_day + 1)
        ]

    def breakdown(self, query, goal: Goal, dimension: str, limit: int = 10) -> list[dict[str, object]]:
        """Conversion rate per value of a dimension: of the visitors with a page view with
        that value, the share who completed the goal in the period (filtered path, exact)."""
        if dimension not in dims.DIMENSIONS:
            raise DefinitionError("property", f"unknown dimension {dimension!r}")
        field = dims.DIMENSIONS[dimension][0]
        selection = self._scans.select(query)
        frame = selection.frame
        visitor = frame.column("visitor")
        converters = np.unique(visitor[selection.rows & self._goals.mask(frame, goal)])
        pageviews = selection.of_kind(EventKind.PAGEVIEW)
        values = selection.values_at(field, pageviews)
        pairs_visitor = visitor[pageviews]
        if dimension not in dims.COUNT_EMPTY:
            pairs_visitor, values = pairs_visitor[values != 0], values[values != 0]
        if not len(values):
            return []
        order = np.lexsort((pairs_visitor, values))
        values, pairs_visitor = values[order], pairs_visitor[order]
        first = np.ones(len(values), bool)
        first[1:] = (values[1:] != values[:-1]) | (pairs_visitor[1:] != pairs_visitor[:-1])
        values, pairs_visitor = values[first], pairs_visitor[first]
        converted = np.isin(pairs_visitor, converters)
        ids, inverse = np.unique(values, return_inverse=True)
        totals = np.bincount(inverse, minlength=len(ids))
        hits = np.bincount(inverse, weights=converted, minlength=len(ids)).astype(int)
        rows = [
            {
                "value": self._strings.text(int(i)),
                "visitors": int(t),
                "converted_visitors": int(h),
                "conversion_rate": round(100 * h / t, 2) if t else 0.0,
            }
            for i, t, h in zip(ids.tolist(), totals.tolist(), hits.tolist(), strict=True)
        ]
        rows.sort(key=lambda row: (-row["converted_visitors"], -row["visitors"], row["value"]))
        return rows[:limit]




def _sum(rows) -> dict[int, int]:
    totals: dict[int, int] = defaultdict(int)
    for _, dimension, value in rows:
        totals[dimension] += value
    return dict(totals)


def _money(total: int, count: int) -> dict[str, int]:
    return {"total_minor": total, "average_minor": round(total / count) if count else 0, "conversions": count}


def _filtered_goal_figures(scans, query) -> tuple[int, dict[int, tuple[int, int, dict]]]:
    """The query's visitors, and per goal its completions, unique visitors and revenue per
    currency, over the filtered events (a report for :meth:`Scans.answer`: its memo key holds
    the goal definitions); day by day with the dashboard's other reports where that applies
    (:mod:`appliance.query.daysets`)."""
    found = scans.day_sets.answer(scans, query, "goal_figures")
    if found is not None:
        return found
    return filtered_goal_figures_of(scans, query)


def filtered_goal_figures_of(scans, query) -> tuple[int, dict[int, tuple[int, int, dict]]]:
    """:func:`_filtered_goal_figures` over the period's frame (segments; the tests' reference)."""
    selection = scans.select(query)
    frame = selection.frame
    visitor = frame.column("visitor")
    site_visitors = len(np.unique(visitor[selection.active]))
    figures = {}
    for goal in scans.goals.list(query.site.id):
        hit = selection.rows & scans.goals.mask(frame, goal)
        revenue: dict[str, dict[str, int]] = {}
        amounts = frame.column("revenue")[hit]
        currencies = frame.column("currency")[hit]
        for currency_id in np.unique(currencies[amounts != 0]).tolist():
            chosen = (currencies == currency_id) & (amounts != 0)
            revenue[scans.text(currency_id)] = _money(int(amounts[chosen].sum()), int(chosen.sum()))
        figures[goal.id] = (int(hit.sum()), len(np.unique(visitor[hit])), revenue)
    return site_visitors, figures
