"""The Appliance: one object that owns the store, the pipeline, the writer and the queries.

``Appliance(settings).open()`` opens LMDB under ``settings.data_dir``, loads plugins, starts
the group-commit writer and calls the ``startup`` hook; ``close()`` commits what is pending,
calls ``shutdown`` and closes the store. The web room and the CLI both drive this object.
"""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path

from appliance.accounts.audit import AuditLog
from appliance.accounts.users import Accounts
from appliance.config import Settings
from appliance.definitions.goals import Goals
from appliance.events.codec import decode_event, encode_event
from appliance.hooks.manager import make_plugin_manager
from appliance.ingest.aggregation import aggregate
from appliance.ingest.cardinality import CardinalityGuard
from appliance.ingest.live import LiveBuffer
from appliance.ingest.pipeline import Pipeline
from appliance.ingest.visitors import VisitorHasher
from appliance.ingest.visits import VisitTable
from appliance.ingest.writer import Writer
from appliance.models import Event, Site
from appliance.query.stats import Stats
from appliance.runtime.jobs import Jobs
from appliance.runtime.ownership import WriterLock
from appliance.sites import SiteRegistry
from storage import Store
from storage.counters import Counters
from storage.eventlog import EventLog
from storage.records import Records
from storage.retention import delete_prefix
from storage.sketches import Sketches
from storage.strings import StringTable

log = logging.getLogger(__name__)


class Appliance:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.started_at = time.time()
        self._open = False

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
        settings = self.settings
        data = Path(settings.data_dir)
        data.mkdir(parents=True, exist_ok=True)
        self.store = Store(
            data / "footfall.lmdb",
            initial_map_bytes=settings.storage.initial_map_mb << 20,
            grow_when_fraction=settings.storage.grow_when_percent_full / 100,
            min_free_disk_bytes=settings.storage.min_free_disk_mb << 20,
        )
        self.records = Records(self.store)
        self.strings = StringTable(self.store)
        self.counters = Counters(self.store)
        self.sketches = Sketches(self.store)
        self.eventlog = EventLog(self.store)
        self.sites = SiteRegistry(
            self.store, self.records, settings.sites.timezone, settings.sites.retention_days
        )
        self.accounts = Accounts(
            self.store,
            self.records,
            min_password_length=settings.auth.min_password_length,
            token_ttl_seconds=settings.auth.token_ttl_seconds,
            session_idle_seconds=settings.auth.session_idle_seconds,
            session_max_seconds=settings.auth.session_max_seconds,
        )
        self.audit = AuditLog(self.store, self.records)
        self.visitors = VisitorHasher(self.store, self.records)
        self.visits = VisitTable(
            self.store, settings.sites.visit_timeout_minutes * 60, settings.sites.max_open_visits
        )
        self._last_expiry = time.time()
        self.cardinality = CardinalityGuard(self.counters, settings.sites.max_dimension_values)
        plugin_directory = settings.plugins.directory
        if not plugin_directory and (data / "plugins").is_dir():
            plugin_directory = str(data / "plugins")
        self.plugin_manager = make_plugin_manager(settings.plugins.disabled, plugin_directory)
        self.live = LiveBuffer(settings.live.ring_size)
        self.pipeline = Pipeline(self)
        self.goals = Goals(self)
        self.stats = Stats(self)
        self._write_mutex = threading.RLock()
        self._unaggregated: list[tuple[bytes, Event]] = []
        self._aggregate_interval = settings.ingest.aggregate_interval_ms / 1000
        self._aggregate_max = settings.ingest.aggregate_max_events
        self._last_flush = time.monotonic()
        if self._replay_pending():
            self.flush_aggregates()
        self.writer = Writer(
            self._commit,
            self._after_commit,
            on_idle=self._idle,
            idle_seconds=max(0.05, self._aggregate_interval),
            interval_ms=settings.ingest.commit_interval_ms,
            max_events=settings.ingest.commit_max_events,
        )
        self.writer.start()
        self.jobs = Jobs(self)
        self.jobs.start()
        self._open = True
        self.plugin_manager.hook.startup(appliance=self)
        return self

    def close(self) -> None:
        if not self._open:
            return
        self._open = False
        self.jobs.stop()
        self.writer.stop()
        try:
            self.flush_aggregates()
        except Exception:
            log.exception("aggregating at close failed; the events stay pending for next start")
        try:
            self.plugin_manager.hook.shutdown(appliance=self)
        finally:
            try:
                self.store.close()
            finally:
                self._ownership.release()

    def __enter__(self) -> Appliance:
        return self.open() if not self._open else self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- writing --------------------------------------------------------------------------
    # A commit makes events durable by appending them to the event log and to the small
    # ``pending`` database, in one fsync'd transaction: the least that must be on disk before
    # a request is answered. Folding them into counters, sketches, visits and goals (many
    # more pages) happens in ``flush_aggregates``: every ``aggregate_interval`` seconds, when
    # enough events wait, before any stats query (so reads see every acknowledged event),
    # and at close. After a crash, ``open`` replays whatever ``pending`` still lists.

    def _timezones(self) -> dict[int, str]:
        return {site.id: site.timezone for site in self.sites.all()}

    def _interner(self, txn):
        known = self.strings.known_ids  # committed ids: a plain dict lookup on the hot path
        allocate = self.strings.intern

        def intern(text: str) -> int:
            found = known.get(text)
            return found if found is not None else allocate(txn, text)

        return intern

    def _commit(self, events: list[Event]) -> list[bytes]:
        timezones = self._timezones()
        strings = self.strings
        pending_db = self.store.db(b"pending")

        def transaction(txn):
            # A retried attempt (after the map grew) starts from the committed state.
            strings.rollback()
            self.eventlog.rolled_back()
            intern = self._interner(txn)
            bounded = self.cardinality.apply(txn, events, timezones, intern)
            entries = [
                (event.site_id, int(event.timestamp * 1000), encode_event(event, intern))
                for event in bounded
            ]
            keys = self.eventlog.append(txn, entries)
            if combined is not None:
                # Space is tight: aggregate now, in this transaction, with whatever waits,
                # so an acknowledged event can never be stuck unaggregated on a full disk.
                waiting = combined + list(zip(keys, bounded, strict=True))
                self._aggregate_in(txn, waiting, timezones)
            else:
                for key in keys:
                    txn.put(key, b"", db=pending_db)
            return keys, bounded

        with self._write_mutex:
            combined = list(self._unaggregated) if self.store.tight else None
            try:
                keys, bounded = self.store.write(transaction)
            except BaseException:
                strings.rollback()
                self.eventlog.rolled_back()
                self.cardinality.forget()
                if combined is not None:
                    self.visits.rolled_back()
                    self.sketches.forget()
                raise
            strings.commit()
            self.eventlog.committed()
            if combined is not None:
                self.visits.committed()
                self.sketches.committed()
                del self._unaggregated[: len(combined)]
                self._last_flush = time.monotonic()
            else:
                self._unaggregated.extend(zip(keys, bounded, strict=True))
        if len(self._unaggregated) >= self._aggregate_max or (
            time.monotonic() - self._last_flush >= self._aggregate_interval
        ):
            self.flush_aggregates()
        return keys

    def flush_aggregates(self) -> int:
        """Fold committed events into counters, sketches, visits and goals; returns how many."""
        if not self._unaggregated:
            return 0
        with self._write_mutex:
            batch, self._unaggregated = self._unaggregated, []
            if not batch:
                return 0
            timezones = self._timezones()
            strings = self.strings

            def transaction(txn):
                strings.rollback()
                self._aggregate_in(txn, batch, timezones)

            try:
                self.store.write(transaction)
            except BaseException:
                strings.rollback()
                self.visits.rolled_back()
                self.sketches.forget()
                self._unaggregated[:0] = batch  # still pending, on disk and in memory
                raise
            strings.commit()
            self.visits.committed()
            self.sketches.committed()
            self._last_flush = time.monotonic()
            return len(batch)

    def _aggregate_in(self, txn, batch: list[tuple[bytes, Event]], timezones) -> None:
        """Fold ``(log key, event)`` pairs into counters, sketches, goals and visits, and
        strike them from ``pending``, inside ``txn``."""
        events = [event for _, event in batch]
        pending_db = self.store.db(b"pending")
        intern = self._interner(txn)
        writes = aggregate(events, timezones, intern)
        self.goals.count(events, timezones, writes, intern)
        self.visits.apply(txn, events, timezones, writes.counter_deltas, intern)
        self.counters.apply(txn, writes.counters)
        self.sketches.add(txn, writes.sketches)
        for key, _ in batch:
            txn.delete(key, db=pending_db)

    def _replay_pending(self) -> int:
        """After a crash: queue the committed events that were never aggregated."""
        text = self.strings.text
        pending_db = self.store.db(b"pending")
        with self.store.read() as txn:
            for key, _ in txn.cursor(db=pending_db):
                value = self.eventlog.get(txn, key)
                if value is None:
                    continue
                site_id, timestamp_ms, _ = self.eventlog.split_key(key)
                event = decode_event(site_id, timestamp_ms, value, lambda i: text(i, txn))
                self._unaggregated.append((key, event))
        return len(self._unaggregated)

    def _idle(self) -> None:
        """The writer had nothing to commit for a while: aggregate what waits."""
        try:
            self.flush_aggregates()
        except Exception:
            log.exception("aggregating pending events failed; they stay pending")

    def _after_commit(self, events: list[Event], keys: list[bytes]) -> None:
        now = time.time()
        if now - self._last_expiry > 60:
            self._last_expiry = now
            try:
                self.visits.expire(now)
            except Exception:
                log.exception("expiring visits failed")
        self.live.extend(list(zip((event_id(key) for key in keys), events, strict=True)))
        try:
            self.plugin_manager.hook.events_committed(appliance=self, events=events)
        except Exception:
            log.exception("an events_committed hook failed")

    def record_sync(self, events: list[Event]) -> list[str]:
        """Write already-built events, wait until they are durable, and aggregate them
        (CLI, demo, imports)."""
        ids = [event_id(key) for key in self.writer.write_sync(events)]
        self.flush_aggregates()
        return ids

    # -- reading --------------------------------------------------------------------------
    def events(self, site: Site, start: float, end: float):
        """Yield ``(log key, Event)`` for the events of ``site`` with ``start <= timestamp < end``,
        in time order, from compacted column blocks and the event log alike."""
        yield from self.stats.scans.columns.events(
            site.id, int(start * 1000), int(end * 1000), self.strings.text
        )

    def read_events(self, site: Site, start: float, end: float) -> list[Event]:
        """Events of ``site`` with ``start <= timestamp < end``, in time order."""
        return [event for _, event in self.events(site, start, end)]

    def delete_site_data(self, txn, site: Site) -> None:
        self._unaggregated = [item for item in self._unaggregated if item[1].site_id != site.id]
        self.counters.delete_site(txn, site.id)
        delete_prefix(txn, self.sketches._db, site.id.to_bytes(4, "big"))
        self.eventlog.delete_range(txn, site.id, 0, 2**63 - 1)
        self.stats.scans.columns.delete_site(txn, site.id)
        self.stats.scans.segments.materialiser.delete_site(txn, site.id)
        delete_prefix(txn, self.visits._db, site.id.to_bytes(4, "big"))
        delete_prefix(txn, self.store.db(b"pending"), site.id.to_bytes(4, "big"))
        delete_prefix(txn, self.store.db(b"columns"), site.id.to_bytes(4, "big"))
        for kind in ("goal", "funnel", "segment"):  # the site's definitions go with it
            for identifier in [key for key, _ in self.records.scan(kind, txn) if key.startswith(f"{site.id:010d}/")]:
                self.records.delete(txn, kind, identifier)
        with self.visits._lock:
            for key in [key for key in self.visits._open if key[0] == site.id]:
                del self.visits._open[key]

    def delete_site(self, domain: str) -> Site | None:
        """Delete a site with all its data: unlisted first (ingest stops resolving it), then
        the writer is flushed so no event of it is still in flight, then its data goes."""
        site = self.sites.get(domain)
        if site is None:
            return None
        self.sites.remove(domain, self.delete_site_data, flush=lambda: self.writer.write_sync([]))
        self.accounts.forget_site(site.id)
        self.goals.forget_site(site.id)
        return site

    def health(self) -> dict[str, object]:
        used, map_size = self.store.map_usage()
        return {
            "status": "ok" if self.writer.last_error is None else "degraded",
            "uptime_seconds": round(time.time() - self.started_at, 1),
            "events_accepted": self.writer.events_committed,
            "batches_committed": self.writer.batches_committed,
            "drops": dict(self.pipeline.drops),
            "storage": {"used_bytes": used, "map_bytes": map_size, "file_bytes": self.store.disk_bytes()},
            "last_error": self.writer.last_error,
            "sites": len(self.sites.all()),
            "open_visits": len(self.visits),
        }


def event_id(key: bytes) -> str:
    return key.hex()
