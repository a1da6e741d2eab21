"""Visits rebuilt from column blocks, for filtered queries, segments and funnels.

The live visit table (:mod:`appliance.ingest.visits`) counts visits incrementally as events arrive;
a filtered query cannot use those counters, so it sessionises the period's events again, in
numpy, by the glossary's rule: the events (engagement pings excluded) are ordered by visitor
and then time (a stable sort by visitor of rows already in time order); a new visit starts at
a visitor's first event, after a gap longer than the visit timeout, and when the event's
client session id and the visit's (its first event's) are both set and differ. Only the
events inside the queried period are seen, so a visit that began before the period starts
at its first event inside it. The counters follow time order too: where events arrived out
of order for their visitor, :mod:`appliance.ingest.rederive` replaces the day's visit
counters with what this module gives.

Speed: sorting every row of a month by visitor costs about a second at ten million events,
so visits are built per day block — stored with the block when a closed day is compacted,
decoded array by array as a report needs them — and then stitched: anonymous visitor ids
change daily, so only visitors with a visit ending within the timeout before a UTC midnight
and one starting within the timeout after it (each block knows those visits) can have a
visit crossing it; their rows alone are sessionised again across the whole period, with the
same rule. Visits of a block are numbered in the order of their first row. The filtered
top line (:mod:`appliance.query.daywise`) narrows that further: of such a visitor only the
*edge chains* (:func:`edge_chains`: its visits at the day's start or end with no gap over the
timeout between them) can change when days are joined, and a stored block keeps their rows.

Per visit: its visitor, first and last timestamp, page views, whether it had a custom event
or conversion (``interactive``), bounce (one page view and nothing interactive), duration
(last − first event, in milliseconds), entry and exit page ids (the first and last page
view's page; without any page view, the page of the first and last event), and the row of
its first event (for entry values of any dimension, and the visit properties: source,
channel, referrer and UTM tags, see :data:`appliance.dimensions.VISIT_FIELDS`).
"""

from __future__ import annotations

import numpy as np

from appliance.events.preload import preload
from appliance.models import EventKind

_VISIT_ARRAYS = ("visitor", "start", "end", "first_row", "pageviews", "interactive", "entry_page", "exit_page")


def build(kind, visitor, ts, session, path, rows: np.ndarray, timeout_ms: int) -> dict[str, np.ndarray]:
    """Visits of the given non-engagement ``rows`` (indices in time order).

    Returns per-visit arrays (see ``_VISIT_ARRAYS``) plus ``order`` (the rows sorted by
    visitor then time, so each visit is contiguous) and ``visit_sorted`` (the visit number of
    each entry of ``order``, ascending).
    """
    order = rows[np.argsort(visitor[rows], kind="stable")]
    v = visitor[order]
    t = ts[order]
    count = len(order)
    new = np.ones(count, bool)
    if count > 1:
        new[1:] = (v[1:] != v[:-1]) | (t[1:] - t[:-1] > timeout_ms)
        hints = session[order]
        if hints.any():
            new |= _hint_splits(hints, new)
        del hints
    visit_sorted = np.cumsum(new) - 1
    first = np.flatnonzero(new)
    del new
    visits = len(first)
    last = np.empty_like(first)
    if len(first):
        last[:-1] = first[1:] - 1
        last[-1] = count - 1
    # (row-sized temporaries let go as soon as used: a compaction build's peak is here)
    positions = np.flatnonzero(kind[order] == EventKind.PAGEVIEW)  # the page views, in visit order
    viewed = visit_sorted[positions]  # their visits, ascending
    first_row = order[first]
    # Entry / exit page: the first / last page view's page, or without any page view the
    # page of the visit's first / last event.
    entry_page = path[first_row].astype(np.uint32)
    exit_page = path[order[last]].astype(np.uint32)
    viewed_pages = path[order[positions]]
    entry_page[viewed[::-1]] = viewed_pages[::-1]  # the last assignment wins: each visit's first view
    exit_page[viewed] = viewed_pages
    del viewed_pages
    pageviews = np.bincount(viewed, minlength=visits).astype(np.int64)
    del positions, viewed
    return {
        "order": order,
        "visit_sorted": visit_sorted,
        "visitor": v[first],
        "start": t[first],
        "end": t[last],
        "first_row": first_row,
        "pageviews": pageviews,
        # any event not a page view (a custom event) makes the visit interactive
        "interactive": np.bincount(visit_sorted, minlength=visits) > pageviews,
        "entry_page": entry_page,
        "exit_page": exit_page,
    }


class LazyVisits(dict):
    """Per-visit arrays computed (or loaded and decoded) on first use: a query that needs
    bounces and durations never decodes entry pages. Each maker is given the visits
    themselves (so none refers to them: no reference cycle to wait for the collector)."""

    def __init__(self, makers: dict, **ready) -> None:
        super().__init__(ready)
        self._makers = makers

    def __missing__(self, name: str):
        value = self[name] = self._makers[name](self)
        return value


def with_derived(visits: dict, day: int, timeout_ms: int) -> LazyVisits:
    """Add the derived arrays every source of visits offers: ``duration`` (ms), ``bounce``,
    and ``late`` / ``early``: the visits that end within the timeout before the UTC day's
    end, or start within the timeout after its start (the only ones that can continue a
    visit across a midnight)."""
    return LazyVisits(
        {
            "duration": lambda v: v["end"] - v["start"],
            "end": lambda v: v["start"] + v["duration"],
            "bounce": lambda v: (v["pageviews"] == 1) & ~v["interactive"].astype(bool),
            "late": lambda v: np.flatnonzero(v["end"] >= (day + 1) * 86_400_000 - timeout_ms),
            "early": lambda v: np.flatnonzero(v["start"] <= day * 86_400_000 + timeout_ms),
            **{name: (lambda _, name=name: visits[name]) for name in visits},
        }
    )


def local_visits(kind, visitor, ts, session, path, timeout_ms: int) -> dict[str, np.ndarray]:
    """Visits of one block (or slice of one), numbered in the order of their first row.

    ``visitor`` holds the block's visitor codes (any integers that are equal exactly when the
    visitors are). Returns per row ``visit_of`` (int32, -1 for engagement pings) and per visit
    the arrays of ``_VISIT_ARRAYS`` (``first_row`` relative to the slice).
    """
    rows = np.flatnonzero(kind != EventKind.ENGAGEMENT)
    built = build(kind, visitor, ts, session, path, rows, timeout_ms)
    rank = np.argsort(built["first_row"], kind="stable")
    number = np.empty(len(rank), np.int64)
    number[rank] = np.arange(len(rank))
    visit_of = np.full(len(kind), -1, np.int32)
    visit_of[built.pop("order")] = number[built.pop("visit_sorted")]
    del number
    out = {"visit_of": visit_of}
    for name in _VISIT_ARRAYS:  # each array in build's order let go once put in first-row order
        out[name] = built.pop(name)[rank]
    return out


def part_visits(block, lo: int, hi: int, timeout_ms: int) -> dict[str, np.ndarray]:
    """The visits of rows ``lo:hi`` of a block (:func:`local_visits` with the derived arrays):
    a whole block's own (stored ones decoded array by array), a slice's computed."""
    if lo == 0 and hi == block.count:
        return block.local_visits(timeout_ms)
    computed = local_visits(
        block.scalar("kind")[lo:hi],
        block.visitor_codes()[lo:hi],
        block.scalar("ts")[lo:hi],
        block.scalar("session")[lo:hi],
        block.ids("path")[lo:hi],
        timeout_ms,
    )
    return with_derived(computed, block.day, timeout_ms)


def edge_chains(visitor, start, end, first_of: np.ndarray, last_of: np.ndarray, timeout_ms: int) -> np.ndarray:
    """Which of a day's visits lie in an *edge chain*: the first chain of a visitor whose
    ``first_of`` is set, or the last chain of one whose ``last_of`` is set (both per visit, the
    same for every visit of a visitor). A chain is a run of one visitor's visits with no gap
    over the timeout between them (split only by client session ids). The glossary's rule
    splits a visitor's events at every such gap, so a visit outside the chains at a day's
    edges is the same whether its day is sessionised alone or with the days around it: only
    edge chains can join a visit across midnight."""
    edge = np.zeros(len(visitor), bool)
    candidates = np.flatnonzero(first_of | last_of)
    if not len(candidates):
        return edge
    who, begins, ends = visitor[candidates], start[candidates], end[candidates]
    order = np.lexsort((begins, who))
    candidates, who, begins, ends = candidates[order], who[order], begins[order], ends[order]
    count = len(candidates)
    first = np.ones(count, bool)  # each visitor's first (candidate) visit, in time order
    first[1:] = who[1:] != who[:-1]
    last = np.ones(count, bool)
    last[:-1] = first[1:]
    new_chain = first.copy()
    new_chain[1:] |= begins[1:] - ends[:-1] > timeout_ms
    chain = np.cumsum(new_chain)
    positions = np.arange(count)
    first_chain = chain[np.maximum.accumulate(np.where(first, positions, 0))]
    last_chain = chain[np.minimum.accumulate(np.where(last, positions, count)[::-1])[::-1]]
    taken = (first_of[candidates] & (chain == first_chain)) | (last_of[candidates] & (chain == last_chain))
    edge[candidates[taken]] = True
    return edge


def stored_edge_rows(visits, visitors: int, timeout_ms: int) -> np.ndarray:
    """The rows (non-engagement, in order) of a day's edge chains as a block stores them
    (format 5): of every visitor with a visit near the day's start its first chain, and with
    one near its end its last, so visits can be stitched across midnight without decoding
    whole columns of the day. ``visits`` as :func:`with_derived` gives them."""
    visitor = np.asarray(visits["visitor"], np.int64)
    has_early = np.zeros(visitors, bool)
    has_early[visitor[visits["early"]]] = True
    has_late = np.zeros(visitors, bool)
    has_late[visitor[visits["late"]]] = True
    edge = edge_chains(visitor, visits["start"], visits["end"], has_early[visitor], has_late[visitor], timeout_ms)
    return np.flatnonzero(np.append(edge, False)[visits["visit_of"]])


_STITCH_COLUMNS = ("kind", "ts", "c.session", "d.session", "c.path", "d.path")  # what _gather reads
_JOINED = {
    "start": np.int64,
    "end": np.int64,
    "duration": np.int64,
    "first_row": np.int64,
    "pageviews": np.int64,
    "interactive": bool,
    "bounce": bool,
    "entry_page": np.uint32,
    "exit_page": np.uint32,
    "visitor": np.int64,
}


class Sessions:
    """The visits of a frame. ``visitor`` holds frame visitor codes
    (:class:`appliance.events.columns.VisitorSpace`; ``visitor_hash`` the hashes), ``visit_of`` each
    row's visit (-1 for engagement pings); the per-visit arrays are joined on first use."""

    def __init__(self, frame, timeout_ms: int) -> None:
        parts = frame.parts
        space = frame.visitors
        self._space = space
        offsets = np.cumsum([0] + [hi - lo for _, lo, hi in parts]).tolist()
        local = [part_visits(block, lo, hi, timeout_ms) for block, lo, hi in parts]
        # visitors who may have a visit across a UTC midnight between two adjacent blocks
        crossing = []
        touched: set[int] = set()
        for index in range(len(parts) - 1):
            before, after = parts[index][0], parts[index + 1][0]
            if after.day != before.day + 1:
                continue
            a, b = local[index], local[index + 1]
            crossing.append(
                np.intersect1d(
                    space.codes(index, a["visitor"][a["late"]]),
                    space.codes(index + 1, b["visitor"][b["early"]]),
                )
            )
            if len(crossing[-1]):
                touched.update((index, index + 1))
        stitched = np.sort(np.concatenate(crossing)) if crossing else np.zeros(0, np.int64)
        # the stitched visitors' rows are gathered below from whole columns: decode them on two threads
        preload([parts[i][0] for i in sorted(touched)], _STITCH_COLUMNS)
        is_stitched = None
        if len(stitched):  # a lookup over the frame's visitors: one gather per block, not a search
            is_stitched = np.zeros(space.size, bool)
            is_stitched[stitched] = True
        self._parts: list[tuple[int, dict, np.ndarray | None, int]] = []
        visit_of_pieces = []
        stitched_rows = []
        base = 0
        for index, result in enumerate(local):
            offset = offsets[index]
            rows_visit = result["visit_of"]
            keep = None
            if is_stitched is not None:
                keep = ~is_stitched[space.codes(index, result["visitor"])]
                if keep.all():
                    keep = None
            if keep is not None:
                renumber = np.where(keep, np.cumsum(keep) - 1 + base, -1)
                mapped = np.where(rows_visit >= 0, renumber[np.maximum(rows_visit, 0)], -1) if len(renumber) else rows_visit
                stitched_rows.append(np.flatnonzero((rows_visit >= 0) & (mapped < 0)) + offset)
                visit_of_pieces.append(mapped.astype(np.int32))
                base += int(keep.sum())
            else:
                piece = rows_visit.astype(np.int32)  # a copy: the block's array stays untouched
                piece[piece >= 0] += base
                visit_of_pieces.append(piece)
                base += len(result["visitor"])
            self._parts.append((index, result, keep, offset))
        visit_of = np.concatenate(visit_of_pieces) if visit_of_pieces else np.zeros(0, np.int32)
        self._stitched = None
        if stitched_rows and sum(len(rows) for rows in stitched_rows):
            rows = np.concatenate(stitched_rows)
            gathered = {name: _gather(frame, name, rows) for name in ("kind", "ts", "session", "path", "visitor")}
            result = build(
                gathered["kind"], gathered["visitor"], gathered["ts"], gathered["session"], gathered["path"],
                np.arange(len(rows)), timeout_ms,
            )
            visit_of[rows[result["order"]]] = (result["visit_sorted"] + base).astype(np.int32)
            result["first_row"] = rows[result["first_row"]]
            self._stitched = with_derived(result, 0, timeout_ms)
            base += len(result["visitor"])
        self.count = base
        #: per row of the frame: its visit number, -1 for engagement pings
        self.visit_of = visit_of
        self._joined: dict[str, np.ndarray] = {}

    def _join(self, name: str) -> np.ndarray:
        found = self._joined.get(name)
        if found is None:
            pieces = []
            for index, result, keep, offset in self._parts:
                values = self._space.codes(index, result["visitor"]) if name == "visitor" else result[name]
                if keep is not None:
                    values = values[keep]
                pieces.append(values + offset if name == "first_row" else values)
            if self._stitched is not None:
                pieces.append(self._stitched[name])
            dtype = _JOINED[name]
            # cast while joining: one pass, not a join and a conversion of the joined copy
            found = np.concatenate(pieces, dtype=dtype, casting="unsafe") if pieces else np.zeros(0, dtype)
            self._joined[name] = found
        return found

    visitor = property(lambda self: self._join("visitor"))
    start = property(lambda self: self._join("start"))
    end = property(lambda self: self._join("end"))
    first_row = property(lambda self: self._join("first_row"))
    pageviews = property(lambda self: self._join("pageviews"))
    interactive = property(lambda self: self._join("interactive"))
    bounce = property(lambda self: self._join("bounce"))
    duration_ms = property(lambda self: self._join("duration"))
    entry_page = property(lambda self: self._join("entry_page"))
    exit_page = property(lambda self: self._join("exit_page"))

    @property
    def visitor_hash(self) -> np.ndarray:
        """Each visit's visitor hash."""
        return self._space.hashes(self.visitor)

    @property
    def order(self) -> np.ndarray:
        """Rows (non-engagement) grouped by visit, each visit's rows in time order."""
        found = self._joined.get("order")
        if found is None:
            rows = np.flatnonzero(self.visit_of >= 0)
            found = self._joined["order"] = rows[np.argsort(self.visit_of[rows], kind="stable")]
        return found

    def rows_in(self, visits: np.ndarray) -> np.ndarray:
        """Rows (active ones) whose visit is selected by the boolean array ``visits``."""
        # one gather: a ping's visit number, -1, picks the appended False
        return np.append(visits, False)[self.visit_of]

    def visits_with(self, rows: np.ndarray) -> np.ndarray:
        """Visits with at least one of the boolean ``rows``."""
        out = np.zeros(self.count, bool)
        chosen = self.visit_of[rows]
        out[chosen[chosen >= 0]] = True
        return out


def _gather(frame, name: str, rows: np.ndarray) -> np.ndarray:
    """``frame.column(name)[rows]`` for sorted ``rows`` (``visitor``: frame visitor codes),
    touching only the blocks that hold them."""
    pieces = []
    start = 0
    space = frame.visitors
    for index, (block, lo, hi) in enumerate(frame.parts):
        end = start + hi - lo
        inside = rows[(rows >= start) & (rows < end)] - start + lo
        start = end
        if not len(inside):
            continue
        if name == "visitor":
            pieces.append(space.codes(index, block.visitor_codes_at(inside)))
        elif name == "session":
            pieces.append(block.sessions_at(inside))
        elif name == "path":
            dictionary, codes = block.dictionary("path")
            pieces.append(dictionary[codes[inside]])
        elif name == "session" and block.stored:  # only the rows asked for: the whole day's
            pieces.append(block.column("d.session")[block.column("c.session")[inside]])  # hashes were 8 B a row
        else:
            pieces.append(block.scalar(name)[inside])
    return np.concatenate(pieces) if pieces else np.zeros(0, np.int64)


def _hint_splits(hints: np.ndarray, new: np.ndarray) -> np.ndarray:
    """Rows where a differing client session id starts a visit (see the module docstring).

    Within a visit whose first event carries a session id, the visit's id is that of the
    last row that started a visit, which equals the last non-zero id seen before the row.
    """
    count = len(hints)
    positions = np.arange(count)
    last_nonzero = np.maximum.accumulate(np.where(hints != 0, positions, 0))
    previous = np.empty(count, np.int64)
    previous[0] = 0
    previous[1:] = last_nonzero[:-1]
    group = np.cumsum(new) - 1
    group_first = np.flatnonzero(new)
    first_hint_set = hints[group_first][group] != 0
    return (hints != 0) & first_hint_set & ~new & (hints[previous] != hints)
