"""The filtered time series and breakdowns computed day by day, as the top line is.

:func:`appliance.query.daywise.walk` gives a reducer each day's matching rows of the visits
counted that day, then those of the visits stitched across midnights (a :class:`Piece`);
here the reducers of :meth:`appliance.query.scans.Scans.timeseries` and
:meth:`~appliance.query.scans.Scans.breakdown` add them up: page views, visits, bounces and
durations are sums per bucket or value, and the distinct visitors per bucket or value are
kept as each day's distinct (bucket, visitor) pairs (:class:`Pairs`; visitors numbered once
for the period, :class:`~appliance.query.daywise.PeriodVisitors`), counted once at the end.
So the memory is a day's columns plus those pairs (no more than the matching rows' and usually
far fewer), not the period's rows, visits and visitor numbering. The answers are
the plain path's exactly (``tests/appliance/test_daywise_reports.py``), and their shapes are
built by the same functions (:func:`series_answer`, :func:`breakdown_answer`).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta

import numpy as np

from appliance import dimensions as dims
from appliance.filters import EVENT_DIMENSIONS
from appliance.models import EventKind
from appliance.periods import day_start_timestamp, month_start, week_start, zone
from appliance.query.daywise import Piece, sorted_distinct, walk
from appliance.query.selection import counts_by, span_ms

PAGEVIEW = int(EventKind.PAGEVIEW)


def _rate(part: int, whole: int) -> float:
    return round(100 * part / whole, 2) if whole else 0.0


MERGE_PAIRS = 1 << 20  # the days' pairs kept apart up to this many (8 B each), then merged
_GROUP_LIMIT = 1 << 31  # groups below it pack into a key's upper half as they are


class Pairs:
    """Distinct (group, visitor) pairs, deduplicated day by day as they come and merged across
    days once there are many (a month's breakdown of a broad filter would otherwise keep each
    returning visitor's pairs once per day); ``counts()`` gives per group how many distinct
    visitors. Visitors are the period's numbers (:class:`~appliance.query.daywise.PeriodVisitors`),
    so a pair is one int64 key, ``group << 32 | visitor``, and each day's keys are one sorted
    run: merging days is a merge of runs (a stable sort), with no sort of visitor hashes. A
    group outside ``[0, 2**31)`` is numbered densely first (never one of ours in practice)."""

    def __init__(self, merge_at: int = MERGE_PAIRS) -> None:
        self._keys: list[np.ndarray] = []  # each sorted and distinct
        self._count = 0
        self._floor = self._merge_at = merge_at
        self._numbers: dict[int, int] | None = None  # group -> number, once a wide group came
        self._next = 0

    def add(self, groups: np.ndarray, visitors: np.ndarray) -> None:
        """Add the pairs of ``groups`` and period visitor numbers ``visitors`` (row by row)."""
        if not len(groups):
            return
        groups = np.asarray(groups, np.int64)
        if self._numbers is None and (int(groups.min()) < 0 or int(groups.max()) >= _GROUP_LIMIT):
            self._renumber()
        if self._numbers is not None:
            distinct, inverse = np.unique(groups, return_inverse=True)
            groups = np.array([self._number(group) for group in distinct.tolist()], np.int64)[inverse]
        self._keys.append(sorted_distinct((groups << 32) | np.asarray(visitors, np.int64)))
        self._count += len(self._keys[-1])
        if self._count > self._merge_at:  # the days' pairs merged: a visitor back on other days counts once
            self._keys = [self._merged()]
            self._count = len(self._keys[0])
            self._merge_at = max(self._floor, 2 * self._count)  # amortised: each pair merged a few times

    def _renumber(self) -> None:
        """Switch to numbered groups: those added so far keep their values as their numbers,
        new ones are numbered after the largest."""
        seen = np.unique(self._merged() >> 32).tolist() if self._keys else []
        self._numbers = {group: group for group in seen}
        self._next = seen[-1] + 1 if seen else 0

    def _number(self, group: int) -> int:
        number = self._numbers.get(group)
        if number is None:
            number = self._numbers[group] = self._next
            self._next += 1
        return number

    def _merged(self) -> np.ndarray:
        if len(self._keys) == 1:
            return self._keys[0]
        return sorted_distinct(np.concatenate(self._keys), kind="stable")  # sorted runs: merged, not sorted again

    def counts(self) -> dict[int, int]:
        if not self._keys:
            return {}
        found = counts_by(self._merged() >> 32)
        if self._numbers is None:
            return found
        group_of = {number: group for group, number in self._numbers.items()}
        return {group_of[number]: count for number, count in found.items()}


def day_bounds(query) -> tuple[list[date], np.ndarray]:
    """The local days of the query's period and their start times (ms), plus the period's end."""
    days = [query.date_from + timedelta(days=i) for i in range((query.date_to - query.date_from).days + 1)]
    bounds = [int(day_start_timestamp(day, query.site.timezone) * 1000) for day in days]
    bounds.append(span_ms(query)[1])
    return days, np.array(bounds, np.int64)


def day_groups(query, days: list[date]) -> tuple[dict[date, int], np.ndarray]:
    """The interval's buckets (label -> number, in order) and each day's bucket number."""
    group_of_day = {"day": lambda d: d, "week": week_start, "month": month_start}[query.interval]
    numbers: dict[date, int] = {}
    return numbers, np.array([numbers.setdefault(group_of_day(day), len(numbers)) for day in days], np.int32)


def series_answer(query, visitors: dict, views: dict, visits: dict | None, groups: dict[date, int] | None) -> list[dict[str, object]]:
    """The time series' shape: per hour (``groups`` None: keyed by hour numbers) or per bucket."""
    if groups is None:
        first, last = query.hour_range()
        tz = zone(query.site.timezone)
        return [
            {
                "date": datetime.fromtimestamp(hour * 3600, UTC).astimezone(tz).isoformat(),
                "visitors": visitors.get(hour, 0),
                "pageviews": views.get(hour, 0),
            }
            for hour in range(first, last + 1)
        ]
    return [
        {
            "date": label.isoformat(),
            "visitors": visitors.get(number, 0),
            "pageviews": views.get(number, 0),
            "visits": visits.get(number, 0),
        }
        for label, number in groups.items()
    ]


def breakdown_answer(text: Callable[[int], str], dimension: str, limit: int, pageviews: dict, visitors: dict,
                     visit_counts: dict, bounces: dict, durations: dict) -> dict[str, object]:
    """A breakdown's shape from its sums per value id (only values with page views are rows)."""
    rows_out = []
    for value_id, views in pageviews.items():
        value_visits = visit_counts.get(value_id, 0)
        rows_out.append(
            {
                "value": text(value_id),
                "visitors": visitors.get(value_id, 0),
                "pageviews": views,
                "visits": value_visits,
                "bounce_rate": _rate(bounces.get(value_id, 0), value_visits),
                "visit_duration": round(durations.get(value_id, 0) / 1000 / value_visits) if value_visits else 0,
            }
        )
    rows_out.sort(key=lambda row: (-row["visitors"], -row["pageviews"], row["value"]))
    top = rows_out[:limit]
    return {
        "dimension": dimension,
        "results": top,
        "rest": {
            "values": len(rows_out) - len(top),
            "pageviews": sum(pageviews.values()) - sum(row["pageviews"] for row in top),
        },
    }


def custom_events_answer(text: Callable[[int], str], counts: dict, visitors: dict) -> list[dict[str, object]]:
    """The custom events' shape from events and distinct visitors per name id."""
    out = [{"name": text(i), "events": n, "visitors": visitors.get(i, 0)} for i, n in counts.items()]
    return sorted(out, key=lambda row: (-row["events"], row["name"]))


def counts_by_pair(names: np.ndarray, currencies: np.ndarray, amounts: np.ndarray) -> dict[tuple[int, int], int]:
    """The exact integer sum of ``amounts`` per (name id, currency id)."""
    out: dict[tuple[int, int], int] = {}
    for name, currency, amount in zip(names.tolist(), currencies.tolist(), amounts.tolist(), strict=True):
        out[name, currency] = out.get((name, currency), 0) + amount
    return out


def conversions_answer(text: Callable[[int], str], site_visitors: int, counts: dict, converters: dict,
                       revenue: dict[tuple[int, int], int], total: int, converting: int) -> dict[str, object]:
    """The conversions report's shape; revenue per goal in minor units per currency (by name)."""
    revenue_rows: dict[int, dict[str, int]] = {}
    for (name_id, currency_id), amount in sorted(revenue.items(), key=lambda item: (item[0][0], text(item[0][1]))):
        per_currency = revenue_rows.setdefault(name_id, {})
        currency = text(currency_id)
        per_currency[currency] = per_currency.get(currency, 0) + amount
    goals = []
    for type_id, count in sorted(counts.items(), key=lambda item: (-item[1], text(item[0]))):
        unique = converters.get(type_id, 0)
        goals.append(
            {
                "name": text(type_id),
                "conversions": count,
                "visitors": unique,
                "conversion_rate": _rate(unique, site_visitors),
                "revenue_minor": revenue_rows.get(type_id, {}),
            }
        )
    return {
        "visitors": site_visitors,
        "total_conversions": total,
        "converting_visitors": converting,
        "conversion_rate": _rate(converting, site_visitors),
        "goals": goals,
    }


class SeriesSums:
    """Per bucket (hour, or the interval's bucket of local days): distinct visitors of the
    matching events, matching page views, and visits by the bucket of their start."""

    columns = ("ts", "s.start")
    fields: tuple[str, ...] = ()

    def __init__(self, query) -> None:
        self.query = query
        self.hourly = query.interval == "hour"
        days, self.bounds = day_bounds(query)
        self.groups, self.day_group = (None, None) if self.hourly else day_groups(query, days)
        self.visitors = Pairs()
        self.views: Counter = Counter()
        self.visits: Counter = Counter()

    def _bucket(self, ts: np.ndarray) -> np.ndarray:
        if self.hourly:
            return ts // 3_600_000
        days = np.clip(np.searchsorted(self.bounds, ts, "right") - 1, 0, len(self.day_group) - 1)
        return self.day_group[days]

    def add(self, piece: Piece) -> None:
        rows = np.flatnonzero(piece.rows)
        bucket = self._bucket(piece.ts()[rows])
        self.visitors.add(bucket, piece.numbers_of(rows))
        self.views.update(counts_by(bucket[piece.kind[rows] == PAGEVIEW]))
        if not self.hourly:
            self.visits.update(counts_by(self._bucket(piece.visits["start"][piece.matched])))

    def answer(self) -> list[dict[str, object]]:
        return series_answer(self.query, self.visitors.counts(), self.views, self.visits, self.groups)


class BreakdownSums:
    """Per value of a dimension: the matching page views and their distinct visitors (a visit
    property read from the visit's first event), and the matching visits by their entry value
    (the entry page for pages) with their bounces and durations."""

    fields: tuple[str, ...]

    def __init__(self, dimension: str) -> None:
        self.dimension = dimension
        self.field = dims.DIMENSIONS[dimension][0]
        self.fields = (self.field,)
        stored = ("c." + self.field, "d." + self.field) if self.field in EVENT_DIMENSIONS.values() else ()
        self.columns = ("s.first_row", *stored, *(("s.entry", "d.path") if dimension == "page" else ()))
        self.visitors = Pairs()
        self.pageviews: Counter = Counter()
        self.visit_counts: Counter = Counter()
        self.bounces: Counter = Counter()
        self.durations: Counter = Counter()

    def add(self, piece: Piece) -> None:
        rows = piece.once("views", lambda: np.flatnonzero(piece.rows & (piece.kind == PAGEVIEW)))
        visits = piece.visits
        weights = None
        if self.field in dims.VISIT_FIELDS:  # the visit's value for each of its page views: one pair a visit
            first_rows, codes, weights = piece.once("viewed visits", lambda: _viewed_visits(piece, rows))
            values = piece.values(self.field, first_rows)
        else:
            values = piece.values(self.field, rows)
            codes = piece.once("views' visitors", lambda: piece.numbers_of(rows))
        if self.dimension not in dims.COUNT_EMPTY:
            keep = values != 0
            values, codes = values[keep], codes[keep]
            weights = weights[keep] if weights is not None else None
        self.pageviews.update(counts_by(values, weights))
        self.visitors.add(values, codes)
        matched, first_rows, bounce, duration = piece.once("matched visits", lambda: _matched_visits(piece))
        if self.dimension == "page":
            entry = visits["entry_page"][matched]
        else:
            entry = piece.values(self.field, first_rows)
        inside = entry != 0
        entry = entry[inside]
        self.visit_counts.update(counts_by(entry))
        self.bounces.update(counts_by(entry[bounce[inside]]))
        self.durations.update(counts_by(entry, duration[inside]))  # exact: sums far below 2**53

    def answer(self, text: Callable[[int], str], limit: int) -> dict[str, object]:
        return breakdown_answer(text, self.dimension, limit, dict(self.pageviews), self.visitors.counts(),
                                self.visit_counts, self.bounces, self.durations)


def _viewed_visits(piece: Piece, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Of the visits with matching page views ``rows``: their first rows, their visitors'
    period numbers and how many of the page views each has (a visit property's weights)."""
    visits = piece.visits
    views = np.bincount(piece.visit_of[rows], minlength=len(visits["visitor"]))
    viewed = np.flatnonzero(views)
    return visits["first_row"][viewed], piece.numbering()[visits["visitor"][viewed]], views[viewed].astype(float)


def _matched_visits(piece: Piece) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The matching visits' numbers, first rows, bounces and durations."""
    visits = piece.visits
    matched = np.flatnonzero(piece.matched)
    return matched, visits["first_row"][matched], visits["bounce"][matched], np.asarray(visits["duration"][matched], np.int64)


class CustomEventSums:
    """Per custom event name: the matching events and their distinct visitors."""

    columns: tuple[str, ...] = ()
    fields: tuple[str, ...] = ()
    kind = int(EventKind.CUSTOM)

    def __init__(self) -> None:
        self.counts: Counter = Counter()
        self.visitors = Pairs()

    def add(self, piece: Piece) -> None:
        rows = np.flatnonzero(piece.rows & (piece.kind == self.kind))
        names = piece.values("name", rows)
        self.counts.update(counts_by(names))
        self.visitors.add(names, piece.numbers_of(rows))


class ConversionSums(CustomEventSums):
    """Per goal (conversion name): conversions, distinct converting visitors and revenue per
    currency; and the distinct visitors of every matching event, and of the conversions."""

    fields = ("revenue", "currency")
    kind = int(EventKind.CONVERSION)

    def __init__(self) -> None:
        super().__init__()
        self.revenue: Counter = Counter()
        self.site_visitors = Pairs()  # group 0: the visitors of every matching event
        self.converting = Pairs()

    def add(self, piece: Piece) -> None:
        super().add(piece)
        visitor = piece.visits["visitor"][piece.matched]
        self.site_visitors.add(np.zeros(len(visitor), np.int64), piece.numbering()[visitor])
        rows = np.flatnonzero(piece.rows & (piece.kind == self.kind))
        self.converting.add(np.zeros(len(rows), np.int64), piece.numbers_of(rows))
        amounts = piece.values("revenue", rows)
        paid = amounts != 0
        if paid.any():
            names, currencies = piece.values("name", rows[paid]), piece.values("currency", rows[paid])
            self.revenue.update(counts_by_pair(names, currencies, amounts[paid]))

    def answer(self, text: Callable[[int], str]) -> dict[str, object]:
        site_visitors = self.site_visitors.counts().get(0, 0)
        return conversions_answer(text, site_visitors, dict(self.counts), self.visitors.counts(), dict(self.revenue),
                                  sum(self.counts.values()), self.converting.counts().get(0, 0))


def timeseries(scans, query, frame=None) -> list[dict[str, object]] | None:
    """The filtered time series of ``query`` day by day (as :meth:`Scans.timeseries` gives
    it); None where the day-by-day walk does not apply (segments)."""
    series = SeriesSums(query)
    return series.answer() if walk(scans, query, series, frame) else None


def breakdown(scans, query, dimension: str, limit: int, frame=None) -> dict[str, object] | None:
    """The filtered breakdown of ``query`` by ``dimension`` day by day (as
    :meth:`Scans.breakdown` gives it); None where the day-by-day walk does not apply."""
    reducer = BreakdownSums(dimension)
    return reducer.answer(scans.text, limit) if walk(scans, query, reducer, frame) else None


def custom_events(scans, query, frame=None) -> list[dict[str, object]] | None:
    """The filtered custom events of ``query`` day by day (as :meth:`Scans.custom_events`)."""
    reducer = CustomEventSums()
    if not walk(scans, query, reducer, frame):
        return None
    return custom_events_answer(scans.text, dict(reducer.counts), reducer.visitors.counts())


def conversions(scans, query, frame=None) -> dict[str, object] | None:
    """The filtered conversions report of ``query`` day by day (as :meth:`Scans.conversions`)."""
    reducer = ConversionSums()
    return reducer.answer(scans.text) if walk(scans, query, reducer, frame) else None

