"""A deliberately naive reference for filtered queries: plain Python over decoded events.

It reads the site's events with ``Appliance.read_events`` (the MessagePack log, not the
column blocks) and applies the documented semantics one event at a time, so the property
tests can check the numpy engine against something that shares none of its code. The log
keeps each event as it was sent; the visit properties (source, channel, referrer, UTM tags)
are taken here from each visit's first event, as the README's glossary defines them.
"""

from __future__ import annotations

import fnmatch  # noqa: F401 - kept for readers comparing with wildcard semantics
import re
from collections import defaultdict
from datetime import UTC, datetime, timedelta

from appliance import dimensions as dims
from appliance.channels import SEED_CATEGORIES, traffic_category
from appliance.filters import EVENT_DIMENSIONS
from appliance.models import EventKind
from appliance.periods import day_start_timestamp, month_start, week_start, zone


def _matches(pattern: str, text: str) -> bool:
    regex = "".join(".*" if c == "*" else re.escape(c) for c in re.split(r"(\*)", pattern))
    return re.fullmatch(regex, text, re.S) is not None


def positive(operator: str, values, text: str) -> bool:
    if operator == "is":
        return text in values
    if operator == "contains":
        return any(v in text for v in values)
    return any(_matches(v, text) for v in values)


def goal_done(goal, event) -> bool:
    if goal.kind == "page":
        return event.kind is EventKind.PAGEVIEW and _matches(goal.page, event.path)
    kind = EventKind.CUSTOM if goal.kind == "event" else EventKind.CONVERSION
    if event.kind is not kind or event.name != goal.event:
        return False
    return not goal.prop_key or event.props.get(goal.prop_key) == goal.prop_value


class Visit:
    def __init__(self, events):
        self.events = events
        self.visitor = events[0].visitor_id
        self.start = events[0].ms
        self.end = events[-1].ms
        views = [e for e in events if e.kind is EventKind.PAGEVIEW]
        self.pageviews = len(views)
        self.interactive = any(e.kind is not EventKind.PAGEVIEW for e in events)
        self.bounce = self.pageviews == 1 and not self.interactive
        self.duration_ms = self.end - self.start
        # the first / last page view's page; without page views, the first / last event's
        self.entry_page = views[0].path if views else events[0].path
        self.exit_page = views[-1].path if views else events[-1].path
        self.first = events[0]


# Visit properties: where the visit came from, read from its first event for every event of
# the visit (dimension -> Event field). Written out here, not imported from the engine.
VISIT_PROPERTIES = {
    "source": "source",
    "channel": "channel",
    "referrer": "referrer_host",
    "utm_source": "utm_source",
    "utm_medium": "utm_medium",
    "utm_campaign": "utm_campaign",
    "utm_term": "utm_term",
    "utm_content": "utm_content",
}


def visit_level(f) -> bool:
    return f.dimension in ("entry_page", "exit_page", "segment") or f.dimension in VISIT_PROPERTIES


class Row:
    """An event with its integer millisecond timestamp (as the log key stores it)."""

    def __init__(self, event, ms):
        self.__dict__.update({f: getattr(event, f) for f in event.__struct_fields__})
        self.ms = ms


def sessionise(rows, timeout_ms):
    by_visitor = defaultdict(list)
    for row in rows:
        if row.kind is not EventKind.ENGAGEMENT:
            by_visitor[row.visitor_id].append(row)
    visits = []
    for events in by_visitor.values():
        current = []
        hint = ""
        for event in events:
            new = not current or event.ms - current[-1].ms > timeout_ms or (
                event.session_hint and hint and event.session_hint != hint
            )
            if new:
                if current:
                    visits.append(Visit(current))
                current = [event]
                hint = event.session_hint
            else:
                current.append(event)
        if current:
            visits.append(Visit(current))
    return visits


class Reference:
    def __init__(self, appliance, site, date_from, date_to, filters, goals=()):
        self.site = site
        self.date_from, self.date_to = date_from, date_to
        start = day_start_timestamp(date_from, site.timezone)
        end = day_start_timestamp(date_to + timedelta(days=1), site.timezone)
        self.rows = [Row(e, round(e.timestamp * 1000)) for e in appliance.read_events(site, start - 1, end + 1)]
        self.rows = [r for r in self.rows if start * 1000 <= r.ms < end * 1000]
        timeout = appliance.settings.sites.visit_timeout_minutes * 60_000
        self.visits = sessionise(self.rows, timeout)
        self.visit_of = visit_of = {}
        for visit in self.visits:
            for event in visit.events:
                visit_of[id(event)] = visit
        self.goals = list(goals)
        kept_visits = set()
        for visit in self.visits:
            if all(self._visit_ok(f, visit) for f in filters if visit_level(f)):
                kept_visits.add(id(visit))
        kept_visitors = {v.visitor for v in self.visits if id(v) in kept_visits}
        has_visit_filters = any(visit_level(f) for f in filters)
        self.matching = []
        for row in self.rows:
            if not all(self._event_ok(f, row) for f in filters if not visit_level(f)):
                continue
            if has_visit_filters:
                visit = visit_of.get(id(row))
                if visit is None:
                    if row.visitor_id not in kept_visitors:
                        continue
                elif id(visit) not in kept_visits:
                    continue
            self.matching.append(row)
        matched_ids = {id(r) for r in self.matching}
        self.matched_visits = [v for v in self.visits if any(id(e) in matched_ids for e in v.events)]

    def _event_ok(self, f, row) -> bool:
        if f.dimension == "goal":
            hit = any(positive(f.positive, f.values, g.name) and goal_done(g, row) for g in self.goals)
        elif f.prop_key is not None:
            hit = f.prop_key in row.props and positive(f.positive, f.values, row.props[f.prop_key])
        else:
            hit = positive(f.positive, f.values, getattr(row, EVENT_DIMENSIONS[f.dimension]))
        return not hit if f.negated else hit

    def _visit_ok(self, f, visit) -> bool:
        if f.dimension in VISIT_PROPERTIES:
            text = getattr(visit.first, VISIT_PROPERTIES[f.dimension])
        else:
            text = visit.entry_page if f.dimension == "entry_page" else visit.exit_page
        hit = positive(f.positive, f.values, text)
        return not hit if f.negated else hit

    def value(self, row, field):
        """A field of an event; a visit property is its visit's (the visit's first event's)."""
        visit = self.visit_of.get(id(row))
        if visit is not None and field in VISIT_PROPERTIES.values():
            return getattr(visit.first, field)
        return getattr(row, field)

    # -- reports --------------------------------------------------------------------------
    def active(self):
        return [r for r in self.matching if r.kind is not EventKind.ENGAGEMENT]

    def aggregate(self):
        visits = self.matched_visits
        pageviews = sum(r.kind is EventKind.PAGEVIEW for r in self.matching)
        n = len(visits)
        conversions = [r for r in self.matching if r.kind is EventKind.CONVERSION]
        return {
            "visitors": len({r.visitor_id for r in self.active()}),
            "visits": n,
            "pageviews": pageviews,
            "views_per_visit": round(pageviews / n, 2) if n else 0.0,
            "bounce_rate": round(100 * sum(v.bounce for v in visits) / n, 2) if n else 0.0,
            "visit_duration": round(sum(v.duration_ms for v in visits) / 1000 / n) if n else 0,
            "events": sum(r.kind is EventKind.CUSTOM for r in self.matching),
            "conversions": len(conversions),
            "converting_visitors_by_type": {
                name: len({r.visitor_id for r in conversions if r.name == name}) for name in {r.name for r in conversions}
            },
        }

    def local_day(self, ms):
        return datetime.fromtimestamp(ms / 1000, UTC).astimezone(zone(self.site.timezone)).date()

    def timeseries(self, interval):
        group = {"day": lambda d: d, "week": week_start, "month": month_start}[interval]
        labels = []
        day = self.date_from
        while day <= self.date_to:
            if group(day) not in labels:
                labels.append(group(day))
            day += timedelta(days=1)
        visitors, views, visits = defaultdict(set), defaultdict(int), defaultdict(int)
        for r in self.active():
            visitors[group(self.local_day(r.ms))].add(r.visitor_id)
        for r in self.matching:
            if r.kind is EventKind.PAGEVIEW:
                views[group(self.local_day(r.ms))] += 1
        for v in self.matched_visits:
            visits[group(self.local_day(v.start))] += 1
        return [
            {"date": label.isoformat(), "visitors": len(visitors[label]), "pageviews": views[label], "visits": visits[label]}
            for label in labels
        ]

    def breakdown(self, dimension, limit):
        field = dims.DIMENSIONS[dimension][0]
        views, visitors = defaultdict(int), defaultdict(set)
        for r in self.matching:
            if r.kind is not EventKind.PAGEVIEW:
                continue
            value = self.value(r, field)
            if not value and dimension not in dims.COUNT_EMPTY:
                continue
            views[value] += 1
            visitors[value].add(r.visitor_id)
        visit_stats = defaultdict(lambda: [0, 0, 0])
        for v in self.matched_visits:
            value = v.entry_page if dimension == "page" else getattr(v.first, field)
            if value:
                stats = visit_stats[value]
                stats[0] += 1
                stats[1] += v.bounce
                stats[2] += v.duration_ms
        rows = []
        for value, count in views.items():
            n, bounces, duration = visit_stats.get(value, (0, 0, 0))
            rows.append(
                {
                    "value": value,
                    "visitors": len(visitors[value]),
                    "pageviews": count,
                    "visits": n,
                    "bounce_rate": round(100 * bounces / n, 2) if n else 0.0,
                    "visit_duration": round(duration / 1000 / n) if n else 0,
                }
            )
        rows.sort(key=lambda row: (-row["visitors"], -row["pageviews"], row["value"]))
        top = rows[:limit]
        return {
            "dimension": dimension,
            "results": top,
            "rest": {"values": len(rows) - len(top), "pageviews": sum(views.values()) - sum(r["pageviews"] for r in top)},
        }

    def entry_exit(self):
        entries, exits = defaultdict(list), defaultdict(int)
        for v in self.matched_visits:
            if v.entry_page:
                entries[v.entry_page].append(v)
            if v.exit_page:
                exits[v.exit_page] += 1
        views = defaultdict(int)
        for r in self.matching:
            if r.kind is EventKind.PAGEVIEW:
                views[r.path] += 1
        entry_rows = {
            page: {
                "value": page,
                "visits": len(vs),
                "bounce_rate": round(100 * sum(v.bounce for v in vs) / len(vs), 2),
                "visit_duration": round(sum(v.duration_ms for v in vs) / 1000 / len(vs)),
            }
            for page, vs in entries.items()
        }
        exit_rows = {
            page: {
                "value": page,
                "exits": n,
                "pageviews": views[page],
                "exit_rate": round(100 * n / views[page], 2) if views[page] else 0.0,
            }
            for page, n in exits.items()
        }
        return entry_rows, exit_rows

    def custom_events(self):
        counts, visitors = defaultdict(int), defaultdict(set)
        for r in self.matching:
            if r.kind is EventKind.CUSTOM:
                counts[r.name] += 1
                visitors[r.name].add(r.visitor_id)
        rows = [{"name": n, "events": c, "visitors": len(visitors[n])} for n, c in counts.items()]
        return sorted(rows, key=lambda row: (-row["events"], row["name"]))

    def conversions(self):
        site_visitors = len({r.visitor_id for r in self.active()})
        rows = [r for r in self.matching if r.kind is EventKind.CONVERSION]
        counts, visitors, revenue = defaultdict(int), defaultdict(set), defaultdict(dict)
        for r in rows:
            counts[r.name] += 1
            visitors[r.name].add(r.visitor_id)
            if r.revenue:
                revenue[r.name][r.currency] = revenue[r.name].get(r.currency, 0) + r.revenue
        goals = [
            {
                "name": name,
                "conversions": n,
                "visitors": len(visitors[name]),
                "conversion_rate": round(100 * len(visitors[name]) / site_visitors, 2) if site_visitors else 0.0,
                "revenue_minor": revenue.get(name, {}),
            }
            for name, n in sorted(counts.items(), key=lambda item: (-item[1], item[0]))
        ]
        converting = len({r.visitor_id for r in rows})
        return {
            "visitors": site_visitors,
            "total_conversions": len(rows),
            "converting_visitors": converting,
            "conversion_rate": round(100 * converting / site_visitors, 2) if site_visitors else 0.0,
            "goals": goals,
        }

    def traffic(self):
        categories = defaultdict(set)
        for r in self.matching:
            if r.kind is EventKind.PAGEVIEW and self.value(r, "channel"):
                categories[traffic_category(self.value(r, "channel"))].add(r.visitor_id)
        return {
            "total_visitors": len({r.visitor_id for r in self.active()}),
            "total_page_views": sum(r.kind is EventKind.PAGEVIEW for r in self.matching),
            "traffic_sources": {name: len(categories[name]) for name in SEED_CATEGORIES},
        }
