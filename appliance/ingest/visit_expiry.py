"""Visit expiry: which open visits close, and when, without holding the ingest writer long.

The open-visit table (:class:`~appliance.ingest.visits.VisitTable`) closes a visit for one of
two reasons, both inside the aggregation step's own transaction
(:meth:`VisitTable.close_in <appliance.ingest.visits.VisitTable.close_in>`), which already
writes the visits database: the deletes dirty pages it copies anyway, and share its fsync.

- *The bound*: what a slice of the step puts over ``max_open`` closes in that same slice, the
  least recently touched first (:func:`least_recent`; the table is kept in touch order, so no
  sort), idle ones in a window of them before others. So the bound holds after every
  aggregation, and closing keeps pace with what a load opens, a slice's worth at a time.
- *Idleness*: once every :data:`EXPIRY_SECONDS` the visits idle past the timeout and untouched
  for :data:`~appliance.ingest.visits.RECENT_SECONDS` are listed (:class:`IdleVisits`), then
  close :data:`CLOSE_PER_CHUNK` at a time, at most one chunk every
  :data:`CHUNK_SPACING_SECONDS`: in the next aggregation slice, or on the writer's idle tick
  in a transaction of its own when no step runs. A listed visit touched since is skipped.

Why: closing every idle visit at once (a bulk load keeps the table at its bound, and all of it
is idle by the wall clock: ~30,000 visits at the default budget) held the writer 0.12–1.3 s,
and every tracker request waited behind it. Chunks of 2,000 in transactions of their own after
every commit (``1d458de``, reverted) put a ~20 ms transaction on each of the tracker commits
that followed a load (paced p99 92 ms against 30 ms at scale 0.3).
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Iterable, Mapping

#: how often idle visits are listed for closing (their timeout: [sites] visit_timeout_minutes)
EXPIRY_SECONDS = 60
#: at most this many listed idle visits close in one transaction
CLOSE_PER_CHUNK = 500
#: at most one chunk of idle visits this often: tracker commits between them never wait for one
CHUNK_SPACING_SECONDS = 0.25
#: over the bound, idle visits are looked for among this many times as many least recently
#: touched visits as must close, before others (a live visit still going on closes last)
SCAN_WINDOW = 4


def least_recent(opened: Mapping, now: float, timeout: float, count: int, skip: Mapping) -> list:
    """``count`` keys of ``opened`` (in touch order) to close over the bound: the idle ones
    among the first ``SCAN_WINDOW * count`` not in ``skip`` (the batch's own visits), then the
    least recently touched others, then, if the table holds too few, ``skip``'s new visits."""
    idle, busy = [], []
    for key, visit in itertools.islice(opened.items(), SCAN_WINDOW * count + len(skip)):
        if key in skip:
            continue
        if now - visit.last > timeout:
            idle.append(key)
            if len(idle) >= count:
                break
        else:
            busy.append(key)
    chosen = idle + busy[: count - len(idle)]
    if len(chosen) < count:  # a batch opened more than the whole bound
        chosen += [key for key, visit in skip.items() if visit is not None][: count - len(chosen)]
    return chosen


class IdleVisits:
    """The idle visits listed at the last minute's expiry and not closed yet, with the cadence
    of their chunks. A chunk is taken provisionally (:meth:`take`) and consumed only when its
    transaction commits (:meth:`taken`): a retried or failed transaction takes it again."""

    def __init__(
        self, chunk: int = CLOSE_PER_CHUNK, spacing: float = CHUNK_SPACING_SECONDS, every: float = EXPIRY_SECONDS
    ) -> None:
        self.chunk = chunk
        self.spacing = spacing
        self.every = every
        #: when the list was last made (the first a minute after the start, as before)
        self.listed_at = time.time()
        self._chunk_at = float("-inf")
        self._keys: list = []
        self._visits: list = []  # the listed visit objects: one replaced since was touched
        self._next = 0
        self._taking: int | None = None  # where the provisional chunk ends

    def __len__(self) -> int:
        """Listed visits not yet taken (some may have been touched since)."""
        return len(self._keys) - self._next

    def list_due(self, now: float) -> bool:
        return self._next >= len(self._keys) and now - self.listed_at > self.every

    def chunk_due(self, now: float) -> bool:
        """Whether a chunk may close now: the spacing passed, and a list waits or is due."""
        return now - self._chunk_at >= self.spacing and (self._next < len(self._keys) or self.list_due(now))

    def list(self, now: float, idle: Iterable[tuple[object, object]]) -> None:
        """List ``(key, visit)`` pairs to close, in the order given."""
        self.listed_at = now
        self._keys, self._visits, self._next, self._taking = [], [], 0, None
        for key, visit in idle:
            self._keys.append(key)
            self._visits.append(visit)

    def take(self, now: float, opened: Mapping, skip: Mapping | set) -> list:
        """The next listed keys, at most :attr:`chunk`, still open as listed (the same visit
        object: untouched since) and not in ``skip``."""
        self._chunk_at = now
        keys, visits = self._keys, self._visits
        taken: list = []
        index = self._next
        while index < len(keys) and len(taken) < self.chunk:
            key = keys[index]
            if opened.get(key) is visits[index] and key not in skip:
                taken.append(key)
            index += 1
        self._taking = index
        return taken

    def taken(self) -> None:
        """The last :meth:`take`'s transaction committed: its chunk is consumed."""
        if self._taking is None:
            return
        self._next, self._taking = self._taking, None
        if self._next >= len(self._keys):
            self._keys, self._visits, self._next = [], [], 0  # free the list's references

    def untake(self) -> None:
        """The last :meth:`take`'s transaction rolled back: its chunk stays listed."""
        self._taking = None
