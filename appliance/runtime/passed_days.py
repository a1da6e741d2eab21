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

The open day a load ends on is never passed; its rows are read from the log (and from its
checkpoint, :mod:`appliance.events.openday`) until midnight. The sweep checkpoints it every two
minutes, so the first filtered query right after a load ending today decoded every row the load
sent today (1.3 s of a 1.4 s query at the seed's month). So the open day is handed over too,
to be checkpointed, once at least ``open_days.checkpoint_rows`` of its events were committed
since it was last handed over and it is quiet: only after a load or an import (a site's steady
traffic is never quiet for :data:`QUIET_SECONDS`, and the sweep serves it).
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable

from appliance.models import Event

QUIET_SECONDS = 5.0  # a passed day with no event committed this long is handed over
FORGET_SECONDS = 3600.0  # a quiet day never worth a block is left to the hourly job
LOADING_SECONDS = 300.0  # loading(): a day with no event committed this long is not being loaded
CLOSED_POLL_SECONDS = 60.0  # a passed, quiet day not closed yet (the grace after midnight) is looked at again


class PassedDays:
    """Watches committed batches for closed days a bulk load has moved past (see the module)."""

    def __init__(self, request: Callable[[int, int, int], None], columns, wake: threading.Event,
                 clock: Callable[[], float] = time.monotonic,
                 checkpoint: Callable[[int, int], None] | None = None) -> None:
        self._request = request  # CompactionQueue.request
        self._checkpoint = checkpoint  # CompactionQueue.request_checkpoint: the quiet open day
        self._columns = columns  # is_closed(day), compact_read_rows
        self._wake = wake  # the job runner's: set when a day becomes passed, so it polls
        self._clock = clock
        self._lock = threading.Lock()
        self._rows: dict[tuple[int, int], int] = {}  # (site, day) -> events committed since handed over
        self._last_seen: dict[tuple[int, int], float] = {}  # (site, day) -> when one was last committed
        self._latest: dict[int, int] = {}  # site -> the latest day committed
        # (site, day) -> (events committed since its last checkpoint hand-over, when one was last committed)
        self._unchecked: dict[tuple[int, int], tuple[int, float]] = {}
        self.quiet_seconds = QUIET_SECONDS
        self.days_handed_over = 0
        self.open_days_handed_over = 0

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
                if self._checkpoint is not None:
                    before = self._unchecked.get(key, (0, now))[0]
                    self._unchecked[key] = (before + count, now)
                    threshold = self._columns.open_days.checkpoint_rows
                    newly_passed |= before < threshold <= before + count  # the runner polls once it is quiet
                latest = self._latest.get(site)
                if latest is None or day > latest:
                    self._latest[site] = day
                    newly_passed |= latest is not None
        self.poll()
        if newly_passed:
            self._wake.set()  # the job runner polls again once the passed day is quiet

    def poll(self) -> int:
        """Hand the due days to the compaction queue, and the quiet open days to be
        checkpointed; returns how many."""
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
            quiet_open = self._quiet_open_days(now)
        for site, day in due:
            self._request(site, day, day)
        for site, day in quiet_open:
            self._checkpoint(site, day)
        return len(due) + len(quiet_open)

    def loading(self, site: int, day: int) -> bool:
        """Whether a bulk load is still on around the local day ``day`` of ``site``: a closed
        UTC day of its window (``day - 1`` to ``day + 1``) has a block's worth of events
        committed and not handed over yet (the load writes it, or it waits for compaction),
        one of them within :data:`LOADING_SECONDS` (the last day of a load no later day
        follows is never handed over). The hourly job leaves such a day's visits dirty
        (:meth:`Rederiver.run <appliance.ingest.rederive.Rederiver.run>`'s ``defer``): derived
        from the log while the load goes on, it was marked again as its neighbours were, and
        the runner's thread was kept from the compactions the load needs."""
        now = self._clock()
        with self._lock:
            return any(self._rows.get((site, utc_day), 0) >= self._columns.compact_read_rows
                       and now - self._last_seen[(site, utc_day)] < LOADING_SECONDS
                       and self._columns.is_closed(utc_day) for utc_day in range(day - 1, day + 2))

    def _quiet_open_days(self, now: float) -> list[tuple[int, int]]:
        """The open days due for a checkpoint, forgotten as handed over (under the lock)."""
        due = []
        for key in list(self._unchecked):
            state = self._open_state(key, now)
            if state in ("due", "done"):
                del self._unchecked[key]
                if state == "due":
                    due.append(key)
        self.open_days_handed_over += len(due)
        return due

    def _open_state(self, key: tuple[int, int], now: float) -> str:
        """For the checkpoint: ``due``; ``settling`` (enough rows, not quiet yet); ``done``
        (passed or closed: compaction's now); or ``idle`` (not enough rows yet)."""
        site, day = key
        rows, last_seen = self._unchecked[key]
        if day < self._latest[site] or self._columns.is_closed(day):
            return "done"
        if rows < self._columns.open_days.checkpoint_rows:
            return "idle"
        return "due" if now - last_seen >= self.quiet_seconds else "settling"

    def next_poll(self) -> float | None:
        """When (``clock`` time) to poll again: a passed day worth a block waits to become
        quiet, or (quiet already) to be closed, or an open day worth a checkpoint to become
        quiet; None when none waits."""
        now = self._clock()
        with self._lock:
            times = [
                self._last_seen[key] + self.quiet_seconds if state == "passed" else now + CLOSED_POLL_SECONDS
                for key in self._rows
                if (state := self._state(key, now)) in ("passed", "open")
            ]
            times += [
                last_seen + self.quiet_seconds
                for key, (_, last_seen) in self._unchecked.items()
                if self._open_state(key, now) == "settling"
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
