"""The Appliance: opens one data dir and composes the rooms as siblings.

``Appliance(settings).open()`` opens LMDB under ``settings.data_dir``, loads plugins, builds
each part with exactly the parts it depends on, replays what a crash left unaggregated,
starts the group-commit writer and the background jobs, and calls the ``startup`` hook;
``close()`` commits what is pending, calls ``shutdown`` and closes the store. The web room and
the CLI both drive this object; the parts never reach back into it.

The order of construction is the order of dependency: storage tables; leaves (sites,
accounts, visitors); the write coordinator; the event read model (column store); the
definitions (goals, funnels, segments); the query side (scans, materialised segments, the
stats planner); the ingest side (pipeline, recorder, writer); then jobs.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator, Sequence
from functools import partial
from pathlib import Path
from typing import Any

from appliance import dimensions as dims
from appliance.accounts.audit import AuditLog
from appliance.accounts.users import Accounts
from appliance.alerts.checker import AlertChecker
from appliance.alerts.context import SiteReadings
from appliance.alerts.history import AlertHistory
from appliance.alerts.rules import AlertRules
from appliance.config import Settings
from appliance.definitions.funnels import Funnels
from appliance.definitions.goals import Goals
from appliance.definitions.segments import Segments
from appliance.errors import DomainError
from appliance.events.columns import ColumnStore
from appliance.events.coordinator import WriteCoordinator
from appliance.events.live import LiveBuffer
from appliance.hooks.manager import make_plugin_manager
from appliance.hooks.registry import collect_extensions
from appliance.ingest.cardinality import CardinalityGuard
from appliance.ingest.folding import FoldingThread
from appliance.ingest.pipeline import Pipeline
from appliance.ingest.recording import Recorder
from appliance.ingest.rederive import Rederiver
from appliance.ingest.visitors import VisitorHasher
from appliance.ingest.visits import VisitTable
from appliance.ingest.writer import Writer
from appliance.memory import plan_memory
from appliance.models import Event, Site
from appliance.operations.erasure import PersonalEvents
from appliance.operations.following import Follower
from appliance.operations.metrics import ApplianceCollector, Metrics
from appliance.operations.replication import ReplicationSource
from appliance.query.goal_reports import GoalReports
from appliance.query.materialised import Materialiser
from appliance.query.materialised_reads import MaterialisedReports
from appliance.query.scans import Scans
from appliance.query.stats import Stats
from appliance.reports.definitions import Reports
from appliance.reports.schedules import Schedules
from appliance.runtime import collector
from appliance.runtime.health import health_report
from appliance.runtime.jobs import Jobs, MinuteJobs, checkpoint_open_day
from appliance.runtime.ownership import WriterLock
from appliance.runtime.report_delivery import scheduler_clock, start_scheduler
from appliance.runtime.rollup_setup import ensure_rollups
from appliance.runtime.site_removal import delete_site_data
from appliance.sites import SiteRegistry
from appliance.turns import TURNS
from storage import Store, rollups
from storage.counters import Counters
from storage.eventlog import EventLog
from storage.imported import ImportedAggregates
from storage.intake import INTAKE_DIRECTORY, Intake
from storage.journal import Journal
from storage.range_sums import RangeSums
from storage.records import Records
from storage.sketches import Sketches
from storage.strings import StringTable

log = logging.getLogger(__name__)


class Appliance:
    def __init__(self, settings: Settings, plugins: Sequence[object] = ()) -> None:
        """``plugins``: extra plugin objects registered after the built-in and installed
        ones (tests, embedding applications)."""
        self.settings = settings
        self.started_at = time.time()
        self._extra_plugins = tuple(plugins)
        self._open = False
        self.metrics = Metrics()  # exists before open: the web room's middleware holds it

    # -- lifecycle ------------------------------------------------------------------------
    def open(self, *, lock_wait: float = 0.0, role: str = "") -> Appliance:
        """Take the data dir's writer lock (waiting up to ``lock_wait`` seconds; raises
        ``ownership.DataDirBusy``), then open everything. ``role`` names this process in
        the lock file, for the message another process gets."""
        self._ownership = WriterLock(self.settings.data_dir, role).acquire(lock_wait)
        try:
            return self._open_owned()
        except BaseException:
            self._ownership.release()
            raise

    def _open_owned(self) -> Appliance:
        collector.apply()  # the writing process: fewer garbage collections per batch (see the module)
        TURNS.slots = self.settings.query.computing_requests  # requests computing at once (appliance/turns.py)
        settings = self.settings
        data = Path(settings.data_dir)
        data.mkdir(parents=True, exist_ok=True)
        store = self.store = Store(
            data / "footfall.lmdb",
            initial_map_bytes=settings.storage.initial_map_mb << 20,
            grow_when_fraction=settings.storage.grow_when_percent_full / 100,
            min_free_disk_bytes=settings.storage.min_free_disk_mb << 20,
            readahead=settings.storage.readahead,
        )
        records = self.records = Records(store)
        memory = self.memory = plan_memory(settings.memory.budget_mb, settings.sites.max_open_visits)
        strings = self.strings = StringTable(store, max_cached=memory.string_cache_entries)
        kept_sums = RangeSums(store, memory.range_sums_bytes)  # kept sums and unions of closed days
        sealed = rollups.Sealed(records)  # which weeks and months keep their rollups
        counters = self.counters = Counters(store, rolled_up=dims.ROLLED_UP_COUNTERS, sums=kept_sums, sealed=sealed)
        sketches = self.sketches = Sketches(
            store, cache_bytes=memory.sketch_cache_bytes, rolled_up=dims.ROLLED_UP_SKETCHES, sums=kept_sums,
            sealed=sealed,
        )
        eventlog = self.eventlog = EventLog(store)
        self.imported = ImportedAggregates(store)
        journal = self.journal = Journal(store)
        sites = self.sites = SiteRegistry(store, records, settings.sites.timezone, settings.sites.retention_days)
        ensure_rollups(store, records, sites, counters, sketches)
        self.accounts = Accounts(
            store,
            records,
            min_password_length=settings.auth.min_password_length,
            token_ttl_seconds=settings.auth.token_ttl_seconds,
            session_idle_seconds=settings.auth.session_idle_seconds,
            session_max_seconds=settings.auth.session_max_seconds,
        )
        self.audit = AuditLog(store, records)
        self.visitors = VisitorHasher(store, records)
        timeout_ms = settings.sites.visit_timeout_minutes * 60_000
        visits = self.visits = VisitTable(
            store, timeout_ms // 1000, memory.max_open_visits, memory.max_closed_visits,
            fresh=eventlog.next_sequence == 1,  # no event ever stored: no visit closed before this process
        )
        plugin_directory = settings.plugins.directory
        if not plugin_directory and (data / "plugins").is_dir():
            plugin_directory = str(data / "plugins")
        self.plugin_manager = make_plugin_manager(settings.plugins.disabled, plugin_directory, self._extra_plugins)
        self.live = LiveBuffer(settings.live.ring_size)

        coordinator = self.coordinator = WriteCoordinator(store)
        columns = self.columns = ColumnStore(
            store=store, eventlog=eventlog, counters=counters, coordinator=coordinator, timeout_ms=timeout_ms,
            cache_bytes=memory.column_cache_bytes, build_helper=settings.storage.compaction_helper,
        )
        goals = self.goals = Goals(
            store=store, records=records, strings=strings, counters=counters, sketches=sketches,
            coordinator=coordinator, sites=sites, columns=columns,
        )
        self.funnels = Funnels(store, records, goals)
        segments = self.segments = Segments(store, records, goals)
        self.reports = Reports(store, records, segments)
        self.schedules = Schedules(store, records, self.reports, accepts=lambda url: self.extensions.notifier_for(url),
                                   clock=scheduler_clock(settings.reports.test_clock_file))
        scans = self.scans = Scans(columns=columns, strings=strings, goals=goals, segments=segments, timeout_ms=timeout_ms, settings=settings.query)
        materialiser = Materialiser(
            store=store, records=records, counters=counters, sketches=sketches, strings=strings,
            coordinator=coordinator, sites=sites, scans=scans, segments=segments, goals=goals,
        )
        segments.observe(materialiser)
        materialised = MaterialisedReports(
            materialiser=materialiser, scans=scans, counters=counters, sketches=sketches, strings=strings,
            coordinator=coordinator,
        )
        self.stats = Stats(
            counters=counters, sketches=sketches, strings=strings, coordinator=coordinator,
            live=self.live, scans=scans, materialiser=materialiser, materialised=materialised, segments=segments,
            imported=self.imported, estimates_kept=memory.estimates_kept,
        )
        self.goal_reports = GoalReports(
            goals=goals, counted=self.stats.counted, scans=scans, counters=counters, sketches=sketches,
            strings=strings, coordinator=coordinator,
        )

        self.pipeline = Pipeline(
            sites=sites,
            hooks=self.plugin_manager.hook,
            visitors=self.visitors,
            visits=visits,
            clock_skew_seconds=settings.ingest.clock_skew_seconds,
        )
        self.rederiver = Rederiver(
            store=store, columns=columns, counters=counters, sketches=sketches, strings=strings, visits=visits,
            sites=sites, coordinator=coordinator, timeout_ms=timeout_ms, scan_bytes=memory.column_cache_bytes,
        )
        self.recorder = Recorder(
            store=store, strings=strings, eventlog=eventlog, counters=counters, sketches=sketches,
            visits=visits, goals=goals,
            cardinality=CardinalityGuard(counters, settings.sites.max_dimension_values),
            coordinator=coordinator, timezones=self._timezones,
            aggregate_interval_seconds=settings.ingest.aggregate_interval_ms / 1000,
            aggregate_max_events=settings.ingest.aggregate_max_events,
            aggregate_slice_events=settings.ingest.aggregate_slice_events,
            rederiver=self.rederiver, max_waiting=memory.max_waiting_events,
            intake=(intake := self._open_intake(data)), tracker_first=settings.ingest.tracker_first,
        )
        self.intake = intake
        replication = settings.replication
        self.replication = ReplicationSource(
            store=store, journal=journal, strings=strings, records=records, recorder=self.recorder,
            sync=replication.sync, sync_timeout_seconds=replication.sync_timeout_ms / 1000,
            enabled=replication.journal_hours > 0, journal_hours=replication.journal_hours,
            journal_always=replication.journal_always, mutex=coordinator.mutex,
        )
        self.personal = PersonalEvents(
            store=store, strings=strings, eventlog=eventlog, columns=columns, counters=counters, sketches=sketches,
            goals=goals, visits=visits, visitors=self.visitors, rederiver=self.rederiver, coordinator=coordinator,
            journal=journal, records=records,
        )
        self.follower: Follower | None = None
        if replication.follow:
            self.follower = Follower(
                primary=replication.follow, token=replication.token, store=store, records=records,
                eventlog=eventlog, recorder=self.recorder, sites=sites, goals=goals, visitors=self.visitors,
                after_commit=self._after_commit, batch_events=replication.batch_events,
                poll_wait_seconds=replication.poll_wait_seconds, personal=self.personal,
                imported=self.imported,
            )
        if self.recorder.replay_pending():
            coordinator.flush()
        self.writer = Writer(
            self.metrics.timed_commit(self.recorder.commit),
            self._after_commit,
            on_idle=self._idle,
            idle_seconds=max(0.05, settings.ingest.aggregate_interval_ms / 1000),
            interval_ms=settings.ingest.commit_interval_ms,
            max_events=settings.ingest.commit_max_events,
            # without the intake the writer folds between its commits (they share the store's lock)
            between=None if intake else self.recorder.aggregate_slice, hold=None if intake else self.recorder.over_backlog,
        )
        self.folding = FoldingThread(self.recorder) if intake else None  # the aggregation step, beside the commits
        if self.folding is not None:
            self.folding.start()
        self.writer.start()
        self.metrics.add_collector(ApplianceCollector(
            writer=self.writer, pipeline=self.pipeline, recorder=self.recorder, store=store, visits=visits,
            live=self.live, replication=self.replication_status, sketches=sketches, columns=columns, memo=scans.memo, background=scans.background,
        ))
        if self.follower is not None:
            self.follower.start()
        self.jobs = Jobs(self)
        self.jobs.start()
        self._open = True
        self.plugin_manager.hook.startup(appliance=self)
        self.extensions = collect_extensions(self.plugin_manager, self)
        self.scheduler = start_scheduler(self)  # scheduled reports: after the notifiers are known
        self.alert_rules = AlertRules(store, records, self.extensions)
        self.alert_history = AlertHistory(store, records)
        self.alerts = AlertChecker(
            store=store, sites=sites, rules=self.alert_rules, history=self.alert_history, extensions=self.extensions,
            readings=self._alert_readings, attempts=settings.alerts.delivery_attempts,
            backoff_seconds=settings.alerts.delivery_backoff_seconds,
        )
        self.minute_jobs = MinuteJobs(self._check_alerts, settings.alerts.check_interval_seconds)
        self.minute_jobs.start()
        return self

    def close(self) -> None:
        if not self._open:
            return
        self._open = False
        self.scans.close()  # day-set walks and reports finishing in the background stop at their next check
        self.minute_jobs.stop()
        self.scheduler.stop()
        self.metrics.remove_collectors()
        if self.follower is not None:
            self.follower.stop()
        self.jobs.stop()
        self.writer.stop()
        if self.folding is not None:
            self.folding.stop()
        try:
            self.coordinator.flush()
        except Exception:
            log.exception("aggregating at close failed; the events stay pending for next start")
        # the next process's first filtered query then decodes the open day's checkpoint, not
        # the rows a load sent since the last sweep (usually fewer than a checkpoint needs: no work)
        checkpoint_open_day(self, [site.id for site in self.sites.all()])
        try:
            self.plugin_manager.hook.shutdown(appliance=self)
        finally:
            try:
                self.store.close()
                if self.intake is not None:
                    self.intake.close()
            finally:
                self._ownership.release()

    def __enter__(self) -> Appliance:
        return self.open() if not self._open else self

    def __exit__(self, *exc) -> None:
        self.close()

    def plugin_settings(self, name: str) -> dict[str, Any]:
        """Plugin ``name``'s own settings: its ``[plugins.NAME]`` table and the
        ``FOOTFALL_PLUGIN_NAME_KEY`` variables (values from the environment are strings)."""
        return dict(self.settings.plugins.tables.get(name, {}))

    def _check_alerts(self) -> object:
        """The minute job: check every alert rule (a standby leaves that to its primary)."""
        if self.following:
            return None
        return self.alerts.check()

    def _alert_readings(self, site: Site, now: float) -> SiteReadings:
        return SiteReadings(
            site=site, now=now, counters=self.counters, coordinator=self.coordinator, live=self.live,
            goal_reports=self.goal_reports, events=self.events,
        )

    # -- writing --------------------------------------------------------------------------
    def _open_intake(self, data: Path) -> Intake | None:
        """Where commits go (``[ingest] intake``; :mod:`storage.intake`), or None: the store."""
        if not self.settings.ingest.intake:
            return None
        return Intake(data / INTAKE_DIRECTORY, min_free_disk_bytes=self.settings.storage.min_free_disk_mb << 20)

    def _timezones(self) -> dict[int, str]:
        return {site.id: site.timezone for site in self.sites.all()}

    def flush_aggregates(self) -> int:
        """Fold every committed event into counters, sketches, visits and goals now."""
        return self.coordinator.flush()

    def _idle(self) -> None:
        """The writer had nothing to commit for a while: aggregate what waits, then close a
        chunk of visits past their timeout (a quiet server does not keep its last visits open;
        the aggregation step closes the others: :mod:`appliance.ingest.visit_expiry`)."""
        try:
            self.coordinator.flush()
            with self.coordinator.mutex:  # the table's pending changes: one writer at a time
                self.visits.close_idle(time.time())
        except Exception:
            log.exception("aggregating pending events or closing idle visits failed")

    def _after_commit(self, events: list[Event], keys: list[bytes]) -> None:
        self.live.extend(list(zip((event_id(key) for key in keys), events, strict=True)))
        self.replication.committed()
        try:
            self.plugin_manager.hook.events_committed(appliance=self, events=events)
        except Exception:
            log.exception("an events_committed hook failed")

    def record_sync(self, events: list[Event]) -> list[str]:
        """Write already-built events, wait until they are durable, and aggregate them
        (CLI, demo, imports)."""
        ids = [event_id(key) for key in self.writer.write_sync(events)]
        self.coordinator.flush()
        return ids

    # -- reading --------------------------------------------------------------------------
    def events(self, site: Site, start: float, end: float) -> Iterator[tuple[bytes, Event]]:
        """Yield ``(log key, Event)`` for the events of ``site`` with ``start <= timestamp < end``,
        in time order, from compacted column blocks and the event log alike."""
        yield from self.columns.events(site.id, int(start * 1000), int(end * 1000), self.strings.text)

    def has_events(self, site: Site) -> bool:
        """Whether ``site`` has stored any event: a row in the event log (everything recent, at
        once after its commit: one cursor seek) or, failing that, a compacted day. No
        aggregation, no settled read."""
        if self.recorder.holds(site.id):  # committed, not yet in the log
            return True
        with self.store.read() as txn:
            if next(iter(self.eventlog.scan(txn, site.id, 0, 2**62)), None) is not None:
                return True
            return bool(self.columns.blocks.days(txn, site.id))

    def read_events(self, site: Site, start: float, end: float) -> list[Event]:
        """Events of ``site`` with ``start <= timestamp < end``, in time order."""
        return [event for _, event in self.events(site, start, end)]

    # -- sites ----------------------------------------------------------------------------
    def delete_site(self, domain: str) -> Site | None:
        """Delete a site with all its data: unlisted first (ingest stops resolving it), then
        the writer is flushed so no event of it is still in flight, then its data goes."""
        site = self.sites.get(domain)
        if site is None:
            return None
        self.sites.remove(domain, partial(delete_site_data, self), flush=lambda: self.writer.write_sync([]))
        self.accounts.forget_site(site.id)
        self.goals.forget_site(site.id)
        return site

    def health(self) -> dict[str, object]:
        """What ``/health`` answers: status, counts, storage and replication role."""
        return health_report(self)

    # -- replication ------------------------------------------------------------------------
    @property
    def following(self) -> bool:
        """Whether this server is a standby following a primary (read-only)."""
        return self.follower is not None and self.follower.following

    def replication_status(self) -> dict[str, object]:
        if self.follower is None:
            return self.replication.status()
        if self.following:
            return self.follower.status()
        # promoted: a primary now; where it came from and the last sequence it pulled
        promoted = {"role": "primary (promoted)", "promoted_from": self.follower.primary, "cursor": self.follower.cursor}
        return {**self.replication.status(), **promoted}

    def promote(self) -> dict[str, object]:
        """Stop following and serve as a primary (see :mod:`appliance.operations.following`)."""
        if not self.following:
            raise DomainError(None, "this server is not a standby", 409)
        self.follower.promote()
        self.coordinator.flush()
        return self.replication_status()

    def trim_journal(self, now: float | None = None) -> int:
        """Drop replication-journal rows older than ``replication.journal_hours`` (and stop
        the journal when no standby needs it: :meth:`ReplicationSource.trim`)."""
        return self.replication.trim(now)


def event_id(key: bytes) -> str:
    return key.hex()
