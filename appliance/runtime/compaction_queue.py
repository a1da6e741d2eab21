"""Compaction on request: the closed days an import just wrote, compacted by the job runner soon.

The hourly job (:func:`appliance.runtime.jobs.compact_closed_days`) folds closed days' log rows
into column blocks. An import writes months of closed days at once; until they are compacted,
the first filtered query over them builds each day's block from the log on the request, which
can exceed its time budget. So the importer asks for those days when it finishes
(:meth:`CompactionQueue.request`), and the job runner's thread (:class:`~appliance.runtime.jobs.Jobs`),
woken by the request, compacts them (:meth:`CompactionQueue.run`) — never the request that
imported, nor the writer. :meth:`CompactionQueue.wait` blocks until every request is done (the
CLI's import waits before it exits; tests).

Batches of history sent over the API (a site's backfill, a bulk load) leave closed days in the
log the same way, with no importer to ask. Sent oldest day first, each day is asked for as soon
as the load has moved past it (:mod:`appliance.runtime.passed_days`); whatever else is left,
:meth:`CompactionQueue.sweep`, run by the job runner every few minutes, queues: each closed day
holding many log rows once its event count has stopped changing between two sweeps (a day still
being written would be compacted twice).

The open day a load ends on is not compacted but checkpointed (:mod:`appliance.events.openday`):
:meth:`CompactionQueue.request_checkpoint` queues it the same way, for the same thread.
"""

from __future__ import annotations

import logging
import threading

log = logging.getLogger(__name__)


class CompactionQueue:
    def __init__(self, columns) -> None:
        self._columns = columns
        self._requests: list[tuple[int, int, int]] = []
        self._checkpoints: list[tuple[int, int]] = []  # (site, open day) to checkpoint
        self._busy = 0
        self._changed = threading.Condition()
        self.wake = threading.Event()  # set by a request: the job runner's thread waits on it
        self.days_compacted = 0
        self.checkpoints_taken = 0
        self._last_counts: dict[tuple[int, int], int] = {}  # (site, day) -> events, at the last sweep

    def request(self, site_id: int, first_day: int, last_day: int) -> None:
        """Compact the closed UTC days ``first_day``..``last_day`` of a site soon (a range
        already waiting is not queued twice: each cold query over it asks again)."""
        with self._changed:
            if (site_id, first_day, last_day) in self._requests:
                return
            self._requests.append((site_id, first_day, last_day))
        self.wake.set()

    def request_checkpoint(self, site_id: int, day: int) -> None:
        """Checkpoint a site's open day soon (a load or an import has just written many of its rows)."""
        with self._changed:
            if (site_id, day) in self._checkpoints:
                return
            self._checkpoints.append((site_id, day))
        self.wake.set()

    def sweep(self, site_ids, today: int) -> int:
        """Queue the closed days before ``today`` with at least ``columns.compact_read_rows``
        log rows whose event count is the same as at the previous sweep; returns how many."""
        columns = self._columns
        counts: dict[tuple[int, int], int] = {}
        with columns.settled() as txn:
            for site in site_ids:
                for day in columns.log_days(txn, site, 0, today - 1):
                    if not columns.is_closed(day):
                        continue
                    total = columns.day_count(txn, site, day)
                    pointer = columns.blocks.pointer(txn, site, day)
                    stored = int(pointer.info.get("count", 0)) if pointer is not None else 0
                    if total - stored >= columns.compact_read_rows:
                        counts[(site, day)] = total
        quiet = [key for key, total in counts.items() if self._last_counts.get(key) == total]
        self._last_counts = counts
        for site, day in quiet:
            self.request(site, day, day)
        return len(quiet)

    def run(self, stop: threading.Event | None = None) -> int:
        """Compact every requested range, then checkpoint every requested open day (on the job
        runner's thread); returns blocks written. Once ``stop`` is set no further request is
        begun: the ones left wait for the next start's sweep (their days are still in the log)."""
        with self._columns.compaction_session():  # one build helper for the whole run
            return self._run(stop)

    def _run(self, stop: threading.Event | None) -> int:
        total = 0
        while True:
            if stop is not None and stop.is_set():
                return total
            with self._changed:
                if self._requests:
                    site_id, first_day, last_day = self._requests.pop(0)
                elif self._checkpoints:
                    site_id, first_day = self._checkpoints.pop(0)
                    last_day = None
                else:
                    return total
                self._busy += 1
            written = 0
            try:
                if last_day is None:
                    self.checkpoints_taken += self._columns.open_days.checkpoint(site_id, first_day)
                else:
                    written = self._columns.compact(site_id, first_day, last_day, stop)
            except Exception:  # the hourly job compacts them anyway, the sweep checkpoints
                log.exception("compacting (or checkpointing) days from %s of site %s failed", first_day, site_id)
            finally:
                with self._changed:
                    self._busy -= 1
                    self.days_compacted += written
                    self._changed.notify_all()
            total += written

    def wait(self, timeout: float | None = None) -> bool:
        """Wait until every requested range is compacted (and open day checkpointed); False on timeout."""
        with self._changed:
            return self._changed.wait_for(lambda: not self._requests and not self._checkpoints and not self._busy, timeout)
