"""Passed days: the closed days a bulk load has moved past, compacted while it goes on.

A bulk load over the API (a site's backfill, ``scripts/bench``'s month) sends its history
oldest day first, so once a batch of a later day is committed the earlier day's counts stop
changing: its last requests were in flight together and land within a moment. Left to the
sweep (:meth:`~appliance.runtime.compaction_queue.CompactionQueue.sweep`, every two minutes,
two looks apart) those days were compacted behind the load, and the first filtered query
after it built their blocks from the log. :class:`PassedDays` is told of every committed
batch (:meth:`PassedDays.committed`, on the writer thread: one count per site and UTC day of
the batch, no read) and hands the compaction queue each closed day that is

- *passed*: a later day of the same site has been committed since;
- *quiet*: no event of it has been committed for :data:`QUIET_SECONDS` (the stragglers of
  the load's concurrent requests have landed);
- *worth a block*: at least ``columns.compact_read_rows`` of its events were committed since
  it was last handed over (fewer build fast from the log, as the sweep also judges).

The job runner's thread compacts it (outside the write mutex; the block's generation is
checked when it is stored: :meth:`~appliance.events.columns.ColumnStore.compact_day`) and
polls (:meth:`PassedDays.poll`) while a passed day waits to become quiet. Events that arrive
for a day after its compaction are late events as ever: log rows beside its block until a
later compaction (this one, once enough of them come, the sweep's or the hourly job's).
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable

from appliance.models import Event

QUIET_SECONDS = 5.0  # a passed day with no event committed this long is handed over
FORGET_SECONDS = 3600.0  # a quiet day never worth a block is left to the hourly job
CLOSED_POLL_SECONDS = 60.0  # a passed, quiet day not closed yet (the grace after midnight) is looked at again


class PassedDays:
    """Watches committed batches for closed days a bulk load has moved past (see the module)."""

    def __init__(self, request: Callable[[int, int, int], None], columns, wake: threading.Event,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._request = request  # CompactionQueue.request
        self._columns = columns  # is_closed(day), compact_read_rows
        self._wake = wake  # the job runner's: set when a day becomes passed, so it polls
        self._clock = clock
        self._lock = threading.Lock()
        self._rows: dict[tuple[int, int], int] = {}  # (site, day) -> events committed since handed over
        self._last_seen: dict[tuple[int, int], float] = {}  # (site, day) -> when one was last committed
        self._latest: dict[int, int] = {}  # site -> the latest day committed
        self.quiet_seconds = QUIET_SECONDS
        self.days_handed_over = 0

    def committed(self, events: list[Event]) -> None:
        """Count a committed batch by site and UTC day (the recorder calls this after each
        commit), then hand over whatever that made due."""
        if not events:
            return
        counts = Counter((event.site_id, int(event.timestamp // 86400)) for event in events)
        now = self._clock()
        newly_passed = False
        with self._lock:
            for (site, day), count in counts.items():
                key = (site, day)
                self._rows[key] = self._rows.get(key, 0) + count
                self._last_seen[key] = now
                latest = self._latest.get(site)
                if latest is None or day > latest:
                    self._latest[site] = day
                    newly_passed |= latest is not None
        self.poll()
        if newly_passed:
            self._wake.set()  # the job runner polls again once the passed day is quiet

    def poll(self) -> int:
        """Hand the due days to the compaction queue; returns how many."""
        now = self._clock()
        due = []
        with self._lock:
            for key in list(self._rows):
                state = self._state(key, now)
                if state in ("due", "forgotten"):
                    del self._rows[key], self._last_seen[key]
                    if state == "due":
                        due.append(key)
            self.days_handed_over += len(due)
        for site, day in due:
            self._request(site, day, day)
        return len(due)

    def next_poll(self) -> float | None:
        """When (``clock`` time) to poll again: a passed day worth a block waits to become
        quiet, or (quiet already) to be closed; None when none waits."""
        now = self._clock()
        with self._lock:
            times = [
                self._last_seen[key] + self.quiet_seconds if state == "passed" else now + CLOSED_POLL_SECONDS
                for key in self._rows
                if (state := self._state(key, now)) in ("passed", "open")
            ]
        return min(times) if times else None

    def _state(self, key: tuple[int, int], now: float) -> str:
        """``due``; ``passed`` (not quiet yet); ``open`` (quiet, not closed yet); ``forgotten``
        (quiet long, never worth a block: the hourly job's); or ``idle`` (nothing to do yet)."""
        site, day = key
        quiet = now - self._last_seen[key]
        worth = self._rows[key] >= self._columns.compact_read_rows
        if not worth:
            return "forgotten" if quiet >= FORGET_SECONDS else "idle"
        if day >= self._latest[site]:
            return "idle"
        if quiet < self.quiet_seconds:
            return "passed"
        return "due" if self._columns.is_closed(day) else "open"
