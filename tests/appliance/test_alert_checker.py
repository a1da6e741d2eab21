"""The alert checker on a real appliance: rules in LMDB, readings from real counters and the
live buffer, notifications through the apprise notifier to a loopback ``json://`` sink. The
clock is driven (``check(now=...)``), never waited on."""

from __future__ import annotations

import threading

import pytest

from appliance.alerts.rules import RuleInput
from appliance.definitions.goals import GoalInput
from appliance.errors import DomainError
from appliance.ingest.drafts import draft_from_collect_body
from appliance.models import CollectBody, RequestContext
from appliance.runtime.jobs import MinuteJobs
from tests.sinks import HttpSink

BASE = 1_772_380_800.0  # 2026-03-01 16:00 UTC
BROWSER = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36"


@pytest.fixture
def sink():
    server = HttpSink()
    yield server
    server.close()


@pytest.fixture
def appliance(make_appliance):
    opened = make_appliance(alerts_check_interval_seconds=0, alerts_delivery_backoff_seconds=0)
    opened.sites.add("alerts.example")
    return opened


def visit(appliance, at: float, visitor: int, kind: str = "pageview", path: str = "/"):
    context = RequestContext(client_ip=f"198.51.100.{visitor}", user_agent=BROWSER, received_at=at)
    draft = draft_from_collect_body(CollectBody(k=kind, n=kind, u=f"https://alerts.example{path}"))
    return appliance.pipeline.process(draft, context)


def record(appliance, *moments_and_visitors):
    appliance.record_sync([visit(appliance, at, visitor) for at, visitor in moments_and_visitors])


def rule(appliance, sink, kind: str, cooldown: int = 60, **parameters):
    site = appliance.sites.get("alerts.example")
    return appliance.alert_rules.create(
        site.id,
        RuleInput(name=f"{kind} rule", kind=kind, parameters=parameters,
                  destinations=[f"json://127.0.0.1:{sink.port}/alerts"], cooldown_minutes=cooldown),
    )


def test_fires_once_respects_its_cool_down_and_resolves(appliance, sink):
    rule(appliance, sink, "live_visitors", cooldown=60, threshold=2)
    record(appliance, (BASE, 1), (BASE + 1, 2), (BASE + 2, 3))
    checker = appliance.alerts

    [fired] = checker.check(now=BASE + 60)
    assert (fired.state, fired.notified) == ("firing", True)
    [message] = sink.wait_for(1)
    assert message.body["title"] == "Footfall alert firing: live_visitors rule (alerts.example)"
    assert "3 visitors in the last 5 minutes" in message.body["message"]

    assert checker.check(now=BASE + 120) == []  # still firing: not repeated
    [resolved] = checker.check(now=BASE + 900)  # the visitors left
    assert resolved.state == "resolved"
    assert sink.wait_for(2)[1].body["title"].startswith("Footfall alert resolved")

    # it fires again 20 minutes after the first notification: within the cool-down
    record(appliance, (BASE + 1200, 4), (BASE + 1201, 5), (BASE + 1202, 6))
    [quiet] = checker.check(now=BASE + 1260)
    assert (quiet.state, quiet.notified) == ("firing", False)
    [unnoticed] = checker.check(now=BASE + 2000)  # its end is not announced either
    assert (unnoticed.state, unnoticed.notified) == ("resolved", False)
    # past the cool-down it is told again
    record(appliance, (BASE + 4000, 7), (BASE + 4001, 8), (BASE + 4002, 9))
    [again] = checker.check(now=BASE + 4060)
    assert again.notified
    received = sink.wait_for(3)
    assert [item.body["title"].split(":")[0] for item in received] == [
        "Footfall alert firing", "Footfall alert resolved", "Footfall alert firing",
    ]
    site = appliance.sites.get("alerts.example")
    history = appliance.alert_history.list(site.id)
    assert [(alert.state, alert.notified) for alert in history] == [
        ("firing", True), ("resolved", False), ("firing", False), ("resolved", True), ("firing", True),
    ]
    assert all(delivery.ok for alert in history for delivery in alert.deliveries)


def test_traffic_spike_from_real_hour_counters(appliance, sink):
    rule(appliance, sink, "traffic_change", direction="spike", factor=3, min_pageviews=6)
    hour = BASE  # 16:00–17:00; checked at 17:05, it is the last complete hour
    for week in range(1, 5):
        record(appliance, (hour - week * 7 * 86400 + 60, 1), (hour - week * 7 * 86400 + 120, 2))
    record(appliance, *[(hour + 60 * minute, minute) for minute in range(1, 7)])

    [fired] = appliance.alerts.check(now=hour + 3900)
    assert fired.state == "firing"
    assert "6 page views in the last complete hour against a mean of 2.0" in sink.wait_for(1)[0].body["message"]


def test_no_events_and_goal_threshold_on_real_data(appliance, sink):
    site = appliance.sites.get("alerts.example")
    appliance.goals.create(site.id, GoalInput(name="Pricing", kind="page", page="/pricing"))
    rule(appliance, sink, "no_events", minutes=30, normal_hourly_events=1)
    rule(appliance, sink, "goal_threshold", goal="Pricing", comparison="above", threshold=1, period="today")
    for week in range(1, 5):
        record(appliance, (BASE - week * 7 * 86400 + 60, 1), (BASE - week * 7 * 86400 + 120, 2))
    appliance.record_sync([visit(appliance, BASE + 60, 1, path="/pricing"), visit(appliance, BASE + 70, 2, path="/pricing")])

    changes = appliance.alerts.check(now=BASE + 600)
    assert [(change.kind, change.state) for change in changes] == [("goal_threshold", "firing")]
    changes = appliance.alerts.check(now=BASE + 60 + 31 * 60)
    assert [(change.kind, change.state) for change in changes] == [("no_events", "firing")]
    messages = [item.body["message"] for item in sink.wait_for(2)]
    assert "goal 'Pricing' has 2 conversions (today)" in messages[0]
    assert "no events for 30 minutes" in messages[1]


def test_rules_are_validated(appliance, sink):
    site = appliance.sites.get("alerts.example")
    with pytest.raises(DomainError) as refused:
        appliance.alert_rules.create(site.id, RuleInput(name="x", kind="weather", destinations=["json://h/"]))
    assert refused.value.field == "kind"
    with pytest.raises(DomainError) as refused:
        appliance.alert_rules.create(
            site.id, RuleInput(name="x", kind="live_visitors", parameters={"threshold": 1}, destinations=["nourl"])
        )
    assert refused.value.field == "destinations[0]"


def test_the_minute_job_runs_the_checks_on_its_own_thread():
    ran = threading.Event()
    threads: list[str] = []

    def job():
        threads.append(threading.current_thread().name)
        ran.set()

    jobs = MinuteJobs(job, interval=0.01)
    jobs.start()
    try:
        assert ran.wait(10)
    finally:
        jobs.stop()
    assert threads[0] == "footfall-minute-jobs"
    idle = MinuteJobs(job, interval=0)  # 0: no background checks
    idle.start()
    idle.stop()
