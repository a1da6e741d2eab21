"""The counted path: unfiltered reports read from pre-aggregated counters and sketches.

Page views are sums of day (or hour) counters; visitors are *unions* of sketches over the
range, never sums of daily uniques. A range is read through the week and month rollups
(:mod:`storage.rollups`): whole months and weeks from one bucket each, days at the edges. Every function here has a twin of the same shape on the
filtered path (:mod:`appliance.query.scans`); :mod:`appliance.query.stats` chooses between
them.
"""

from __future__ import annotations

from datetime import UTC, date, datetime

from appliance import dimensions as dims
from appliance.channels import SEED_CATEGORIES, traffic_category
from appliance.events.coordinator import WriteCoordinator
from appliance.periods import day_from_number, month_start, week_start, zone
from appliance.query.estimates import ESTIMATES_KEPT, Estimates
from appliance.query.imported import ImportedData, merge_breakdown
from appliance.query.imported import M as IM
from appliance.query.spec import Query, QueryError
from storage.counters import Counters
from storage.keys import DAY, HOUR
from storage.sketches import DIMENSION_PRECISION, SITE_PRECISION, Sketch, Sketches
from storage.strings import StringTable


class CountedReports:
    """The unfiltered reports, from counters and sketches (the fast path)."""

    def __init__(
        self, *, counters: Counters, sketches: Sketches, strings: StringTable, coordinator: WriteCoordinator,
        imported: ImportedData | None = None, estimates_kept: int = ESTIMATES_KEPT,
    ) -> None:
        self._imported = imported
        self._counters = counters
        self._sketches = sketches
        self._strings = strings
        self._coordinator = coordinator
        self.use_rollups = True  # False reads every day (the benchmark's before/after)
        self.estimates = Estimates(estimates_kept)  # a HyperLogLog's count, by its registers

    def _read(self):
        """A read transaction that sees every acknowledged event aggregated."""
        return self._coordinator.settled()

    def site_visitors(self, txn, query: Query) -> int:
        """Unique visitors of the site over the query's days (a union of day sketches)."""
        return self._visitors(txn, query, dims.VISITORS, SITE_PRECISION).get(0, 0)

    # -- helpers --------------------------------------------------------------------------
    def _sum(self, txn, query: Query, metric: int) -> dict[int, int]:
        return self._counters.sum_days(txn, query.site.id, metric, query.first_day, query.last_day, self.use_rollups)

    def _sum_of(self, txn, query: Query, metric: int, dimensions) -> dict[int, int]:  # of these only
        counters, first, last = self._counters, query.first_day, query.last_day
        return counters.sum_days_of(txn, query.site.id, metric, first, last, dimensions, self.use_rollups)

    def _union(self, txn, query: Query, metric: int, precision: int, dimensions=None) -> dict[int, Sketch]:
        return self._sketches.union_days(
            txn, query.site.id, metric, query.first_day, query.last_day, precision, dimensions, self.use_rollups
        )

    def _by_text(self, txn, numbers: dict[int, int]) -> dict[str, int]:
        out: dict[str, int] = {}
        for value_id, number in numbers.items():
            text = self._strings.text(value_id, txn)
            out[text] = out.get(text, 0) + number
        return out

    def _visitors(self, txn, query: Query, metric: int, precision: int, dimensions=None) -> dict[int, int]:
        merged = self._union(txn, query, metric, precision, dimensions)
        return {dimension: self.estimates.count(sketch) for dimension, sketch in merged.items()}

    # -- the vocabulary -------------------------------------------------------------------
    def aggregate(self, query: Query) -> dict[str, int]:
        with self._read() as txn:
            visitors = self._visitors(txn, query, dims.VISITORS, SITE_PRECISION).get(0, 0)
            pageviews = self._sum(txn, query, dims.PAGEVIEWS).get(0, 0)
            events = sum(self._sum(txn, query, dims.CUSTOM_EVENTS).values())
            conversions = sum(self._sum(txn, query, dims.CONVERSIONS).values())
            converters = self._visitors(txn, query, dims.CONVERSION_VISITORS, DIMENSION_PRECISION)
            visits = self._sum(txn, query, dims.VISITS).get(0, 0)
            bounces = self._sum(txn, query, dims.BOUNCES).get(0, 0)
            duration = self._sum(txn, query, dims.VISIT_DURATION).get(0, 0)
            extra = self._imported.totals(txn, query) if self._imported is not None else None
        if extra is not None:  # imported days: their figures added, visitors summed
            visitors += extra["visitors"]
            visits += extra["visits"]
            pageviews += extra["pageviews"]
            bounces += extra["bounces"]
            duration += extra["visit_duration"]
            events += extra["events"]
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

    def timeseries(self, query: Query, visit_metrics: bool = False) -> list[dict[str, object]]:
        """Visitors, page views and visits per bucket; with ``visit_metrics`` also the bounce
        rate, visit duration, custom events and conversions, as :meth:`aggregate` of the bucket's
        days answers them (an hour has events only: visits are counted per day)."""
        if query.interval == "hour":
            with self._read() as txn:
                series = self._hourly(txn, query)
            return series if visit_metrics else [_without(point, "events", "conversions") for point in series]
        groups: dict[date, list[int]] = {}
        for number in range(query.first_day, query.last_day + 1):
            day = day_from_number(number)
            start = {"day": day, "week": week_start(day), "month": month_start(day)}[query.interval]
            groups.setdefault(start, []).append(number)
        with self._read() as txn:
            extra = self._imported.by_day(txn, query) if self._imported is not None else None
            series = self._series(txn, query, groups)
        if extra:  # imported days: their figures added to their point
            for point, numbers in zip(series, groups.values(), strict=True):
                for number in numbers:
                    metrics = extra.get(number)
                    if metrics is not None:
                        for name in ("visitors", "visits", "pageviews", "bounces", "visit_duration", "events"):
                            point[name] += metrics[IM[name]]
        if not visit_metrics:
            return [_without(point, "bounces", "visit_duration", "events", "conversions") for point in series]
        return [_rated(point) for point in series]

    def _series(self, txn, query: Query, groups: dict[date, list[int]]) -> list[dict[str, object]]:
        if query.interval != "day":  # a whole week or month is one rollup bucket
            return [self._point(txn, query.site.id, start, numbers[0], numbers[-1]) for start, numbers in groups.items()]
        pageviews, visits, bounces, duration, events, conversions = (
            self._per_day(txn, query, metric)
            for metric in (dims.PAGEVIEWS, dims.VISITS, dims.BOUNCES, dims.VISIT_DURATION, dims.CUSTOM_EVENTS, dims.CONVERSIONS)
        )
        sketches: dict[int, int] = {}
        for day, _, raw in self._sketches.scan(txn, query.site.id, DAY, dims.VISITORS, query.first_day, query.last_day):
            sketches[day] = self._sketches.count_stored(raw)
        return [
            {
                "date": start.isoformat(),
                "visitors": sketches.get(number, 0),
                "pageviews": pageviews.get(number, 0),
                "visits": visits.get(number, 0),
                "bounces": bounces.get(number, 0),
                "visit_duration": duration.get(number, 0),
                "events": events.get(number, 0),
                "conversions": conversions.get(number, 0),
            }
            for start, (number,) in groups.items()
        ]

    def _per_day(self, txn, query: Query, metric: int) -> dict[int, int]:
        """``{day: total over dimensions}`` of one counter over the query's days."""
        out: dict[int, int] = {}
        for day, _, value in self._counters.scan(txn, query.site.id, DAY, metric, query.first_day, query.last_day):
            out[day] = out.get(day, 0) + value
        return out

    def _point(self, txn, site: int, start: date, first: int, last: int) -> dict[str, object]:
        rollups = self.use_rollups
        visitors = self._sketches.union_days(txn, site, dims.VISITORS, first, last, SITE_PRECISION, None, rollups)

        def total(metric: int) -> int:
            return sum(v for _, v in self._counters.scan_days(txn, site, metric, first, last, rollups))

        return {
            "date": start.isoformat(),
            "visitors": self.estimates.count(visitors[0]) if 0 in visitors else 0,
            "pageviews": total(dims.PAGEVIEWS),
            "visits": total(dims.VISITS),
            "bounces": total(dims.BOUNCES),
            "visit_duration": total(dims.VISIT_DURATION),
            "events": total(dims.CUSTOM_EVENTS),
            "conversions": total(dims.CONVERSIONS),
        }

    def _hourly(self, txn, query: Query) -> list[dict[str, object]]:
        first, last = query.hour_range()
        pageviews = {
            hour: value
            for hour, _, value in self._counters.scan(txn, query.site.id, HOUR, dims.PAGEVIEWS, first, last)
        }
        visitors = {
            hour: self._sketches.count_stored(raw)
            for hour, _, raw in self._sketches.scan(txn, query.site.id, HOUR, dims.VISITORS, first, last)
        }
        events: dict[int, int] = {}
        for hour, _, value in self._counters.scan(txn, query.site.id, HOUR, dims.CUSTOM_EVENTS, first, last):
            events[hour] = events.get(hour, 0) + value
        conversions: dict[int, int] = {}
        for hour, _, value in self._counters.scan(txn, query.site.id, HOUR, dims.CONVERSIONS, first, last):
            conversions[hour] = conversions.get(hour, 0) + value
        tz = zone(query.site.timezone)
        return [
            {
                "date": datetime.fromtimestamp(hour * 3600, UTC).astimezone(tz).isoformat(),
                "visitors": visitors.get(hour, 0),
                "pageviews": pageviews.get(hour, 0),
                "events": events.get(hour, 0),
                "conversions": conversions.get(hour, 0),
            }
            for hour in range(first, last + 1)
        ]

    def breakdown(self, query: Query, dimension: str, limit: int = 10) -> dict[str, object]:
        """Top ``limit`` values of a dimension by visitors, with page views; plus the rest."""
        if dimension not in dims.DIMENSIONS:
            raise QueryError("property", f"unknown dimension {dimension!r}")
        _, counter_metric, sketch_metric = dims.DIMENSIONS[dimension]
        with self._read() as txn:
            pageviews = self._sum(txn, query, counter_metric)
            # Visitors are unions of 30 daily sketches per value: compute them only for the
            # values with the most page views (twice the rows shown), which hold the top rows.
            candidates = sorted(pageviews, key=pageviews.get, reverse=True)[: max(limit * 2, 20)]
            extra = self._imported.breakdown(txn, query, dimension) if self._imported is not None else None
            if extra:  # and the native side of the top imported values
                top_imported = sorted(extra, key=lambda value: -extra[value]["visitors"])[: max(limit * 2, 20)]
                known = {self._strings.lookup(value, txn) for value in top_imported}
                candidates += [value_id for value_id in known - set(candidates) if value_id in pageviews]
            visitors = self._visitors(txn, query, sketch_metric, DIMENSION_PRECISION, set(candidates))
            # the visit metrics of the candidates: point reads where they are few among many
            # values (the pages), not a scan of every value
            few = len(pageviews) > 4 * len(candidates)
            visits, bounces, durations = (
                self._sum_of(txn, query, dims.visit_metric(metric, dimension), candidates)
                if few
                else self._sum(txn, query, dims.visit_metric(metric, dimension))
                for metric in (dims.VISITS, dims.BOUNCES, dims.VISIT_DURATION)
            )
            rows = []
            raw: dict[str, tuple[int, int]] = {}
            for value_id in candidates:
                value_visits = visits.get(value_id, 0)
                if extra:
                    raw[self._strings.text(value_id, txn)] = (bounces.get(value_id, 0), durations.get(value_id, 0))
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
        values = len(pageviews)
        total_pageviews = sum(pageviews.values())
        if extra:
            values += merge_breakdown(rows, raw, extra)
            total_pageviews += sum(row["pageviews"] for row in extra.values())
        rows.sort(key=lambda row: (-row["visitors"], -row["pageviews"], row["value"]))
        top = rows[:limit]
        shown = {row["value"] for row in top}
        rest_pageviews = total_pageviews - sum(row["pageviews"] for row in top)
        return {
            "dimension": dimension,
            "results": top,
            "rest": {"values": values - len(shown), "pageviews": rest_pageviews},
        }

    def entry_pages(self, query: Query, limit: int = 10) -> list[dict[str, object]]:
        """Pages visits started on, with visits, bounce rate and visit duration."""
        metric = dims.visit_metric(dims.VISITS, "page")
        with self._read() as txn:
            visits = self._sum(txn, query, metric)
            bounces = self._sum(txn, query, dims.visit_metric(dims.BOUNCES, "page"))
            durations = self._sum(txn, query, dims.visit_metric(dims.VISIT_DURATION, "page"))
            extra = self._imported.by_value(txn, query, "entry_pages", "entry_pages") if self._imported else None
            if extra:  # imported days: every value by its text, the imported figures added
                visits, bounces, durations = (self._by_text(txn, d) for d in (visits, bounces, durations))
                for value, m in extra.items():
                    visits[value] = visits.get(value, 0) + m[IM["entrances"]]
                    bounces[value] = bounces.get(value, 0) + m[IM["bounces"]]
                    durations[value] = durations.get(value, 0) + m[IM["visit_duration"]]
            top = sorted((i for i in visits if visits[i] > 0), key=lambda i: -visits[i])[:limit]
            return [
                {
                    "value": i if extra else self._strings.text(i, txn),
                    "visits": visits[i],
                    "bounce_rate": _rate(bounces.get(i, 0), visits[i]),
                    "visit_duration": round(durations.get(i, 0) / visits[i]),
                }
                for i in top
            ]

    def exit_pages(self, query: Query, limit: int = 10) -> list[dict[str, object]]:
        """Pages visits ended on; exit rate = exits ÷ page views of that page × 100."""
        _, pageview_metric, _ = dims.DIMENSIONS["page"]
        with self._read() as txn:
            exits = self._sum(txn, query, dims.EXIT_PAGES)
            pageviews = self._sum(txn, query, pageview_metric)
            extra = self._imported.by_value(txn, query, "exit_pages", "exit_pages") if self._imported else None
            if extra:  # imported days: every value by its text, the imported figures added
                exits, pageviews = self._by_text(txn, exits), self._by_text(txn, pageviews)
                for value, m in extra.items():
                    exits[value] = exits.get(value, 0) + m[IM["exits"]]
                for value, m in self._imported.by_value(txn, query, "exit_pages", "pages").items():
                    pageviews[value] = pageviews.get(value, 0) + m[IM["pageviews"]]
            top = sorted((i for i in exits if exits[i] > 0), key=lambda i: -exits[i])[:limit]
            return [
                {
                    "value": i if extra else self._strings.text(i, txn),
                    "exits": exits[i],
                    "pageviews": pageviews.get(i, 0),
                    "exit_rate": _rate(exits[i], pageviews.get(i, 0)),
                }
                for i in top
            ]

    def time_on_page(self, query: Query, limit: int = 10) -> list[dict[str, object]]:
        """Average foreground seconds and scroll depth per page, from engagement pings."""
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
        with self._read() as txn:
            counts = self._sum(txn, query, dims.CUSTOM_EVENTS)
            visitors = self._visitors(txn, query, dims.EVENT_VISITORS, DIMENSION_PRECISION)
            rows = [
                {"name": self._strings.text(i, txn), "events": n, "visitors": visitors.get(i, 0)}
                for i, n in counts.items()
            ]
            extra = self._imported.by_value(txn, query, "custom_events", "custom_events") if self._imported else None
        if extra:  # imported days: their counts added, by name
            by_name = {row["name"]: row for row in rows}
            for name, m in extra.items():
                row = by_name.get(name)
                if row is None:
                    row = by_name[name] = {"name": name, "events": 0, "visitors": 0}
                    rows.append(row)
                row["events"] += m[IM["events"]]
                row["visitors"] += m[IM["visitors"]]
        return sorted(rows, key=lambda row: (-row["events"], row["name"]))

    def conversions(self, query: Query) -> dict[str, object]:
        with self._read() as txn:
            site_visitors = self._visitors(txn, query, dims.VISITORS, SITE_PRECISION).get(0, 0)
            counts = self._sum(txn, query, dims.CONVERSIONS)
            converters_by_type = self._union(txn, query, dims.CONVERSION_VISITORS, DIMENSION_PRECISION)
            revenue = self._sum(txn, query, dims.REVENUE)
            names = {i: self._strings.text(i, txn) for i in counts}
            revenue_names = {i: self._strings.text(i, txn) for i in revenue}
        everyone = Sketch(DIMENSION_PRECISION)
        for sketch in converters_by_type.values():
            everyone.merge(sketch)
        converting = self.estimates.count(everyone)
        revenue_rows: dict[str, dict[str, int]] = {}
        for revenue_id, amount in revenue.items():
            name, _, currency = revenue_names[revenue_id].partition(dims.REVENUE_SEPARATOR)
            revenue_rows.setdefault(name, {})[currency] = amount
        goals = []
        for type_id, count in sorted(counts.items(), key=lambda item: -item[1]):
            name = names[type_id]
            converters = converters_by_type.get(type_id)
            unique = self.estimates.count(converters) if converters else 0
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

    # -- the seed's reports ---------------------------------------------------------------
    def traffic_report(self, query: Query) -> dict[str, object]:
        with self._read() as txn:
            visitors = self._visitors(txn, query, dims.VISITORS, SITE_PRECISION).get(0, 0)
            pageviews = self._sum(txn, query, dims.PAGEVIEWS).get(0, 0)
            _, _, channel_metric = dims.DIMENSIONS["channel"]
            by_channel = self._union(txn, query, channel_metric, DIMENSION_PRECISION)
            categories = {name: Sketch(DIMENSION_PRECISION) for name in SEED_CATEGORIES}
            for channel_id, sketch in by_channel.items():
                categories[traffic_category(self._strings.text(channel_id, txn))].merge(sketch)
            extra = self._imported.totals(txn, query) if self._imported is not None else None
        if extra is not None:  # imported days: their totals (they hold no channels)
            visitors += extra["visitors"]
            pageviews += extra["pageviews"]
        return {
            "total_visitors": visitors,
            "total_page_views": pageviews,
            "traffic_sources": {name: self.estimates.count(sketch) for name, sketch in categories.items()},
        }


def change(current: float, previous: float) -> float | None:
    """Percent change from ``previous`` to ``current``; ``None`` when there was nothing before."""
    if not previous:
        return None
    return round(100 * (current - previous) / previous, 1)


def _without(point: dict[str, object], *names: str) -> dict[str, object]:
    for name in names:
        del point[name]
    return point


def _rated(point: dict[str, object]) -> dict[str, object]:
    """A series point with its summed bounces and visit seconds as the aggregate's bounce
    rate and average visit duration."""
    visits, bounces, duration = int(point["visits"]), int(point.pop("bounces")), int(point.pop("visit_duration"))  # type: ignore[call-overload]
    point["bounce_rate"] = _rate(bounces, visits)
    point["visit_duration"] = round(duration / visits) if visits else 0
    point["events"] = point.pop("events")  # after the rates, as in the aggregate
    return point


def _rate(part: int, whole: int) -> float:
    return round(100 * part / whole, 2) if whole else 0.0
