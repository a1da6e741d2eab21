"""The filtered reports a dashboard asks, computed together in one day-by-day walk.

A dashboard's filtered page asks a dozen reports of one query (top line, time series,
breakdowns, custom events, conversions), and the JSON stats set as many. Walked one by one
(:mod:`appliance.query.daywise_reports`), each report reads, decodes and masks the same
days' columns again: with the column cache sized to the memory budget that is most of each
report's time. A :class:`DaySet` gives every day's :class:`~appliance.query.daywise.Piece`
to all their reducers at once, so one walk answers them all; :class:`DaySets` keeps the last
few sets' answers (small: sums per bucket or value) by the period's exact frame key, and a
set being computed is waited for rather than computed again.

The top line alone, the cheapest walk, is answered from a set only when one is there
(``Scans.aggregate``): the first filtered top line after a restart stays a top line's walk.
"""

from __future__ import annotations

import pickle
import threading
from collections import Counter, OrderedDict
from collections.abc import Callable
from concurrent.futures import CancelledError, Future

import msgspec
import numpy as np

from appliance.budget import check_budget
from appliance.errors import QueryTimeout
from appliance.events.blocks import StaleBlock
from appliance.query.background import BackgroundWork
from appliance.query.daywise import Piece, Totals, walk
from appliance.query.daywise_reports import (
    BreakdownSums,
    ConversionSums,
    CustomEventSums,
    Pairs,
    SeriesSums,
    breakdown_answer,
    counts_by_pair,
    custom_events_answer,
)
from appliance.query.flights import waits_on
from appliance.query.selection import counts_by, span_ms
from appliance.turns import TURNS

SET_DIMENSIONS = ("page", "source", "channel", "referrer", "country", "device", "browser", "os")


class DaySet:
    """The filtered reports a dashboard asks of one query, computed in ONE day-by-day walk:
    the top line, the time series (the query's interval), the breakdowns of
    :data:`SET_DIMENSIONS`, custom events and conversions. Reading and masking a day's
    columns is most of a walk's cost, and every report of a dashboard reads the same days
    under the same filters, so one walk serves them all (the answers are kept as their final
    sums per value: any breakdown limit is answered from them)."""

    def __init__(self, query, goals=None) -> None:
        self.goals = goals if goals is not None else GoalSums([], None)
        self.top = Totals()
        self.series = SeriesSums(query)
        self.breakdowns = {dimension: BreakdownSums(dimension) for dimension in SET_DIMENSIONS}
        self.custom = CustomEventSums()
        self.conversions = ConversionSums()
        self._reducers = [self.top, self.series, *self.breakdowns.values(), self.custom, self.conversions, self.goals]
        self.columns = tuple(dict.fromkeys(name for reducer in self._reducers for name in reducer.columns))
        self.fields = tuple(dict.fromkeys(name for reducer in self._reducers for name in reducer.fields))

    def add(self, piece: Piece) -> None:
        for reducer in self._reducers:
            reducer.add(piece)

    def finish(self, text: Callable[[int], str]) -> dict:
        """The answers by report name, pickled (a caller may change what it is given; a
        breakdown's: a function of its limit); the walk's per-day arrays are dropped."""
        sums = {dimension: (dict(b.pageviews), b.visitors.counts(), dict(b.visit_counts), dict(b.bounces), dict(b.durations))
                for dimension, b in self.breakdowns.items()}
        answers = {
            "aggregate": self.top.answer(),
            "timeseries": self.series.answer(),
            "custom_events": custom_events_answer(text, dict(self.custom.counts), self.custom.visitors.counts()),
            "conversions": self.conversions.answer(text),
            "goal_figures": self.goals.answer(text, self.top),
        }
        out: dict = {name: pickle.dumps(answer, protocol=pickle.HIGHEST_PROTOCOL) for name, answer in answers.items()}
        out["breakdown"] = lambda dimension, limit: breakdown_answer(text, dimension, limit, *sums[dimension])
        return out


class GoalSums:
    """Per goal of the site: its completions among the matching events, their distinct
    visitors, and revenue per currency (total and paid completions); with the top line's
    visitors, what ``goal_reports._filtered_goal_figures`` gives."""

    columns: tuple[str, ...] = ()

    def __init__(self, goals: list, mask) -> None:
        self.goals = goals
        tests: dict = {}  # the goals' text tests, kept across the days (Goals.mask)
        self.masks = [(lambda day, goal=goal: mask(day, goal, tests)) for goal in goals]  # per day: the goal's rows
        self.fields = (*self.masks, "revenue", "currency") if goals else ()
        self.hits: Counter = Counter()
        self.visitors = Pairs()
        self.paid: Counter = Counter()  # (goal index, currency id) -> [total, paid completions]
        self.paid_count: Counter = Counter()

    def add(self, piece: Piece) -> None:
        if not self.goals:
            return
        rows = np.flatnonzero(piece.rows)
        for index, goal_rows in enumerate(self.masks):
            hit = rows[piece.values(goal_rows, rows)]
            self.hits[index] += len(hit)
            self.visitors.add(np.full(len(hit), index, np.int64), piece.numbers_of(hit))
            amounts = piece.values("revenue", hit)
            paid = amounts != 0
            if paid.any():
                currencies = piece.values("currency", hit[paid])
                for currency, amount in counts_by_pair(currencies, currencies, amounts[paid]).items():
                    self.paid[index, currency[0]] += amount
                self.paid_count.update({(index, int(c)): n for c, n in counts_by(currencies).items()})

    def answer(self, text: Callable[[int], str], top: Totals):
        visitors = self.visitors.counts()
        figures = {}
        for index, goal in enumerate(self.goals):
            revenue = {text(currency): _money(total, self.paid_count[index, currency])
                       for (number, currency), total in sorted(self.paid.items()) if number == index}
            figures[goal.id] = (self.hits[index], visitors.get(index, 0), revenue)
        return top.answer()["visitors"], figures


def _money(total: int, count: int) -> dict[str, int]:
    return {"total_minor": total, "average_minor": round(total / count) if count else 0, "conversions": count}


def day_set(scans, query, frame=None) -> dict | None:
    """The answers of a :class:`DaySet` of ``query``; None where the walk does not apply."""
    found = DaySet(query, GoalSums(scans.goals.list(query.site.id), scans.goals.mask))
    return found.finish(scans.text) if walk(scans, query, found, frame) else None


class DaySets:
    """The last few :class:`DaySet` answers, by the period's frame key as the report memo
    reads it (:mod:`appliance.query.memo`: each day's block identity and event count, so any
    event acknowledged for the period, late ones included, makes a new key), the column
    cache's epoch, the query and the site's goals (a ``goal`` filter reads them). A set being computed is
    waited for, not computed again: a dashboard loading its widgets at once walks once. Sets
    are walked on the appliance's background workers (:mod:`appliance.query.background`:
    one at a time by default, the next in turn; two filters' walks side by side with
    ``[query] background_workers = 2``), each under the workers' ceiling and stopped at
    close; a walk abandoned there, or dropped before its turn, leaves its waiters to compute
    for themselves within their own budgets."""

    def __init__(self, background: BackgroundWork, size: int = 4) -> None:
        self.background = background
        self.size = size
        self._entries: OrderedDict[tuple, Future] = OrderedDict()
        self._lock = threading.Lock()

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()

    def answer(self, scans, query, report: str, *args, compute: bool = True):
        """The answer to ``report`` (a :class:`DaySet` report name; a breakdown's ``args``:
        dimension and limit) of ``query``'s set; None where the walk does not apply, or
        (``compute`` False) when the set is neither kept nor under way."""
        found = self.get(scans, query) if compute else self._done(scans, query)
        if found is None:
            return None
        return found[report](*args) if report == "breakdown" else pickle.loads(found[report])

    def _done(self, scans, query) -> dict | None:
        """The set of ``query`` when it is kept or under way (waited for), else None."""
        with self._lock:
            found = self._entries.get(self._key(scans, query))
        if found is None:
            return None
        waits_on(found)
        try:
            return _wait(found)
        except StaleBlock:
            return None  # the caller's own walk reads the new blocks

    def get(self, scans, query) -> dict | None:
        """The set of ``query``: kept, or being computed, or computed now, by a background
        worker (under its ceiling, not any request's budget), while this thread waits within its own:
        a request refused for its budget leaves the walk running, and asking again gets its
        answers, instead of starting it over each time (and says so: :func:`waits_on`)."""
        entry = self.start(scans, query, scans.frame_of(query.site.id, *span_ms(query)))
        waits_on(entry)
        return _wait(entry)

    def start(self, scans, query, frame=None) -> Future:
        """Start walking the set of ``query`` unless it is kept or under way (a dashboard
        page asks for it before its first widget, so the walk overlaps the top line's);
        ``frame``: the running report's, else the walk builds it."""
        key = self._key(scans, query)
        with self._lock:
            entry = self._entries.get(key)
            if entry is None:
                entry = self._entries[key] = self.background.submit(self._walk, scans, query, frame, key)
                while len(self._entries) > self.size:  # a set nobody keeps is not walked
                    self._entries.popitem(last=False)[1].cancel()
            else:
                self._entries.move_to_end(key)
        return entry

    def _walk(self, scans, query, frame, key) -> dict | None:
        try:
            return day_set(scans, query, frame)
        except BaseException:
            with self._lock:  # asked again, it walks again (a block rewritten meanwhile, past its ceiling)
                self._entries.pop(key, None)
            raise
        finally:
            with self._lock:
                while len(self._entries) > self.size:
                    self._entries.popitem(last=False)

    @staticmethod
    def _key(scans, query) -> tuple:
        """The period's frame key as the report memo reads it (counters and pointers: no block
        built), the query and the site's goals."""
        period = scans.columns.frame_key(query.site.id, *span_ms(query))
        return period, scans.columns.cache.epoch, msgspec.msgpack.encode(query), msgspec.msgpack.encode(scans.goals.list(query.site.id))


def _wait(entry: Future):
    """The walk's answers, waited for within the caller's budget; None when the walk was
    dropped before its turn (newer sets, close) or abandoned (its ceiling, close): the
    caller then computes for itself."""
    while True:
        try:
            with TURNS.waiting():
                return entry.result(timeout=0.05)
        except TimeoutError:
            check_budget()  # the waiting request's own budget
        except (CancelledError, QueryTimeout):  # the walk's own deadline, not this caller's
            return None
