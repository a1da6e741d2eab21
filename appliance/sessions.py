"""Visits rebuilt from column blocks, for filtered queries, segments and funnels.

The live visit table (:mod:`appliance.visits`) counts visits incrementally as events arrive;
a filtered query cannot use those counters, so it sessionises the period's events again, in
numpy, by the glossary's rule: the events (engagement pings excluded) are ordered by visitor
and then time (a stable sort by visitor of rows already in time order); a new visit starts at
a visitor's first event, after a gap longer than the visit timeout, and when the event's
client session id and the visit's (its first event's) are both set and differ. Only the
events inside the queried period are seen, so a visit that began before the period starts
at its first event inside it. Where events arrived out of time order the live counters
may differ slightly from this recomputation, which follows time order.

Speed: sorting every row of a month by visitor costs about a second at ten million events,
so visits are built per day block (cached with the block once the day is closed) and then
stitched: anonymous visitor ids change daily, so only visitors seen within the visit timeout
on both sides of a UTC midnight can have a visit crossing it; their rows alone are
sessionised again across the whole period, with the same rule.

Per visit: its visitor, first and last timestamp, page views, whether it had a custom event
or conversion (``interactive``), bounce (one page view and nothing interactive), duration
(last − first event, in milliseconds), entry and exit page ids, and the row of its first
event (for entry values of any dimension).
"""

from __future__ import annotations

import numpy as np

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
    visit_sorted = np.cumsum(new) - 1
    visits = int(new.sum())
    first = np.flatnonzero(new)
    last = np.empty_like(first)
    if len(first):
        last[:-1] = first[1:] - 1
        last[-1] = count - 1
    kinds = kind[order]
    is_pageview = kinds == EventKind.PAGEVIEW
    first_row = order[first]
    exit_page = np.zeros(visits, np.uint32)
    positions = np.flatnonzero(is_pageview)
    exit_page[visit_sorted[positions]] = path[order[positions]]  # the last assignment wins
    return {
        "order": order,
        "visit_sorted": visit_sorted,
        "visitor": v[first],
        "start": t[first],
        "end": t[last],
        "first_row": first_row,
        "pageviews": np.bincount(visit_sorted, weights=is_pageview, minlength=visits).astype(np.int64),
        "interactive": np.bincount(visit_sorted, weights=~is_pageview, minlength=visits) > 0,
        "entry_page": np.where(kinds[first] == EventKind.PAGEVIEW, path[first_row], 0).astype(np.uint32),
        "exit_page": exit_page,
    }


def _local(block, lo: int, hi: int, timeout_ms: int) -> dict[str, np.ndarray]:
    """Visits of one block slice, with row numbers relative to ``lo``; cached for whole blocks."""
    whole = lo == 0 and hi == block.count
    key = ("sessions", timeout_ms)
    if whole:
        found = block.derived.get(key)
        if found is not None:
            return found
    kind = block.columns["kind"][lo:hi]
    rows = np.flatnonzero(kind != EventKind.ENGAGEMENT)
    result = build(
        kind,
        block.columns["visitor"][lo:hi],
        block.columns["ts"][lo:hi],
        block.columns["session"][lo:hi],
        block.ids("path")[lo:hi],
        rows,
        timeout_ms,
    )
    if whole:
        block.derived[key] = result
    return result


def _members(sorted_set: np.ndarray, values: np.ndarray) -> np.ndarray:
    if not len(sorted_set):
        return np.zeros(len(values), bool)
    index = np.minimum(np.searchsorted(sorted_set, values), len(sorted_set) - 1)
    return sorted_set[index] == values


class Sessions:
    def __init__(self, frame, timeout_ms: int) -> None:
        parts = frame.parts
        offsets = np.cumsum([0] + [hi - lo for _, lo, hi in parts])
        local = [_local(block, lo, hi, timeout_ms) for block, lo, hi in parts]
        # visitors who may have a visit across a UTC midnight between two adjacent blocks
        crossing = []
        for index in range(len(parts) - 1):
            before, after = parts[index][0], parts[index + 1][0]
            if after.day != before.day + 1:
                continue
            midnight = after.day * 86_400_000
            a, b = local[index], local[index + 1]
            crossing.append(
                np.intersect1d(a["visitor"][a["end"] >= midnight - timeout_ms], b["visitor"][b["start"] <= midnight + timeout_ms])
            )
        stitched = np.unique(np.concatenate(crossing)) if crossing else np.zeros(0, np.uint64)
        pieces: dict[str, list[np.ndarray]] = {name: [] for name in (*_VISIT_ARRAYS, "order", "visit_sorted")}
        base = 0
        for offset, result in zip(offsets[:-1], local, strict=True):
            keep = ~_members(stitched, result["visitor"]) if len(stitched) else np.ones(len(result["visitor"]), bool)
            renumber = np.cumsum(keep) - 1 + base
            kept_rows = keep[result["visit_sorted"]]
            pieces["order"].append(result["order"][kept_rows] + offset)
            pieces["visit_sorted"].append(renumber[result["visit_sorted"][kept_rows]])
            for name in _VISIT_ARRAYS:
                values = result[name][keep]
                pieces[name].append(values + offset if name == "first_row" else values)
            base += int(keep.sum())
        if len(stitched):
            kind = frame.column("kind")
            visitor = frame.column("visitor")
            rows = np.flatnonzero((kind != EventKind.ENGAGEMENT) & _members(stitched, visitor))
            result = build(kind, visitor, frame.column("ts"), frame.column("session"), frame.column("path"), rows, timeout_ms)
            pieces["order"].append(result["order"])
            pieces["visit_sorted"].append(result["visit_sorted"] + base)
            for name in _VISIT_ARRAYS:
                pieces[name].append(result[name])
            base += len(result["visitor"])
        joined = {name: np.concatenate(values) if values else np.zeros(0, np.int64) for name, values in pieces.items()}
        self.count = base
        #: rows (non-engagement) grouped by visit, each visit's rows in time order
        self.order = joined["order"].astype(np.int64)
        visit_sorted = joined["visit_sorted"].astype(np.int64)
        #: per row of the frame: its visit number, -1 for engagement pings
        self.visit_of = np.full(frame.size, -1, np.int64)
        self.visit_of[self.order] = visit_sorted
        self.visitor = joined["visitor"].astype(np.uint64)
        self.start = joined["start"].astype(np.int64)
        self.end = joined["end"].astype(np.int64)
        self.first_row = joined["first_row"].astype(np.int64)
        self.pageviews = joined["pageviews"].astype(np.int64)
        self.interactive = joined["interactive"].astype(bool)
        self.bounce = (self.pageviews == 1) & ~self.interactive
        self.duration_ms = self.end - self.start
        self.entry_page = joined["entry_page"].astype(np.uint32)
        self.exit_page = joined["exit_page"].astype(np.uint32)

    def rows_in(self, visits: np.ndarray) -> np.ndarray:
        """Rows (active ones) whose visit is selected by the boolean array ``visits``."""
        out = np.zeros(len(self.visit_of), bool)
        inside = self.visit_of >= 0
        out[inside] = visits[self.visit_of[inside]]
        return out

    def visits_with(self, rows: np.ndarray) -> np.ndarray:
        """Visits with at least one of the boolean ``rows``."""
        out = np.zeros(self.count, bool)
        chosen = self.visit_of[rows]
        out[chosen[chosen >= 0]] = True
        return out


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
