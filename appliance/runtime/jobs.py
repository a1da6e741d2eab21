"""Background jobs: periodic upkeep that must not run on a request or in the writer's batch.

One daemon thread wakes every ``interval`` seconds and runs each due job: salt rotation
(salts older than 48 hours are deleted), the retention purge (each site's counters,
sketches, event-log rows, column-block rows and imported daily aggregates older than its retention period are deleted),
the re-derivation of days whose visits late events left dirty (:mod:`appliance.ingest.rederive`;
usually done by the aggregation step already), the sealing of week and month rollups whose period
ended (:func:`appliance.runtime.rollup_setup.seal_rollups`; also every sweep), the compaction of closed days into column blocks (:func:`compact_closed_days`;
every sweep (``SWEEP_SECONDS``), a checkpoint of the open day: :func:`checkpoint_open_day`;
between runs, the thread also compacts the days an import asks for: :mod:`appliance.runtime.compaction_queue`,
and the closed days a bulk load has moved past: :mod:`appliance.runtime.passed_days`), the
materialisation of materialised segments' settled days (:func:`materialise_segments`), the
purge of expired tokens and sessions, scheduled backups (``[backup]``), and the pruning of old
scheduled-report delivery records (:meth:`appliance.reports.scheduler.Scheduler.prune`). Jobs write through ``Store.write``, which serialises them
with the group-commit writer.
"""

from __future__ import annotations

import logging
import threading
import time

from appliance.heap import MAP_POLL_S, HeapTrimmer, MapReleaser, UnusedCaches
from appliance.operations.backup_schedule import run_scheduled_backup
from appliance.periods import day_bucket, hour_bucket
from appliance.runtime.compaction_queue import CompactionQueue
from appliance.runtime.passed_days import PassedDays
from appliance.runtime.rollup_setup import seal_rollups
from storage.retention import delete_buckets_before

log = logging.getLogger(__name__)


def purge_expired(appliance, now: float | None = None) -> dict[str, int]:
    """Delete every site's data older than its retention period; returns counts per kind."""
    now = time.time() if now is None else now
    appliance.coordinator.flush()  # nothing old may be folded in after the purge
    removed = {"counters": 0, "sketches": 0, "events": 0, "imported": 0}
    for site in appliance.sites.all():
        cutoff = now - site.retention_days * 86400
        first_hour = hour_bucket(cutoff)
        first_day = day_bucket(cutoff, site.timezone)

        def purge(txn, site=site, first_hour=first_hour, first_day=first_day, cutoff=cutoff):
            counts = {
                "counters": delete_buckets_before(txn, appliance.store.db(b"counters"), site.id, first_hour, first_day),
                "sketches": delete_buckets_before(txn, appliance.store.db(b"sketches"), site.id, first_hour, first_day),
                "events": appliance.eventlog.delete_range(txn, site.id, 0, int(cutoff * 1000)),
                "imported": appliance.imported.delete_before(txn, site.id, first_day),
            }
            if counts["counters"] or counts["sketches"]:  # the week and month cut by the cutoff
                appliance.counters.rebuild_rollups(txn, site.id, first_day, first_day)
                appliance.sketches.rebuild_rollups(txn, site.id, first_day, first_day)
            if appliance.counters.sums is not None:  # the deleted days' write generations
                appliance.counters.sums.delete_before(txn, site.id, first_day)
            return counts

        for kind, count in appliance.store.write(purge, bulk=True).items():
            removed[kind] += count
        removed["events"] += appliance.columns.purge_before(site.id, int(cutoff * 1000))
    if removed["sketches"]:
        appliance.sketches.forget()  # never write back a cached copy of a deleted sketch
    return removed


def seal(appliance, now: float | None = None) -> int:
    """Seal the weeks and months that have ended (:func:`appliance.runtime.rollup_setup.seal_rollups`)."""
    return seal_rollups(appliance.store, appliance.sites, appliance.counters, appliance.sketches, now)


def compact_closed_days(appliance, stop: threading.Event | None = None) -> dict[str, int]:
    """Fold every closed day's log rows into its column block (the block becomes the day's
    copy of record and the rows leave the log), then delete block generations retired long
    enough ago; see :mod:`appliance.events.columns`. Once ``stop`` is set, no further day."""
    columns = appliance.columns
    done = {"days": 0, "retired_generations": 0}
    for site in appliance.sites.all():
        if stop is not None and stop.is_set():
            break
        today = int(time.time() // 86400)
        done["days"] += columns.compact(site.id, 0, today, stop)
        done["retired_generations"] += columns.collect(site.id)
    return done


def materialise_segments(appliance) -> dict[str, int]:
    """Materialise the settled days of every materialised segment that are missing or stale
    (late events); see :mod:`appliance.query.materialised`."""
    segments = appliance.segments
    materialiser = appliance.stats.materialiser
    done = {"days": 0}
    for site in appliance.sites.all():
        for segment in segments.list(site.id):
            if segment.materialised and segment.counter_id:
                done["days"] += materialiser.run(segment)
    return done


def scheduled_backup(appliance, now: float | None = None) -> dict[str, object]:
    """A backup when ``[backup]`` schedules one (see :mod:`appliance.operations.backup_schedule`)."""
    return run_scheduled_backup(appliance.settings.data_dir, appliance.settings.backup,
                                appliance.extensions.backup_targets, now)


def checkpoint_open_day(appliance, site_ids) -> int:
    """Store a checkpoint of today's log rows for each site that has many rows not in one
    yet (:mod:`appliance.events.openday`); returns how many were written."""
    written = 0
    today = int(time.time() // 86400)
    for site in site_ids:
        try:
            written += appliance.columns.open_days.checkpoint(site, today)
        except Exception:  # a query reads the log instead; taken again at the next sweep
            log.exception("checkpointing the open day of site %s failed", site)
    return written


SWEEP_SECONDS = 120.0  # how often closed days a bulk load left in the log are looked for


class Jobs:
    def __init__(self, appliance, interval: float = 3600, sweep_seconds: float = SWEEP_SECONDS) -> None:
        self._appliance = appliance
        self._interval = interval
        self._sweep_seconds = sweep_seconds
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="footfall-jobs", daemon=True)
        self.last_run: dict[str, float] = {}
        self.last_result: dict[str, object] = {}
        # the closed days an import wrote, compacted between the hourly runs (see the module)
        self.compactions = CompactionQueue(appliance.columns)
        appliance.columns.compaction_wanted = self.compactions.request  # closed days a query read from the log
        # the closed days a bulk load has moved past, compacted during the load (see passed_days)
        self.passed_days = PassedDays(self.compactions.request, appliance.columns, self.compactions.wake,
                                      checkpoint=self.compactions.request_checkpoint)
        appliance.recorder.on_commit = self.passed_days.committed
        self.trimmer = HeapTrimmer()  # compaction reads a day's log rows at once; glibc keeps what it freed
        self.map_releaser = MapReleaser(appliance.store)  # the pages reads mapped, once they stop
        self.unused_caches = UnusedCaches(  # cached blocks and sketches nobody used for a while
            appliance.columns.cache, appliance.sketches, appliance.coordinator.mutex,
            appliance.settings.memory.release_unused_seconds, self.trimmer)

    def start(self) -> None:
        self._thread.start()

    def run_once(self, now: float | None = None) -> dict[str, object]:
        now = time.time() if now is None else now
        results: dict[str, object] = {}
        for name, job in (
            ("rotate_salts", lambda: self._appliance.visitors.rotate(now)),
            ("purge_retention", lambda: purge_expired(self._appliance, now)),
            ("rederive_visits", lambda: self._appliance.rederiver.run(force=True, stop=self._stop,
                                                                      defer=self.passed_days.loading)),
            ("seal_rollups", lambda: seal(self._appliance, now)),
            ("compact_columns", lambda: compact_closed_days(self._appliance, self._stop)),
            ("materialise_segments", lambda: materialise_segments(self._appliance)),
            ("purge_credentials", lambda: self._appliance.accounts.purge_expired(now)),
            ("backup", lambda: scheduled_backup(self._appliance, now)),
            ("trim_journal", lambda: self._appliance.trim_journal(now)),
            ("prune_deliveries", lambda: self._appliance.scheduler.prune(now)),
        ):
            if self._stop.is_set():  # the server stops: what is left waits for the next start's first run
                break
            try:
                results[name] = job()
                self.last_run[name] = now
            except Exception:  # a failing job must not stop the others or the thread
                log.exception("background job %s failed", name)
                results[name] = "failed"
        self.last_result = results
        return results

    def _run(self) -> None:
        # First run a minute after start (a restart after downtime catches up), then hourly;
        # in between, the compactions an import asked for, as soon as it asks.
        # Every sweep_seconds, closed days a bulk load left in the log are queued (see the queue);
        # the days a load has moved past as soon as they are quiet (see passed_days).
        try:  # at once: today's writes keep only the rollups of ended periods from then on
            seal(self._appliance)
        except Exception:  # the first run seals them
            log.exception("sealing the rollups of ended periods failed")
        due = time.monotonic() + min(60.0, self._interval)
        sweep = time.monotonic() + self._sweep_seconds
        while True:
            passed = self.passed_days.next_poll()
            release = time.monotonic() + MAP_POLL_S
            self.compactions.wake.wait(max(0.0, min(due, sweep, passed or due, release) - time.monotonic()))
            if self._stop.is_set():
                return
            try:
                self.map_releaser.poll()
            except Exception:  # the next poll tries again
                log.exception("releasing the store's map failed")
            try:
                self.unused_caches.poll()
            except Exception:  # the next poll tries again
                log.exception("letting go of unused cached blocks and sketches failed")
            try:
                self.passed_days.poll()
            except Exception:  # the sweep finds those days anyway
                log.exception("handing over the days a load moved past failed")
            if time.monotonic() >= sweep:
                sweep = time.monotonic() + self._sweep_seconds
                self.sweep()
            if self.compactions.wake.is_set():
                self.compactions.wake.clear()
                if self.compactions.run(self._stop):
                    self.trimmer.trim()
            if time.monotonic() >= due:
                self.run_once()
                self.trimmer.trim()
                due = time.monotonic() + self._interval

    def sweep(self) -> int:
        """Queue the closed days a bulk load left in the log (:meth:`CompactionQueue.sweep`)."""
        try:
            sites = [site.id for site in self._appliance.sites.all()]
            queued = self.compactions.sweep(sites, int(time.time() // 86400))
        except Exception:  # the hourly job compacts them anyway
            log.exception("looking for closed days to compact failed")
            return 0
        checkpoint_open_day(self._appliance, sites)
        try:  # a week or month that ended today is sealed within a sweep
            seal(self._appliance)
        except Exception:  # the hourly run seals it
            log.exception("sealing the rollups of ended periods failed")
        return queued

    def stop(self) -> None:
        """Stop the thread; a run under way ends after the day (or job) it is on."""
        self._stop.set()
        self.compactions.wake.set()
        if self._thread.is_alive():
            self._thread.join(timeout=10)


class MinuteJobs:
    """Frequent, cheap jobs on a thread of their own, every ``interval`` seconds (0: never):
    the alert checks (:class:`appliance.alerts.checker.AlertChecker`), which read counters
    and the live buffer and must not wait behind the hourly upkeep."""

    def __init__(self, job, interval: float = 60) -> None:
        self._job = job
        self._interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="footfall-minute-jobs", daemon=True)

    def start(self) -> None:
        if self._interval > 0:
            self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self._interval):
            try:
                self._job()
            except Exception:  # a failing run must not stop the next one
                log.exception("a minute job failed")

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=30)
