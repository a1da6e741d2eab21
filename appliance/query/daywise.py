"""The filtered top line computed day by day: per-day partial answers, merged.

The plain scan (:class:`appliance.query.selection.Selection`) materialises its whole period
at once: every row's filter masks, visit numbers and visitor codes, and the numbering of the
period's visitors (:class:`appliance.events.frames.VisitorSpace`, one sort of every day's
visitor dictionary). At the seed's month that is ten million rows, ~60 bytes each, and most of
its CPU time; yet a visit rarely spans two days, and the top line's figures are sums over
visits and events plus one count of distinct visitors.

So :func:`aggregate` walks the period's blocks one at a time. Each day's rows are masked with
the filters and reduced over the day's own visits (stored with a compacted block,
:mod:`appliance.events.sessions`): matching visits, page views, events, conversions, bounces
and durations are summed, and the day's matching visitors are kept as their sorted distinct
visitor hashes (a small array: the day's visitor dictionary is sorted, so marking the matching
codes gives them without a sort). Visits cross a midnight only for visitors with a visit ending
within the timeout before it and one starting within the timeout after it (each block knows
its visits near midnight: ``late`` / ``early``); of those visitors, only the visits of their
*edge chains* (:func:`appliance.events.sessions.edge_chains`) can differ when the days are
sessionised together, so those are left out of their days and sessionised again over the
period from their rows alone — which a block stores since format 5 (``e.*``), so no whole
column is decoded for them. The period's distinct visitors are then one merge of the days'
sorted matching hashes, not a numbering of every visitor of the period. A stored block the
column cache does not keep is released once its day is reduced
(:meth:`appliance.events.blocks.Block.release`), and the next day's columns are decoded on the
loader pool meanwhile (:mod:`appliance.events.preload`), so the scan's memory peak is about a
day's columns plus the cache, not the month's.

The answer is the plain path's exactly (``tests/appliance/test_daywise_partials.py`` compares
them on varied data, and the property tests compare both with brute force). Segment filters
read the whole period's visits (:mod:`appliance.query.membership`): with one, :func:`aggregate`
returns None and the plain path answers.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from appliance.budget import check_budget
from appliance.events.blocks import EDGE_COLUMNS
from appliance.events.frames import Frame
from appliance.events.preload import preload, preload_later
from appliance.events.sessions import build, edge_chains, part_visits
from appliance.filters import EVENT_DIMENSIONS, Filter, IdPredicate, text_predicate
from appliance.models import EventKind
from appliance.query.selection import grouped_distinct, span_ms, top_line
from storage.arrays import distinct_values

PAGEVIEW, CUSTOM, CONVERSION, ENGAGEMENT = (int(k) for k in EventKind)
_MIDNIGHT_COLUMNS = ("s.visitor", "v.dict", "s.late", "s.early")
_DAY_COLUMNS = ("kind", "s.row", "s.visitor", "v.dict", "s.pageviews", "s.interactive", "s.duration", "c.name", "d.name")
_STITCH_COLUMNS = ("ts", "c.session", "d.session", "c.path", "d.path")


class _Conditions:
    """The query's filters as per-day masks, each text test memoised across the days."""

    def __init__(self, scans, site, filters: list[Filter]) -> None:
        self.scans = scans
        self.site = site
        self.event_level = [f for f in filters if not f.is_visit_level]
        self.visit_level = [f for f in filters if f.is_visit_level]
        self._tests: dict[int, IdPredicate] = {}

    def _predicate(self, condition: Filter) -> IdPredicate:
        found = self._tests.get(id(condition))
        if found is None:
            test = text_predicate(condition.positive, condition.values)
            found = self._tests[id(condition)] = IdPredicate(test, self.scans.text)
        return found

    def positive(self, frame: Frame, condition: Filter) -> np.ndarray:
        """The positive mask of an event-level filter (or a visit property tested on events)."""
        if condition.dimension == "goal":
            return self.scans.event_mask(frame, condition, self.site)
        key = condition.prop_key
        if key is not None:
            key_id = self.scans.lookup(key)
            if key_id is None:
                return np.zeros(frame.size, bool)
            return frame.prop_mask([key_id], self._predicate(condition))
        return frame.mask(EVENT_DIMENSIONS[condition.dimension], self._predicate(condition))

    def pages(self, condition: Filter, page_ids: np.ndarray) -> np.ndarray:
        """The positive mask of an entry or exit page filter over page ids."""
        distinct, inverse = np.unique(page_ids, return_inverse=True)
        return self._predicate(condition)(distinct)[inverse] if len(distinct) else np.zeros(0, bool)

    def columns(self) -> tuple[str, ...]:
        """The stored columns the event-level filters and visit properties read."""
        names: list[str] = []
        for condition in self.event_level + self.visit_level:
            field = EVENT_DIMENSIONS.get(condition.dimension)
            if condition.dimension in ("entry_page", "exit_page"):
                names += ["s.entry" if condition.dimension == "entry_page" else "s.exit", "d.path"]
                continue
            if condition.is_visit_level:  # a visit property: tested on the visit's first event
                names.append("s.first_row")
            if condition.prop_key is not None:
                names += ["p.row", "p.key", "p.value"]
            elif field is not None:
                names += ["c." + field, "d." + field]
        return tuple(dict.fromkeys(names))


def _combine(masks: list[tuple[Filter, np.ndarray]], size: int) -> np.ndarray:
    out = np.ones(size, bool)
    for condition, mask in masks:
        out &= ~mask if condition.negated else mask
    return out


def sorted_distinct(keys: np.ndarray, kind: str = "quicksort") -> np.ndarray:
    """``keys`` sorted, each once (``kind="stable"`` merges concatenated sorted runs)."""
    keys = np.sort(keys, kind=kind)
    first = np.ones(len(keys), bool)
    first[1:] = keys[1:] != keys[:-1]
    return keys[first]


class PeriodVisitors:
    """The period's visitors numbered once: the sorted distinct hashes of every day's visitors
    (each day's dictionary is sorted, so a stable sort merges them), for the reducers that count
    distinct visitors per value (:class:`~appliance.query.daywise_reports.Pairs`): their pairs
    are then one int64 each, merged across days without sorting hashes. Built when a reducer
    first asks (the top line never does)."""

    def __init__(self, dictionaries: list[Callable[[], np.ndarray]]) -> None:
        self._dictionaries = dictionaries
        self._hashes: np.ndarray | None = None

    def numbers(self, dictionary: np.ndarray) -> np.ndarray:
        """The period numbers of ``dictionary``'s hashes (sorted, all of the period's)."""
        if self._hashes is None:
            days = [make() for make in self._dictionaries]
            self._hashes = sorted_distinct(np.concatenate(days), kind="stable") if days else np.zeros(0, np.uint64)
        return np.searchsorted(self._hashes, dictionary)


class Piece:
    """What a reducer is given of one day (or of the stitched visits): the rows matching the
    query in the visits counted there (``rows``, boolean; engagement pings never), each row's
    ``kind`` and visit number ``visit_of``, per visit the arrays of
    :func:`appliance.events.sessions.part_visits` (``visitor`` a code into the sorted distinct
    visitor hashes ``dictionary``, ``bounce``, ``duration``, ``start``, ``first_row``,
    ``entry_page``...), a field's values at some of its rows (``values(field, rows)``), the
    rows' times (``ts()``) and the visitor codes' period numbers (``numbering()``, from
    ``number(dictionary)``: :class:`PeriodVisitors`)."""

    def __init__(self, kind, rows, visit_of, visits, dictionary, values: Callable, ts: Callable, number: Callable) -> None:
        self.kind, self.rows, self.visit_of, self.visits, self.dictionary = kind, rows, visit_of, visits, dictionary
        self.values, self.ts = values, ts
        self.matched = np.zeros(len(visits["visitor"]), bool)  # visits with a matching row
        self.matched[visit_of[rows]] = True
        self._number = number
        self._numbering: np.ndarray | None = None
        self._made: dict[str, object] = {}

    def once(self, key: str, make: Callable[[], object]):
        """``make()``, made once for this piece: what several reducers of a set derive alike
        (each breakdown's page view rows and their visitors' numbers)."""
        found = self._made.get(key)
        if found is None:
            found = self._made[key] = make()
        return found

    def numbering(self) -> np.ndarray:
        """Per visitor code, the visitor's number in the period (the same on every day)."""
        if self._numbering is None:
            self._numbering = self._number(self.dictionary)
        return self._numbering

    def numbers_of(self, rows: np.ndarray) -> np.ndarray:
        """The period numbers of the visitors of ``rows`` (a mask or row numbers, no pings)."""
        return self.numbering()[self.codes_of(rows)]

    def hashes_of(self, rows: np.ndarray) -> np.ndarray:
        """The visitor hashes of ``rows`` (a mask or row numbers, no pings)."""
        return self.dictionary[self.codes_of(rows)]

    def codes_of(self, rows: np.ndarray) -> np.ndarray:
        """The visitor codes (into ``dictionary``) of ``rows`` (a mask or row numbers, no pings)."""
        return self.visits["visitor"][self.visit_of[rows]]


class Totals:
    """The sums of the top line, and the matching visitors' hashes, over the days seen."""

    columns: tuple[str, ...] = ()
    fields: tuple[str, ...] = ()

    def __init__(self) -> None:
        self.visits = self.pageviews = self.events = self.conversions = self.bounces = self.duration_ms = 0
        self.visitor_hashes: list[np.ndarray] = []
        self.conversion_names: list[np.ndarray] = []
        self.conversion_hashes: list[np.ndarray] = []

    def add(self, piece: Piece) -> None:
        kind, rows, matched, visitor = piece.kind, piece.rows, piece.matched, piece.visits["visitor"]
        self.visits += int(np.count_nonzero(matched))
        self.bounces += int(np.count_nonzero(piece.visits["bounce"] & matched))
        self.duration_ms += int(np.sum(piece.visits["duration"], where=matched, dtype=np.int64))
        present = np.zeros(len(piece.dictionary), bool)  # the day's matching visitors: sorted, distinct, no sort
        present[visitor[matched]] = True
        self.visitor_hashes.append(piece.dictionary[present])
        by_kind = np.bincount(kind[rows], minlength=CONVERSION + 1)
        self.pageviews += int(by_kind[PAGEVIEW])
        self.events += int(by_kind[CUSTOM])
        if by_kind[CONVERSION]:
            converted = rows & (kind == CONVERSION)
            self.conversions += int(by_kind[CONVERSION])
            self.conversion_names.append(piece.values("name", converted))
            self.conversion_hashes.append(piece.hashes_of(converted))

    def answer(self) -> dict[str, object]:
        hashes = np.concatenate(self.visitor_hashes) if self.visitor_hashes else np.zeros(0, np.uint64)
        names = np.concatenate(self.conversion_names) if self.conversion_names else np.zeros(0, np.uint32)
        converters = np.concatenate(self.conversion_hashes) if self.conversion_hashes else np.zeros(0, np.uint64)
        return top_line(
            visitors=_count_distinct(np.sort(hashes, kind="stable")),  # each day's are sorted: timsort merges the runs
            visits=self.visits,
            pageviews=self.pageviews,
            bounces=self.bounces,
            duration_ms=self.duration_ms,
            events=self.events,
            conversions=self.conversions,
            converting_visitors_by_type=grouped_distinct(names, converters),
        )


def _count_distinct(ordered: np.ndarray) -> int:
    return int(np.count_nonzero(ordered[1:] != ordered[:-1])) + 1 if len(ordered) else 0


def _crossing(parts: list, local: list) -> list[np.ndarray]:
    """Per midnight between part ``i`` and ``i + 1``: the sorted hashes of the visitors with a
    visit ending within the timeout before it and one starting within the timeout after it
    (the only ones whose visit can continue across it, as
    :class:`appliance.events.sessions.Sessions` finds them); empty where the days are not adjacent."""
    found = []
    for index in range(len(parts) - 1):
        before, after = parts[index][0], parts[index + 1][0]
        if after.day != before.day + 1:
            found.append(np.zeros(0, np.uint64))
            continue
        a, b = local[index], local[index + 1]
        late = distinct_values(before.visitor_dictionary()[a["visitor"][a["late"]]])
        early = distinct_values(after.visitor_dictionary()[b["visitor"][b["early"]]])
        found.append(np.intersect1d(late, early, assume_unique=True))
    return found


def _edge_visits(visits, dictionary: np.ndarray, before: np.ndarray, after: np.ndarray, timeout_ms: int) -> np.ndarray:
    """Which of a day's visits must be sessionised again with the neighbouring days' rows:
    the first chain of each visitor crossing the midnight before (``before``, hashes), the
    last chain of each crossing the midnight after (:func:`appliance.events.sessions.edge_chains`)."""
    visitor = visits["visitor"]
    marks = np.zeros(len(dictionary), np.uint8)
    for bit, hashes in ((1, before), (2, after)):
        if len(hashes) and len(dictionary):  # a search per crossing visitor, not per visit
            at = np.minimum(np.searchsorted(dictionary, hashes), len(dictionary) - 1)
            marks[at[dictionary[at] == hashes]] |= bit
    mark = marks[visitor]
    if not mark.any():
        return np.zeros(len(visitor), bool)
    return edge_chains(visitor, visits["start"], visits["end"], mark & 1 > 0, mark & 2 > 0, timeout_ms)


def aggregate(scans, query, frame: Frame | None = None) -> dict[str, object] | None:
    """The filtered top line of ``query`` (as :meth:`appliance.query.scans.Scans.aggregate_of`
    gives it), day by day, over the period's ``frame`` (by default the running report's);
    None when a filter needs the whole period's visits (segments)."""
    totals = Totals()
    return totals.answer() if walk(scans, query, totals, frame) else None


def walk(scans, query, reducer, frame: Frame | None = None) -> bool:
    """Give ``reducer`` (``add(piece)``; ``columns``: the stored columns it reads of a day,
    ``fields``: the fields it asks of a :class:`Piece`) each day's :class:`Piece` of ``query``
    over the period's ``frame`` (by default the running report's), then the stitched visits'
    one; False (and nothing given) when a filter needs the whole period's visits (segments)."""
    filters = list(query.filters)
    if any(condition.dimension == "segment" for condition in filters):
        return False
    if frame is None:
        frame = scans.frame_of(query.site.id, *span_ms(query))
    parts = frame.parts
    timeout_ms = scans.timeout_ms
    cache = scans.columns.cache
    conditions = _Conditions(scans, query.site, filters)
    preload([block for block, _, _ in parts], _MIDNIGHT_COLUMNS)
    local = [part_visits(block, lo, hi, timeout_ms) for block, lo, hi in parts]
    period = PeriodVisitors([block.visitor_dictionary for block, _, _ in parts])
    crossing = _crossing(parts, local)
    nobody = np.zeros(0, np.uint64)
    stitching = any(len(hashes) for hashes in crossing)
    day_columns = tuple(dict.fromkeys(_DAY_COLUMNS + conditions.columns() + reducer.columns))

    def wanted(block) -> tuple[str, ...]:  # the stitched rows' time, session and page: stored apart since format 5
        if not stitching:
            return day_columns
        return day_columns + ("s.start",) + (EDGE_COLUMNS if block.has_edge_rows(timeout_ms) else _STITCH_COLUMNS)

    stitched: dict = {}  # column name (or a visit property filter's position) -> pieces
    fields = tuple(dict.fromkeys(("name", *reducer.fields)))
    waiting = preload_later([parts[0][0]], wanted(parts[0][0])) if parts else None
    for index, (block, lo, hi) in enumerate(parts):
        check_budget()
        waiting()
        if index + 1 < len(parts):
            waiting = preload_later([parts[index + 1][0]], wanted(parts[index + 1][0]))
        visits = local[index]
        edge = _edge_visits(
            visits,
            block.visitor_dictionary(),
            crossing[index - 1] if index else nobody,
            crossing[index] if index < len(crossing) else nobody,
            timeout_ms,
        )
        _reduce_day(block, lo, hi, visits, conditions, edge, reducer, stitched, timeout_ms, fields, period.numbers)
        local[index] = None
        for done, _, _ in parts[: index + 1]:  # the cache may have dropped a block read earlier, too
            if (done.columns or done.derived) and not cache.holds(done):
                done.release()
    if stitched:
        _reduce_stitched(stitched, conditions, timeout_ms, reducer, period.numbers)
    return True


def _reduce_day(
    block, lo: int, hi: int, visits, conditions: _Conditions, crosses, reducer, stitched, timeout_ms: int, fields, number: Callable,
) -> None:
    """Give ``reducer`` one day's matching rows of its own visits, and gather the rows of
    the visits ``crosses`` marks (see :func:`_edge_visits`) into ``stitched``."""
    day = Frame([(block, lo, hi)])
    count = hi - lo
    event_masks = [(c, conditions.positive(day, c)) for c in conditions.event_level]
    property_masks = {
        number: conditions.positive(day, c)
        for number, c in enumerate(conditions.visit_level)
        if c.dimension not in ("entry_page", "exit_page")
    }
    rows = _combine(event_masks, count)
    visit_of = visits["visit_of"]
    visitor = visits["visitor"]
    dictionary = block.visitor_dictionary()
    keep = _visit_keep(conditions, visits, property_masks, len(visitor))
    kind = day.column("kind")
    # a ping's visit number, -1, picks the appended False: pings count in no figure here
    counted = rows & np.append(keep & ~crosses, False)[visit_of]
    derived: dict = {}

    def values(field, chosen: np.ndarray) -> np.ndarray:
        """A field's values at ``chosen`` rows; a callable field is a per-row array the reducer
        derives from the day's frame (a goal's mask), made once a day."""
        if not callable(field):
            return day.values_at(field, chosen)
        if field not in derived:
            derived[field] = field(day)
        return derived[field][chosen]

    reducer.add(Piece(kind, counted, visit_of, visits, dictionary, values, lambda: day.column("ts"), number))
    if crosses.any():
        taken = np.flatnonzero(np.append(crosses, False)[visit_of])
        gathered = {
            "kind": kind[taken],
            **_edge_values(block, lo, hi, taken, timeout_ms),
            "visitor": dictionary[visitor[visit_of[taken]]],
            "rows": rows[taken],
            **{("field", field): values(field, taken) for field in fields},
        }
        for name, values in gathered.items():
            stitched.setdefault(name, []).append(values)
        for number, mask in property_masks.items():
            stitched.setdefault(number, []).append(mask[taken])


def _edge_values(block, lo: int, hi: int, taken: np.ndarray, timeout_ms: int) -> dict[str, np.ndarray]:
    """``ts``, session hash and path id of rows ``taken`` of a part (rows of its edge chains):
    from the rows a block stores for that (format 5) when it is read whole, else from its
    whole columns."""
    stored = block.edge_rows(timeout_ms) if lo == 0 and hi == block.count else None
    if stored is not None:
        rows, ts, session, path = stored
        at = np.minimum(np.searchsorted(rows, taken), max(len(rows) - 1, 0))
        if len(rows) and np.array_equal(rows[at], taken):
            return {"ts": ts[at], "session": session[at], "path": path[at]}
    rows = taken + lo
    return {"ts": block.scalar("ts")[rows], "session": block.sessions_at(rows), "path": block.ids("path")[rows]}


def _visit_keep(conditions: _Conditions, visits, property_masks: dict[int, np.ndarray], count: int) -> np.ndarray:
    """Which of a day's (or the stitched) visits the visit-level filters keep; a visit
    property is tested on the visit's first event (``property_masks``: per filter's position,
    its positive mask over the rows)."""
    masks = []
    for number, condition in enumerate(conditions.visit_level):
        if condition.dimension in ("entry_page", "exit_page"):
            mask = conditions.pages(condition, visits[condition.dimension])
        else:
            mask = property_masks[number][visits["first_row"]]
        masks.append((condition, mask))
    return _combine(masks, count)


def _reduce_stitched(stitched: dict, conditions: _Conditions, timeout_ms: int, reducer, number: Callable) -> None:
    """Sessionise the crossing visitors' rows over the whole period and give ``reducer`` what matches."""
    rows_of = {name: np.concatenate(pieces) for name, pieces in stitched.items()}
    count = len(rows_of["kind"])
    built = build(rows_of["kind"], rows_of["visitor"], rows_of["ts"], rows_of["session"], rows_of["path"], np.arange(count), timeout_ms)
    visit_of = np.empty(count, np.int64)
    visit_of[built["order"]] = built["visit_sorted"]
    property_masks = {name: values for name, values in rows_of.items() if isinstance(name, int)}
    keep = _visit_keep(conditions, built, property_masks, len(built["visitor"]))
    counted = rows_of["rows"] & keep[visit_of]
    dictionary, visitor = np.unique(built["visitor"], return_inverse=True)
    visits = {
        **built,
        "visitor": visitor,
        "bounce": (built["pageviews"] == 1) & ~built["interactive"],
        "duration": built["end"] - built["start"],
    }
    reducer.add(Piece(
        rows_of["kind"], counted, visit_of, visits, dictionary,
        lambda field, chosen: rows_of[("field", field)][chosen], lambda: rows_of["ts"], number,
    ))
