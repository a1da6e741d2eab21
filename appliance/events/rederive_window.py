"""One day's re-derived figures from its window of events (:mod:`appliance.ingest.rederive`),
computed where the window is read: in the serving process, or in the build helper
(:mod:`appliance.events.compaction_build`), which reads it from the store alone
(:class:`appliance.events.window_reader.WindowReader`) and answers a :class:`Window`.

The window is the local day plus :data:`LOOK_MS` either side, widened a day at a time while a
visit reaches its edge (:data:`WIDEN_DAYS` at most), sessionised by the scan path's own code
(:class:`appliance.events.sessions.Sessions`). A :class:`Window` holds no frame: the figures,
what the window held (its key, compared under the write mutex), whether a visit crosses the
day's start or end, and :class:`LastVisits`, each window visitor's last visit with the
values the open-visit table keeps, from which the serving process rebuilds the visits still
open.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from appliance import dimensions as dims
from appliance.events.rederived_figures import day_figures
from appliance.events.sessions import Sessions
from storage.sketches import Sketch

LOOK_MS = 6 * 3_600_000  # events read either side of the day (widened when a visit reaches the edge)
WIDEN_DAYS = 8
DIMENSIONS = tuple((name, field) for name, (field, _, _) in dims.DIMENSIONS.items())


@dataclass(slots=True)
class LastVisits:
    """Each window visitor's last visit, ordered by visitor hash (arrays of one length):
    what :class:`appliance.ingest.visits.Visit` holds, as ids (``carried``: the visit
    fields' string ids, one column per :data:`appliance.dimensions.VISIT_FIELDS`)."""

    visitor: np.ndarray
    start: np.ndarray
    end: np.ndarray
    pageviews: np.ndarray
    interactive: np.ndarray
    exit_page: np.ndarray
    entries: np.ndarray  # (visits, len(DIMENSIONS)) entry values
    carried: np.ndarray  # (visits, len(VISIT_FIELDS)) string ids
    hints: np.ndarray

    @classmethod
    def of(cls, frame, sessions: Sessions) -> LastVisits:
        if not sessions.count:
            return cls.empty()
        hashes = sessions.visitor_hash
        order = np.lexsort((sessions.end, hashes))
        ordered = hashes[order]
        last = order[np.append(ordered[1:] != ordered[:-1], True)]
        rows = sessions.first_row[last]
        # each column read once, for every last visit: a big day's window has ~100,000
        # visitors, of whom the serving process rebuilds those still open
        return cls(
            visitor=hashes[last], start=sessions.start[last], end=sessions.end[last],
            pageviews=sessions.pageviews[last], interactive=sessions.interactive[last],
            exit_page=sessions.exit_page[last],
            entries=_table([
                (sessions.entry_page[last] if name == "page" else frame.values_at(field, rows)).astype(np.int64)
                for name, field in DIMENSIONS
            ], len(last)),
            carried=_table([frame.values_at(field, rows).astype(np.int64) for field in dims.VISIT_FIELDS], len(last)),
            hints=frame.values_at("session", rows),
        )

    @classmethod
    def empty(cls) -> LastVisits:
        none = np.zeros(0, np.int64)
        return cls(visitor=np.zeros(0, np.uint64), start=none, end=none, pageviews=none,
                   interactive=np.zeros(0, bool), exit_page=none, entries=_table([], 0, len(DIMENSIONS)),
                   carried=_table([], 0, len(dims.VISIT_FIELDS)), hints=np.zeros(0, np.uint64))


def _table(columns: list[np.ndarray], rows: int, width: int = 0) -> np.ndarray:
    return np.column_stack(columns) if columns and rows else np.zeros((rows, len(columns) or width), np.int64)


@dataclass(slots=True)
class Window:
    """A day's re-derived figures and what they were computed from (see the module)."""

    lo: int
    hi: int
    frame_key: tuple | None  # None: not noted (derived under the write mutex)
    size: int  # events read
    counters: dict
    sketches: dict
    crossing_before: bool
    crossing_after: bool
    last: LastVisits

    def portable(self) -> Window:
        """The same, its sketches as bytes (the helper's answer: a pickle of plain values)."""
        sketches = {metric: {dim: sketch.to_bytes() for dim, sketch in members.items()}
                    for metric, members in self.sketches.items()}
        return Window(self.lo, self.hi, self.frame_key, self.size, self.counters, sketches,
                      self.crossing_before, self.crossing_after, self.last)

    def restored(self) -> Window:
        """:meth:`portable`'s inverse."""
        sketches = {metric: {dim: Sketch.from_bytes(raw) for dim, raw in members.items()}
                    for metric, members in self.sketches.items()}
        return Window(self.lo, self.hi, self.frame_key, self.size, self.counters, sketches,
                      self.crossing_before, self.crossing_after, self.last)


def derive_window(frame_of: Callable[[int, int], object], key_of: Callable[[int, int], tuple | None],
                  first_ms: int, end_ms: int, timeout_ms: int) -> Window:
    """The local day ``[first_ms, end_ms)``'s figures: ``frame_of(lo, hi)`` reads a window,
    ``key_of(lo, hi)`` notes what it holds (before the read, so an event committed during it
    shows in a later key)."""
    lo, hi = first_ms - LOOK_MS, end_ms + LOOK_MS
    for _ in range(WIDEN_DAYS):
        frame_key = key_of(lo, hi)
        frame = frame_of(lo, hi)
        sessions = Sessions(frame, timeout_ms)
        start, end = sessions.start, sessions.end
        cut_before = ((start < lo + timeout_ms) & (end >= first_ms)).any()
        cut_after = ((start >= first_ms) & (start < end_ms) & (end > hi - timeout_ms)).any()
        if not cut_before and not cut_after:
            break
        lo -= 86_400_000 if cut_before else 0
        hi += 86_400_000 if cut_after else 0
    counters, sketches = day_figures(frame, sessions, first_ms, end_ms)
    return Window(
        lo=lo, hi=hi, frame_key=frame_key, size=frame.size, counters=counters, sketches=sketches,
        crossing_before=bool(((start < first_ms) & (end >= first_ms)).any()),
        crossing_after=bool(((start >= first_ms) & (start < end_ms) & (end >= end_ms)).any()),
        last=LastVisits.of(frame, sessions),
    )
