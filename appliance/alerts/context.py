"""The read-only figures alert checks see: :class:`SiteReadings`, one site at one ``now``.

It implements :class:`appliance.extensions.AlertContext` over the cheap sources only: hour
counters (page views, events) in one settled read, the live ring buffer, the day counters of
goals (:class:`~appliance.query.goal_reports.GoalReports`), and for "the latest event since"
the live buffer first and the stored events of that short window after it (one cursor seek
in the event log).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator
from datetime import date

from appliance import dimensions as dims
from appliance.events.coordinator import WriteCoordinator
from appliance.events.live import LiveBuffer
from appliance.models import Event, Site
from appliance.money import to_major
from appliance.periods import local_today
from appliance.query.goal_reports import GoalReports
from appliance.query.spec import Query
from storage.counters import Counters
from storage.keys import HOUR

METRICS = {"pageviews": dims.PAGEVIEWS, "events": dims.EVENTS_TOTAL}
EventReader = Callable[[Site, float, float], Iterator[tuple[bytes, Event]]]


class SiteReadings:
    def __init__(
        self, *, site: Site, now: float, counters: Counters, coordinator: WriteCoordinator, live: LiveBuffer,
        goal_reports: GoalReports, events: EventReader,
    ) -> None:
        self._site = site
        self.site = site.domain
        self.timezone = site.timezone
        self.now = now
        self._counters = counters
        self._coordinator = coordinator
        self._live = live
        self._goal_reports = goal_reports
        self._events = events

    def hourly(self, metric: str, first_hour: int, last_hour: int) -> dict[int, int]:
        with self._coordinator.settled() as txn:
            rows = self._counters.scan(txn, self._site.id, HOUR, METRICS[metric], first_hour, last_hour)
            return {hour: value for hour, dimension, value in rows if dimension == 0}

    def _recent(self) -> list[Event]:
        return [event for _, event in self._live.latest(100_000, self._site.id)]

    def last_event_at(self, since: float) -> float | None:
        seen = [event.timestamp for event in self._recent() if since <= event.timestamp <= self.now]
        if seen:
            return max(seen)
        stored = list(itertools.islice(self._events(self._site, since, self.now + 1), 1))
        return stored[0][1].timestamp if stored else None

    def live_visitors(self, window_seconds: int) -> int:
        start = self.now - window_seconds
        return len({event.visitor_id for event in self._recent() if start <= event.timestamp <= self.now})

    def goal_totals(self, goal: str, first_day: date, last_day: date) -> tuple[int, dict[str, float]]:
        rows = self._goal_reports.report(Query(site=self._site, date_from=first_day, date_to=last_day))
        for row in rows:
            if row["name"] == goal:
                revenue = {code: to_major(money["total_minor"], code) for code, money in row["revenue"].items()}
                return row["conversions"], revenue
        raise LookupError(goal)

    def today(self) -> date:
        return local_today(self.timezone, self.now)
