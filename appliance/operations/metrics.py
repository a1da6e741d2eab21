"""Prometheus metrics of one appliance, in a registry of its own (never the global one).

Two kinds. *Observed* as things happen: the commit latency and batch size histograms
(:meth:`Metrics.timed_commit` wraps the recorder's commit on the writer thread) and the
request latency per route (:meth:`Metrics.observe_request`, called by the web room's request
middleware). *Read at scrape time* by :class:`ApplianceCollector` from counts the parts keep
anyway, so the ingest hot path gains nothing: events accepted, events ignored per reason,
aggregation lag, LMDB map use, open visits, the live ring buffer, the string table, the
sketch and column-block caches' sizes (what the memory budget bounds).

Other parts add their own collectors with :meth:`Metrics.add_collector`: the standby's lag
(``footfall_standby_lag_events`` / ``_seconds``) is meant to be registered there by the
standby when it follows a primary.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Protocol

from prometheus_client import CollectorRegistry, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client.registry import Collector

from appliance.turns import TURNS

CONTENT_TYPE = CONTENT_TYPE_LATEST
_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
_BATCH_BUCKETS = (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10000)


class Sized(Protocol):
    def __len__(self) -> int: ...


class ApplianceCollector(Collector):
    """Gauges and counters read from the appliance's parts when Prometheus scrapes."""

    def __init__(
        self, *, writer, pipeline, recorder, store, visits: Sized, live: Sized,
        replication: Callable[[], dict[str, object]] = dict, sketches=None, columns=None, memo=None, background=None,
    ) -> None:
        self._sketches, self._columns = sketches, columns  # the budgeted caches (appliance/memory.py)
        self._memo = memo  # kept answers of filtered reports (appliance/query/memo.py)
        self._background = background  # day-set walks and finishers (appliance/query/background.py)
        self._writer = writer
        self._replication = replication
        self._pipeline = pipeline
        self._recorder = recorder
        self._store = store
        self._visits = visits
        self._live = live

    def collect(self) -> Iterator[Metric]:
        accepted = CounterMetricFamily(
            "footfall_ingest_events_accepted", "Events committed to the event log since the server started")
        accepted.add_metric([], self._writer.events_committed)
        yield accepted
        batches = CounterMetricFamily("footfall_ingest_batches_committed", "Group commits since the server started")
        batches.add_metric([], self._writer.batches_committed)
        yield batches
        ignored = CounterMetricFamily(
            "footfall_ingest_events_ignored", "Events answered 202 and not stored, per reason", labels=["reason"])
        for reason, count in sorted(self._pipeline.drop_counts().items()):
            ignored.add_metric([reason], count)
        yield ignored
        yield _gauge("footfall_aggregation_pending_events", "Committed events not yet folded into counters",
                     self._recorder.waiting)
        yield _gauge("footfall_requests_waiting_for_turn", "Requests waiting for their turn to compute", TURNS.waiting_now)
        gave_up = CounterMetricFamily(
            "footfall_request_turn_timeouts", "Requests that waited half a second and computed without a turn")
        gave_up.add_metric([], TURNS.timeouts)
        yield gave_up
        yield _gauge("footfall_aggregation_lag_seconds", "How long the oldest unaggregated events have waited",
                     self._recorder.aggregation_lag_seconds)
        used, size = self._store.map_usage()
        yield _gauge("footfall_lmdb_map_used_bytes", "Bytes of the LMDB map in use", used)
        yield _gauge("footfall_lmdb_map_size_bytes", "Size of the LMDB map", size)
        yield _gauge("footfall_lmdb_map_used_ratio", "Fraction of the LMDB map in use", used / size if size else 0.0)
        yield _gauge("footfall_lmdb_file_bytes", "Size of data.mdb on disk", self._store.disk_bytes())
        yield _gauge("footfall_string_table_entries", "Interned strings (pages, referrers, ...)",
                     self._store.entries(b"strings"))
        yield _gauge("footfall_open_visits", "Visits open in memory", len(self._visits))
        yield _gauge("footfall_live_buffer_events", "Events in the live ring buffer", len(self._live))
        if self._sketches is not None:
            yield _gauge("footfall_sketch_cache_bytes", "Decoded sketches cached for write-back (estimated)",
                         self._sketches.cached_bytes)
            yield _gauge("footfall_sketch_cache_entries", "Decoded sketches cached for write-back",
                         self._sketches.cached_entries)
        if self._columns is not None:
            yield _gauge("footfall_column_cache_bytes", "Decoded column blocks cached", self._columns.cache.cached_bytes)
        if self._memo is not None:
            kept = CounterMetricFamily(
                "footfall_report_memo_answers", "Filtered reports answered from kept answers or scanned", labels=["result"])
            kept.add_metric(["kept"], self._memo.hits)
            kept.add_metric(["scanned"], self._memo.misses)
            yield kept
            yield _gauge("footfall_report_memo_bytes", "Kept answers of filtered reports (pickled)", self._memo.bytes)
            flights = self._memo.flights  # refused reports finishing in the background (appliance/query/flights.py)
            yield _gauge("footfall_report_finishers", "Refused filtered reports finishing in the background now",
                         flights.finishers)
            finishing = CounterMetricFamily("footfall_report_flights", "Filtered report computations (identical "
                                            "requests share one), and how background ones ended", labels=["result"])
            finishing.add_metric(["started"], flights.started)
            finishing.add_metric(["finished_in_background"], flights.finished)
            finishing.add_metric(["dropped"], flights.dropped)
            yield finishing
        if self._background is not None:
            background = self._background
            yield _gauge("footfall_background_workers_busy", "Background report work running now (day-set walks, "
                         "at most [query] background_workers, and finishers)", background.busy)
            yield _gauge("footfall_report_walks_queued", "Day-set walks waiting for a background worker",
                         background.queued)
            walks = CounterMetricFamily("footfall_report_walks", "Day-set walks (a filtered dashboard's reports in one "
                                        "walk) started, and how they ended", labels=["result"])
            walks.add_metric(["started"], background.started)
            walks.add_metric(["completed"], background.completed)
            walks.add_metric(["abandoned"], background.abandoned)  # past [query] background_seconds, or at close
            walks.add_metric(["failed"], background.failed)
            walks.add_metric(["dropped"], background.dropped)  # before their turn: newer sets, or close
            yield walks
        yield _gauge("footfall_degraded", "1 while the last commit failed (see /api/v1/health)",
                     1 if self._writer.last_error else 0)
        for name, documentation, value in replication_gauges(self._replication()):
            yield _gauge(name, documentation, value)


def replication_gauges(status: dict[str, object]) -> list[tuple[str, str, float]]:
    """(name, help, value) of the replication gauges in one replication_status()."""
    gauges = []
    for key, name, documentation in _REPLICATION_GAUGES:
        value = status.get(key)
        if isinstance(value, bool) and key in _FLAG_GAUGES:
            value = int(value)
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            gauges.append((name, documentation, value))
    return gauges


#: replication_status() keys shown as gauges: a standby's lag, or a primary's view of its standby
_REPLICATION_GAUGES = (
    ("lag_events", "footfall_standby_lag_events", "Standby: events the primary committed that it has not applied"),
    ("lag_seconds", "footfall_standby_lag_seconds", "Standby: how long it has been missing a commit of the primary"),
    ("standby_lag_events", "footfall_replication_standby_lag_events",
     "Primary: committed events its standby has not confirmed"),
    ("standby_lag_seconds", "footfall_replication_standby_lag_seconds",
     "Primary: how long its standby has been behind"),
    ("sync_timeouts", "footfall_replication_sync_timeouts",
     "Primary, sync mode: acknowledgements that waited the whole sync_timeout_ms"),
    ("sync_degraded", "footfall_replication_sync_degraded",
     "Primary, sync mode: 1 while the standby is stuck and acknowledgements do not wait"),
    ("sync_degraded_acks", "footfall_replication_sync_degraded_acks",
     "Primary, sync mode: acknowledgements given at once because the standby was stuck"),
    ("journaling", "footfall_replication_journaling",
     "Primary: 1 while it keeps the replication journal (a standby attached within journal_hours)"),
    ("journal_entries", "footfall_replication_journal_entries", "Primary: rows in the replication journal"),
)
#: boolean status keys shown as 0/1 gauges
_FLAG_GAUGES = ("sync_degraded", "journaling")


def _gauge(name: str, documentation: str, value: float) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, documentation, value=value)


class Metrics:
    """The registry and the observed metrics; ``render()`` is the ``/metrics`` body."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.commit_seconds = Histogram(
            "footfall_commit_seconds", "Time to commit one batch to LMDB (fsync included)",
            buckets=_LATENCY_BUCKETS, registry=self.registry,
        )
        self.batch_events = Histogram(
            "footfall_commit_batch_events", "Events per committed batch",
            buckets=_BATCH_BUCKETS, registry=self.registry,
        )
        self.request_seconds = Histogram(
            "footfall_http_request_seconds", "Time to answer a request, per route template and status class",
            labelnames=["method", "route", "status"], buckets=_LATENCY_BUCKETS, registry=self.registry,
        )
        self._collectors: list[Collector] = []
        self._request_children: dict[tuple[str, str, int], Histogram] = {}

    def add_collector(self, collector: Collector) -> None:
        self.registry.register(collector)
        self._collectors.append(collector)

    def remove_collectors(self) -> None:
        """Unregister every added collector (the appliance closed; a reopen adds them again)."""
        for collector in self._collectors:
            self.registry.unregister(collector)
        self._collectors.clear()

    def timed_commit(self, commit: Callable[[list], list]) -> Callable[[list], list]:
        """``commit`` measured: its latency and its batch size (on the writer thread)."""

        def measured(events: list) -> list:
            started = time.perf_counter()
            keys = commit(events)
            self.commit_seconds.observe(time.perf_counter() - started)
            self.batch_events.observe(len(events))
            return keys

        return measured

    def observe_request(self, method: str, route: str, status: int, seconds: float) -> None:
        key = (method, route, status // 100)
        child = self._request_children.get(key)
        if child is None:  # labels() validates and locks: once per label set, not per request
            child = self._request_children[key] = self.request_seconds.labels(method, route, f"{status // 100}xx")
        child.observe(seconds)

    def render(self) -> bytes:
        return generate_latest(self.registry)
