"""The stats vocabulary, and the one planner that picks the path answering each query.

Every consumer (JSON API, seed reports, dashboard) calls these functions, so a number cannot
differ between two screens. Three paths give the same shapes:

- *counted* (:mod:`appliance.query.counted`): no filters — counters and sketches kept at
  ingest;
- *materialised* (:mod:`appliance.query.materialised`): viewed through one materialised
  segment and nothing else — its per-day figures plus a scan of the unsettled tail (aggregate
  and timeseries; other reports scan);
- *scanned* (:mod:`appliance.query.scans`): any filters — the period's column blocks.

Imported daily aggregates (:mod:`appliance.query.imported`) join the counted path only: a
filtered query leaves imported days out, and :meth:`Stats.imported_meta` says so.

The choice is made in :meth:`Stats._path`, once, rather than by each report.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

import msgspec

from appliance.definitions.funnels import Funnel
from appliance.definitions.segments import Segment, Segments
from appliance.events.blocks import StaleBlock
from appliance.events.coordinator import WriteCoordinator
from appliance.events.live import LiveBuffer
from appliance.filters import make_filter
from appliance.models import Site
from appliance.query.counted import CountedReports, change
from appliance.query.estimates import ESTIMATES_KEPT
from appliance.query.funnel_report import FunnelReports
from appliance.query.imported import ImportedData
from appliance.query.materialised import Materialiser
from appliance.query.materialised_reads import MaterialisedReports
from appliance.query.scans import Scans
from appliance.query.spec import Query
from storage.counters import Counters
from storage.imported import ImportedAggregates
from storage.sketches import Sketches
from storage.strings import StringTable

Result = TypeVar("Result")


class Stats:
    def __init__(
        self,
        *,
        counters: Counters,
        sketches: Sketches,
        strings: StringTable,
        coordinator: WriteCoordinator,
        live: LiveBuffer,
        scans: Scans,
        materialiser: Materialiser,
        materialised: MaterialisedReports,
        segments: Segments,
        imported: ImportedAggregates | None = None,
        estimates_kept: int = ESTIMATES_KEPT,
    ) -> None:
        self.imported = ImportedData(imported) if imported is not None else None
        self.counted = CountedReports(
            counters=counters, sketches=sketches, strings=strings, coordinator=coordinator, imported=self.imported,
            estimates_kept=estimates_kept,
        )
        self.scans = scans
        self.materialiser = materialiser
        self.materialised = materialised
        self._segments = segments
        self._live = live
        self._funnels = FunnelReports(scans)

    # -- the planner ----------------------------------------------------------------------
    def _materialised_segment(self, query: Query) -> Segment | None:
        """The materialised segment a query is viewed through, when that is all it filters by."""
        if len(query.filters) != 1:
            return None
        condition = query.filters[0]
        if condition.dimension != "segment" or condition.operator != "is" or len(condition.values) != 1:
            return None
        value = condition.values[0]
        segment = self._segments.find(query.site.id, int(value)) if value.isdigit() else None
        return segment if segment is not None and segment.materialised and segment.counter_id else None

    def _path(
        self,
        query: Query,
        counted: Callable[[], Result],
        scanned: Callable[[], Result],
        materialised: Callable[[Segment], Result | None] | None = None,
    ) -> Result:
        if not query.filters:
            return counted()
        segment = self._materialised_segment(query) if materialised is not None else None
        if segment is not None:
            try:
                found = materialised(segment)
            except StaleBlock:  # a block it read was rewritten: the scan path retries
                self.scans.forget()
                found = None
            if found is not None:
                return found
        return scanned()

    def imported_meta(self, query: Query, report: str, dimension: str | None = None) -> dict[str, object] | None:
        """Whether the answer to ``report`` includes the imported days of the query's range
        (:meth:`ImportedData.meta <appliance.query.imported.ImportedData.meta>`); ``None``
        when the range has none. The counted path adds them; a filtered query never does."""
        return self.imported.meta(query, report, dimension) if self.imported is not None else None

    def has_imported(self, site: Site) -> bool:
        """Whether ``site`` has imported daily aggregates (it has data without events)."""
        return self.imported is not None and self.imported.has_data(site.id)

    def prefetch(self, query: Query) -> None:
        """Start, in the background, the one day-by-day walk that answers a filtered query's
        dashboard reports (:mod:`appliance.query.daysets`); the page asks it before its first
        widget, so the walk overlaps the top line's. Nothing without filters or with a segment."""
        if query.filters and not any(condition.dimension == "segment" for condition in query.filters):
            self.scans.day_sets.start(self.scans, query)

    # -- the vocabulary -------------------------------------------------------------------
    def aggregate(self, query: Query) -> dict[str, object]:
        return self._path(
            query,
            lambda: self.counted.aggregate(query),
            lambda: self.scans.aggregate(query),
            lambda segment: self.materialised.aggregate(query, segment),
        )

    def aggregate_compared(self, query: Query, mode: str) -> dict[str, object]:
        """Totals for the period and the compared period, with the percent change of each."""
        current = self.aggregate(query)
        other_query = query.compared(mode)
        previous = self.aggregate(other_query)
        for result in (current, previous):
            result.pop("converting_visitors_by_type", None)
        return {
            "results": current,
            "comparison": {
                "mode": mode,
                "start_date": other_query.date_from.isoformat(),
                "end_date": other_query.date_to.isoformat(),
                "results": previous,
                "change": {key: change(value, previous[key]) for key, value in current.items()},
            },
        }

    def timeseries(self, query: Query, visit_metrics: bool = False) -> list[dict[str, object]]:
        """Visitors, page views and visits per bucket; ``visit_metrics`` adds the bounce rate,
        visit duration and custom events where the counted path answers (unfiltered)."""
        return self._path(
            query,
            lambda: self.counted.timeseries(query, visit_metrics),
            lambda: self.scans.timeseries(query),
            lambda segment: self.materialised.timeseries(query, segment),
        )

    def breakdown(self, query: Query, dimension: str, limit: int = 10) -> dict[str, object]:
        """Top ``limit`` values of a dimension by visitors, with page views; plus the rest."""
        return self._path(
            query,
            lambda: self.counted.breakdown(query, dimension, limit),
            lambda: self.scans.breakdown(query, dimension, limit),
        )

    def event_counts(self, query: Query, dimension: str) -> dict[str, int]:
        """Per value of a breakdown dimension, its events of every kind but engagement pings
        (always scanned: no counter keeps every kind of event per value). Imported days,
        which have no events, are not included."""
        return self.scans.event_counts(query, dimension)

    def entry_pages(self, query: Query, limit: int = 10) -> list[dict[str, object]]:
        """Pages visits started on: visits, visitors, bounce rate, visit duration."""
        return self._path(
            query, lambda: self.counted.entry_pages(query, limit), lambda: self.scans.entry_pages(query, limit)
        )

    def exit_pages(self, query: Query, limit: int = 10) -> list[dict[str, object]]:
        """Pages visits ended on: exits, page views, exit rate."""
        return self._path(
            query, lambda: self.counted.exit_pages(query, limit), lambda: self.scans.exit_pages(query, limit)
        )

    def time_on_page(self, query: Query, limit: int = 10) -> list[dict[str, object]]:
        """Average foreground seconds and scroll depth per page, from engagement pings."""
        return self._path(
            query, lambda: self.counted.time_on_page(query, limit), lambda: self.scans.time_on_page(query, limit)
        )

    def custom_events(self, query: Query) -> list[dict[str, object]]:
        return self._path(query, lambda: self.counted.custom_events(query), lambda: self.scans.custom_events(query))

    def conversions(self, query: Query) -> dict[str, object]:
        return self._path(query, lambda: self.counted.conversions(query), lambda: self.scans.conversions(query))

    def current_visitors(self, site: Site, window_seconds: int = 300) -> int:
        """Distinct visitors with an event in the last ``window_seconds`` (the live buffer)."""
        cutoff = time.time() - window_seconds
        return len({event.visitor_id for _, event in self._live.latest(10_000, site.id) if event.timestamp >= cutoff})

    def funnel(self, query: Query, funnel: Funnel) -> dict[str, object]:
        """The funnel's report over the query (always scanned: steps need event order)."""
        return self._funnels.report(query, funnel)

    def compare_segments(self, query: Query, segment_ids: list[str]) -> list[dict[str, object]]:
        """Totals side by side: each of ``segment_ids`` (an id, or ``everyone``) over the query.
        "everyone" is scanned too, so every column counts visitors exactly alike."""
        out = []
        for value in segment_ids:
            if value == "everyone":
                scoped = query
                label: dict[str, object] = {"segment": "everyone"}
            else:
                segment = self._segments.get(query.site.id, int(value))
                scoped = msgspec.structs.replace(query, filters=[*query.filters, make_filter("is", "segment", [value])])
                label = {"segment": segment.id, "name": segment.name}
            result = self.aggregate(scoped) if scoped.filters else self.scans.aggregate(scoped)
            result.pop("converting_visitors_by_type", None)
            out.append({**label, "results": result})
        return out

    # -- the seed's reports ---------------------------------------------------------------
    def traffic_report(self, query: Query) -> dict[str, object]:
        return self._path(query, lambda: self.counted.traffic_report(query), lambda: self.scans.traffic_report(query))

    def conversions_report(self, query: Query) -> dict[str, object]:
        report = self.conversions(query)
        return {
            "total_conversions": report["total_conversions"],
            "conversion_rate": report["conversion_rate"],
            "conversion_types": {goal["name"]: goal["conversions"] for goal in report["goals"]},
        }
