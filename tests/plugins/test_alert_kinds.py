"""The built-in alert kinds, each against a small in-memory AlertContext (the protocol a
check reads; the real one, over counters and the live buffer, is tested in
tests/appliance/test_alert_checker.py)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date

import pytest

from appliance.alerts.rules import checked_parameters
from appliance.errors import DomainError
from plugins.alert_kinds import KINDS

NOW = 1_772_380_800.0 + 30 * 60  # 2026-03-01 16:30 UTC
HOUR = int(NOW // 3600)
KIND = {kind.name: kind for kind in KINDS}


@dataclass
class Figures:
    """An AlertContext with chosen numbers."""

    site: str = "alerts.example"
    timezone: str = "UTC"
    now: float = NOW
    pageviews: dict[int, int] = field(default_factory=dict)
    events: dict[int, int] = field(default_factory=dict)
    event_times: list[float] = field(default_factory=list)
    visitors: dict[str, float] = field(default_factory=dict)  # visitor -> last seen
    goals: dict[str, tuple[int, dict[str, float]]] = field(default_factory=dict)
    asked_days: list[tuple[date, date]] = field(default_factory=list)

    def hourly(self, metric, first_hour, last_hour):
        source = {"pageviews": self.pageviews, "events": self.events}[metric]
        return {hour: count for hour, count in source.items() if first_hour <= hour <= last_hour}

    def last_event_at(self, since):
        seen = [moment for moment in self.event_times if since <= moment <= self.now]
        return max(seen) if seen else None

    def live_visitors(self, window_seconds):
        return sum(1 for moment in self.visitors.values() if self.now - window_seconds <= moment <= self.now)

    def goal_totals(self, goal, first_day, last_day):
        self.asked_days.append((first_day, last_day))
        if goal not in self.goals:
            raise LookupError(goal)
        return self.goals[goal]

    def today(self):
        return date(2026, 3, 1)


def check(kind: str, figures: Figures, **parameters):
    return KIND[kind].check(figures, checked_parameters(KIND[kind], parameters))


def weeks_of(hour: int, counts: list[int]) -> dict[int, int]:
    return {hour - 168 * (week + 1): count for week, count in enumerate(counts)}


def test_traffic_spike_and_drop_against_the_same_hour_of_previous_weeks():
    last = HOUR - 1  # the last complete hour
    usual = weeks_of(last, [40, 50, 60, 50])  # mean 50
    spike = check("traffic_change", Figures(pageviews={**usual, last: 150}), direction="spike", factor=3)
    assert spike.firing and "150 page views" in spike.message and "mean of 50.0" in spike.message
    assert not check("traffic_change", Figures(pageviews={**usual, last: 149}), direction="spike", factor=3).firing
    # the same hour of *previous weeks*, not yesterday: a busy day before does not count
    assert check("traffic_change", Figures(pageviews={last - 24: 500, last: 150}), factor=3).firing
    drop = check("traffic_change", Figures(pageviews={**usual, last: 16}), direction="drop", factor=3)
    assert drop.firing and "drop" in drop.message
    assert not check("traffic_change", Figures(pageviews={**usual, last: 17}), direction="drop", factor=3).firing
    # direction filters; "either" takes both
    assert not check("traffic_change", Figures(pageviews={**usual, last: 16}), direction="spike").firing
    assert check("traffic_change", Figures(pageviews={**usual, last: 16}), direction="either").firing


def test_traffic_change_needs_a_minimum_volume():
    last = HOUR - 1
    quiet = weeks_of(last, [2, 2, 2, 2])
    assert not check("traffic_change", Figures(pageviews={**quiet, last: 12}), min_pageviews=20).firing
    assert not check("traffic_change", Figures(pageviews={**quiet, last: 0}), min_pageviews=20).firing
    assert check("traffic_change", Figures(pageviews={**quiet, last: 20}), min_pageviews=20).firing


def test_no_events_fires_only_when_the_site_normally_has_traffic():
    busy = weeks_of(HOUR, [30, 30, 30, 30])
    silent = check("no_events", Figures(events=busy, event_times=[NOW - 31 * 60]), minutes=30)
    assert silent.firing and "no events for 30 minutes" in silent.message
    alive = check("no_events", Figures(events=busy, event_times=[NOW - 29 * 60]), minutes=30)
    assert not alive.firing and "arriving" in alive.message
    quiet = weeks_of(HOUR, [1, 0, 2, 1])
    assert not check("no_events", Figures(events=quiet), minutes=30, normal_hourly_events=5).firing


def test_goal_conversions_and_revenue_against_a_threshold():
    figures = Figures(goals={"Signup": (4, {}), "Purchase": (3, {"EUR": 250.5})})
    low = check("goal_threshold", figures, goal="Signup", comparison="below", threshold=5, period="yesterday")
    assert low.firing and "4 conversions" in low.message
    assert figures.asked_days[-1] == (date(2026, 2, 28), date(2026, 2, 28))
    assert not check("goal_threshold", figures, goal="Signup", comparison="above", threshold=4).firing
    rich = check(
        "goal_threshold", figures, goal="Purchase", measure="revenue", currency="eur", comparison="above",
        threshold=200, period="last_7_days",
    )
    assert rich.firing and "250.50 EUR" in rich.message
    assert figures.asked_days[-1] == (date(2026, 2, 23), date(2026, 3, 1))
    missing = check("goal_threshold", figures, goal="Nope", threshold=1)
    assert not missing.firing and "no goal" in missing.message


def test_live_visitors_above_a_threshold():
    now_here = {f"v{number}": NOW - 60 for number in range(3)}
    assert check("live_visitors", Figures(visitors=now_here), threshold=2).firing
    assert not check("live_visitors", Figures(visitors=now_here), threshold=3).firing
    gone = {visitor: NOW - 600 for visitor in now_here}
    assert not check("live_visitors", Figures(visitors=gone), threshold=0, window_minutes=5).firing


@pytest.mark.parametrize(
    ("kind", "parameters", "field"),
    [
        ("live_visitors", {}, "parameters.threshold"),
        ("live_visitors", {"threshold": "many"}, "parameters.threshold"),
        ("traffic_change", {"factor": 1.0}, "parameters.factor"),
        ("traffic_change", {"direction": "sideways"}, "parameters.direction"),
        ("no_events", {"minutes": 1.5}, "parameters.minutes"),
        ("goal_threshold", {"threshold": 1}, "parameters.goal"),
        ("goal_threshold", {"goal": "x", "threshold": 1, "colour": "red"}, "parameters.colour"),
    ],
)
def test_parameters_are_checked_against_the_kinds_schema(kind, parameters, field):
    with pytest.raises(DomainError) as refused:
        checked_parameters(KIND[kind], parameters)
    assert refused.value.field == field
