"""Stats queries in one vocabulary: aggregate, timeseries, breakdown, current visitors.

Every consumer (JSON API, seed reports, dashboard, exporters) calls these functions, so a
number cannot differ between two screens. Unfiltered queries read pre-aggregated counters and
HyperLogLog sketches: page views are sums of day (or hour) counters, visitors are *unions* of
sketches over the range, never sums of daily uniques. A query with filters (or a segment)
takes the filtered path instead (:mod:`appliance.scans`): the same functions and shapes,
computed by scanning the event log's column blocks.
"""

from __future__ import annotations

import contextlib
import time
from datetime import date, timedelta

import msgspec

from appliance import dimensions as dims
from appliance.channels import SEED_CATEGORIES, traffic_category
from appliance.filters import Filter
from appliance.models import Site
from appliance.periods import (
    day_from_number,
    day_number,
    day_start_timestamp,
    month_start,
    week_start,
)
from storage import StorageFullError
from storage.keys import DAY, HOUR
from storage.sketches import DIMENSION_PRECISION, SITE_PRECISION, Sketch

INTERVALS = ("hour", "day", "week", "month")
# Day numbers, hour buckets and time stamps are counted from 1970-01-01 UTC in unsigned keys,
# and a day's end (the next midnight, in any time zone) must stay a valid date: the days a
# query may cover, its comparison period included.
FIRST_DAY = date(1970, 1, 2)
LAST_DAY = date(9998, 12, 31)


class QueryError(ValueError):
    def __init__(self, field: str, message: str, status: int = 422) -> None:
        super().__init__(message)
        self.field = field
        self.message = message
        self.status = status


class Query(msgspec.Struct, kw_only=True):
    """What every stats function takes: a site, an inclusive local date range, an interval,
    and filters (see :mod:`appliance.filters`; none means the pre-aggregated fast path)."""

    site: Site
    date_from: date
    date_to: date
    interval: str = "day"
    filters: list[Filter] = []

    def __post_init__(self) -> None:
        check_day("start_date", self.date_from)
        check_day("end_date", self.date_to)
        if self.date_to < self.date_from:
            raise QueryError("end_date", "must not be before start_date")
        if (self.date_to - self.date_from).days > 3660:
            raise QueryError("end_date", "range longer than ten years")
        if self.interval not in INTERVALS:
            raise QueryError("interval", f"must be one of {', '.join(INTERVALS)}")

    @property
    def first_day(self) -> int:
        return day_number(self.date_from)

    @property
    def last_day(self) -> int:
        return day_number(self.date_to)

    def compared(self, mode: str) -> Query:
        """The period to compare with: ``previous_period`` (same length, just before) or
        ``year_over_year`` (the same dates one year earlier; 29 February maps to the 28th)."""
        if mode == "previous_period":
            length = (self.date_to - self.date_from).days + 1
            start, end = self.date_from - timedelta(days=length), self.date_from - timedelta(days=1)
        elif mode == "year_over_year":
            start, end = _year_earlier(self.date_from), _year_earlier(self.date_to)
        else:
            raise QueryError("compare", "must be previous_period or year_over_year")
        if start < FIRST_DAY:
            raise QueryError(
                "compare", f"the {mode} period would start on {start.isoformat()}, before {FIRST_DAY.isoformat()}"
            )
        return Query(site=self.site, date_from=start, date_to=end, interval=self.interval, filters=self.filters)

    def hour_range(self) -> tuple[int, int]:
        start = day_start_timestamp(self.date_from, self.site.timezone)
        end = day_start_timestamp(self.date_to + timedelta(days=1), self.site.timezone)
        return int(start // 3600), int(end // 3600) - 1


class Stats:
    def __init__(self, appliance) -> None:
        self._appliance = appliance
        self._store = appliance.store
        self._counters = appliance.counters
        self._sketches = appliance.sketches
        self._strings = appliance.strings
        from appliance.scans import Scans

        self.scans = Scans(appliance)

    def _read(self):
        """A read transaction that sees every acknowledged event: committed events still
        waiting to be aggregated are folded into the counters first."""
        # On a full disk reports still answer from what is aggregated; the rest stays pending.
        with contextlib.suppress(StorageFullError):
            self._appliance.flush_aggregates()
        return self._store.read()

    # -- helpers --------------------------------------------------------------------------
    def _sum(self, txn, query: Query, metric: int) -> dict[int, int]:
        totals: dict[int, int] = {}
        for _, dimension, value in self._counters.scan(
            txn, query.site.id, DAY, metric, query.first_day, query.last_day
        ):
            totals[dimension] = totals.get(dimension, 0) + value
        return totals

    def _visitors(self, txn, query: Query, metric: int, precision: int, dimensions=None) -> dict[int, int]:
        merged = self._sketches.union(
            txn, query.site.id, DAY, metric, query.first_day, query.last_day, precision, dimensions
        )
        return {dimension: sketch.count() for dimension, sketch in merged.items()}

    # -- the vocabulary -------------------------------------------------------------------
    def aggregate(self, query: Query) -> dict[str, int]:
        if query.filters:
            return self.scans.aggregate(query)
        with self._read() as txn:
            visitors = self._visitors(txn, query, dims.VISITORS, SITE_PRECISION).get(0, 0)
            pageviews = self._sum(txn, query, dims.PAGEVIEWS).get(0, 0)
            events = sum(self._sum(txn, query, dims.CUSTOM_EVENTS).values())
            conversions = sum(self._sum(txn, query, dims.CONVERSIONS).values())
            converters = self._visitors(txn, query, dims.CONVERSION_VISITORS, DIMENSION_PRECISION)
            visits = self._sum(txn, query, dims.VISITS).get(0, 0)
            bounces = self._sum(txn, query, dims.BOUNCES).get(0, 0)
            duration = self._sum(txn, query, dims.VISIT_DURATION).get(0, 0)
        return {
            "visitors": visitors,
            "visits": visits,
            "pageviews": pageviews,
            "views_per_visit": round(pageviews / visits, 2) if visits else 0.0,
            "bounce_rate": _rate(bounces, visits),
            "visit_duration": round(duration / visits) if visits else 0,
            "events": events,
            "conversions": conversions,
            "converting_visitors_by_type": converters,
        }

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

    def timeseries(self, query: Query) -> list[dict[str, object]]:
        if query.filters:
            return self.scans.timeseries(query)
        with self._read() as txn:
            if query.interval == "hour":
                return self._hourly(txn, query)
            pageviews: dict[int, int] = {}
            for day, _, value in self._counters.scan(
                txn, query.site.id, DAY, dims.PAGEVIEWS, query.first_day, query.last_day
            ):
                pageviews[day] = pageviews.get(day, 0) + value
            visits: dict[int, int] = {}
            for day, _, value in self._counters.scan(
                txn, query.site.id, DAY, dims.VISITS, query.first_day, query.last_day
            ):
                visits[day] = visits.get(day, 0) + value
            sketches: dict[int, Sketch] = {}
            for day, _, raw in self._sketches.scan(
                txn, query.site.id, DAY, dims.VISITORS, query.first_day, query.last_day
            ):
                sketches[day] = Sketch.from_bytes(raw)
        groups: dict[date, list[int]] = {}
        for number in range(query.first_day, query.last_day + 1):
            day = day_from_number(number)
            start = {"day": day, "week": week_start(day), "month": month_start(day)}[query.interval]
            groups.setdefault(start, []).append(number)
        series = []
        for start, numbers in groups.items():
            union = Sketch(SITE_PRECISION)
            for number in numbers:
                if number in sketches:
                    union.merge(sketches[number])
            series.append(
                {
                    "date": start.isoformat(),
                    "visitors": union.count(),
                    "pageviews": sum(pageviews.get(number, 0) for number in numbers),
                    "visits": sum(visits.get(number, 0) for number in numbers),
                }
            )
        return series

    def _hourly(self, txn, query: Query) -> list[dict[str, object]]:
        first, last = query.hour_range()
        pageviews = {
            hour: value
            for hour, _, value in self._counters.scan(txn, query.site.id, HOUR, dims.PAGEVIEWS, first, last)
        }
        visitors = {
            hour: Sketch.from_bytes(raw).count()
            for hour, _, raw in self._sketches.scan(txn, query.site.id, HOUR, dims.VISITORS, first, last)
        }
        from datetime import UTC, datetime

        from appliance.periods import zone

        tz = zone(query.site.timezone)
        return [
            {
                "date": datetime.fromtimestamp(hour * 3600, UTC).astimezone(tz).isoformat(),
                "visitors": visitors.get(hour, 0),
                "pageviews": pageviews.get(hour, 0),
            }
            for hour in range(first, last + 1)
        ]

    def breakdown(self, query: Query, dimension: str, limit: int = 10) -> dict[str, object]:
        """Top ``limit`` values of a dimension by visitors, with page views; plus the rest."""
        if query.filters:
            return self.scans.breakdown(query, dimension, limit)
        if dimension not in dims.DIMENSIONS:
            raise QueryError("property", f"unknown dimension {dimension!r}")
        _, counter_metric, sketch_metric = dims.DIMENSIONS[dimension]
        with self._read() as txn:
            pageviews = self._sum(txn, query, counter_metric)
            # Visitors are unions of 30 daily sketches per value: compute them only for the
            # values with the most page views (twice the rows shown), which hold the top rows.
            candidates = sorted(pageviews, key=pageviews.get, reverse=True)[: max(limit * 2, 20)]
            visitors = self._visitors(txn, query, sketch_metric, DIMENSION_PRECISION, set(candidates))
            visits = self._sum(txn, query, dims.visit_metric(dims.VISITS, dimension))
            bounces = self._sum(txn, query, dims.visit_metric(dims.BOUNCES, dimension))
            durations = self._sum(txn, query, dims.visit_metric(dims.VISIT_DURATION, dimension))
            rows = []
            for value_id in candidates:
                value_visits = visits.get(value_id, 0)
                rows.append(
                    {
                        "value": self._strings.text(value_id, txn),
                        "visitors": visitors.get(value_id, 0),
                        "pageviews": pageviews[value_id],
                        # visit metrics by the visit's entry value (for pages: entry page)
                        "visits": value_visits,
                        "bounce_rate": _rate(bounces.get(value_id, 0), value_visits),
                        "visit_duration": round(durations.get(value_id, 0) / value_visits) if value_visits else 0,
                    }
                )
        rows.sort(key=lambda row: (-row["visitors"], -row["pageviews"], row["value"]))
        top = rows[:limit]
        shown = {row["value"] for row in top}
        rest_pageviews = sum(pageviews.values()) - sum(row["pageviews"] for row in top)
        return {
            "dimension": dimension,
            "results": top,
            "rest": {"values": len(pageviews) - len(shown), "pageviews": rest_pageviews},
        }

    def entry_pages(self, query: Query, limit: int = 10) -> list[dict[str, object]]:
        """Pages visits started on, with visits, bounce rate and visit duration."""
        if query.filters:
            return self.scans.entry_pages(query, limit)
        metric = dims.visit_metric(dims.VISITS, "page")
        with self._read() as txn:
            visits = self._sum(txn, query, metric)
            bounces = self._sum(txn, query, dims.visit_metric(dims.BOUNCES, "page"))
            durations = self._sum(txn, query, dims.visit_metric(dims.VISIT_DURATION, "page"))
            top = sorted((i for i in visits if visits[i] > 0), key=lambda i: -visits[i])[:limit]
            return [
                {
                    "value": self._strings.text(i, txn),
                    "visits": visits[i],
                    "bounce_rate": _rate(bounces.get(i, 0), visits[i]),
                    "visit_duration": round(durations.get(i, 0) / visits[i]),
                }
                for i in top
            ]

    def exit_pages(self, query: Query, limit: int = 10) -> list[dict[str, object]]:
        """Pages visits ended on; exit rate = exits ÷ page views of that page × 100."""
        if query.filters:
            return self.scans.exit_pages(query, limit)
        _, pageview_metric, _ = dims.DIMENSIONS["page"]
        with self._read() as txn:
            exits = self._sum(txn, query, dims.EXIT_PAGES)
            pageviews = self._sum(txn, query, pageview_metric)
            top = sorted((i for i in exits if exits[i] > 0), key=lambda i: -exits[i])[:limit]
            return [
                {
                    "value": self._strings.text(i, txn),
                    "exits": exits[i],
                    "pageviews": pageviews.get(i, 0),
                    "exit_rate": _rate(exits[i], pageviews.get(i, 0)),
                }
                for i in top
            ]

    def time_on_page(self, query: Query, limit: int = 10) -> list[dict[str, object]]:
        """Average foreground seconds and scroll depth per page, from engagement pings."""
        if query.filters:
            return self.scans.time_on_page(query, limit)
        with self._read() as txn:
            engaged = self._sum(txn, query, dims.ENGAGED_MS)
            pings = self._sum(txn, query, dims.ENGAGEMENTS)
            depth = self._sum(txn, query, dims.SCROLL_DEPTH)
            top = sorted(pings, key=lambda i: -pings[i])[:limit]
            return [
                {
                    "value": self._strings.text(i, txn),
                    "engagements": pings[i],
                    "time_on_page": round(engaged.get(i, 0) / pings[i] / 1000, 1) if pings[i] else 0.0,
                    "scroll_depth": round(depth.get(i, 0) / pings[i]) if pings[i] else 0,
                }
                for i in top
            ]

    def custom_events(self, query: Query) -> list[dict[str, object]]:
        if query.filters:
            return self.scans.custom_events(query)
        with self._read() as txn:
            counts = self._sum(txn, query, dims.CUSTOM_EVENTS)
            visitors = self._visitors(txn, query, dims.EVENT_VISITORS, DIMENSION_PRECISION)
            rows = [
                {"name": self._strings.text(i, txn), "events": n, "visitors": visitors.get(i, 0)}
                for i, n in counts.items()
            ]
        return sorted(rows, key=lambda row: (-row["events"], row["name"]))

    def conversions(self, query: Query) -> dict[str, object]:
        if query.filters:
            return self.scans.conversions(query)
        with self._read() as txn:
            site_visitors = self._visitors(txn, query, dims.VISITORS, SITE_PRECISION).get(0, 0)
            counts = self._sum(txn, query, dims.CONVERSIONS)
            converters_by_type = self._sketches.union(
                txn, query.site.id, DAY, dims.CONVERSION_VISITORS, query.first_day, query.last_day,
                DIMENSION_PRECISION,
            )
            revenue = self._sum(txn, query, dims.REVENUE)
            names = {i: self._strings.text(i, txn) for i in counts}
            revenue_names = {i: self._strings.text(i, txn) for i in revenue}
        everyone = Sketch(DIMENSION_PRECISION)
        for sketch in converters_by_type.values():
            everyone.merge(sketch)
        converting = everyone.count()
        revenue_rows: dict[str, dict[str, int]] = {}
        for revenue_id, amount in revenue.items():
            name, _, currency = revenue_names[revenue_id].partition(dims.REVENUE_SEPARATOR)
            revenue_rows.setdefault(name, {})[currency] = amount
        goals = []
        for type_id, count in sorted(counts.items(), key=lambda item: -item[1]):
            name = names[type_id]
            converters = converters_by_type.get(type_id)
            unique = converters.count() if converters else 0
            goals.append(
                {
                    "name": name,
                    "conversions": count,
                    "visitors": unique,
                    "conversion_rate": _rate(unique, site_visitors),
                    "revenue_minor": revenue_rows.get(name, {}),
                }
            )
        return {
            "visitors": site_visitors,
            "total_conversions": sum(counts.values()),
            "converting_visitors": converting,
            "conversion_rate": _rate(converting, site_visitors),
            "goals": goals,
        }

    def current_visitors(self, site: Site, window_seconds: int = 300) -> int:
        cutoff = time.time() - window_seconds
        return len(
            {event.visitor_id for _, event in self._appliance.live.latest(10_000, site.id) if event.timestamp >= cutoff}
        )

    # -- the seed's reports ---------------------------------------------------------------
    def traffic_report(self, query: Query) -> dict[str, object]:
        if query.filters:
            return self.scans.traffic_report(query)
        with self._read() as txn:
            visitors = self._visitors(txn, query, dims.VISITORS, SITE_PRECISION).get(0, 0)
            pageviews = self._sum(txn, query, dims.PAGEVIEWS).get(0, 0)
            _, _, channel_metric = dims.DIMENSIONS["channel"]
            by_channel = self._sketches.union(
                txn, query.site.id, DAY, channel_metric, query.first_day, query.last_day, DIMENSION_PRECISION
            )
            categories = {name: Sketch(DIMENSION_PRECISION) for name in SEED_CATEGORIES}
            for channel_id, sketch in by_channel.items():
                categories[traffic_category(self._strings.text(channel_id, txn))].merge(sketch)
        return {
            "total_visitors": visitors,
            "total_page_views": pageviews,
            "traffic_sources": {name: sketch.count() for name, sketch in categories.items()},
        }

    def conversions_report(self, query: Query) -> dict[str, object]:
        report = self.conversions(query)
        return {
            "total_conversions": report["total_conversions"],
            "conversion_rate": report["conversion_rate"],
            "conversion_types": {goal["name"]: goal["conversions"] for goal in report["goals"]},
        }


def check_day(field: str, day: date) -> date:
    """A day a query may cover, or :class:`QueryError` naming ``field``; call it before doing
    arithmetic on a day from the outside (``date - timedelta`` overflows near year 1)."""
    if not FIRST_DAY <= day <= LAST_DAY:
        raise QueryError(field, f"must be between {FIRST_DAY.isoformat()} and {LAST_DAY.isoformat()}")
    return day


def _year_earlier(day: date) -> date:
    try:
        return day.replace(year=day.year - 1)
    except ValueError:  # 29 February
        return day.replace(year=day.year - 1, day=28)


def change(current: float, previous: float) -> float | None:
    """Percent change from ``previous`` to ``current``; ``None`` when there was nothing before."""
    if not previous:
        return None
    return round(100 * (current - previous) / previous, 1)


def _rate(part: int, whole: int) -> float:
    return round(100 * part / whole, 2) if whole else 0.0
