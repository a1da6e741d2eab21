"""Scheduled reports below the web room: cadence arithmetic, exactly-once sends across a
restart (a new Scheduler on the same LMDB file), a crash between "sending" and "sent"
(at most once per destination), retry with back-off, and "Send now". Time is a test clock."""

from __future__ import annotations

import time
from datetime import UTC, date, datetime, timedelta

import pytest

from appliance import hookimpl
from appliance.config import load_settings
from appliance.definitions.common import DefinitionError
from appliance.extensions import Message, Notifier
from appliance.reports.cadence import due_at, due_periods, next_due, period_key, send_offset
from appliance.reports.definitions import ReportInput
from appliance.reports.deliveries import KEEP_SENT, Delivery, Ledger, destination_digest
from appliance.reports.scheduler import Scheduler
from appliance.reports.schedules import ScheduleInput, Schedules, masked
from appliance.runtime.appliance import Appliance
from appliance.runtime.report_delivery import ReportComposer


class Clock:
    def __init__(self, moment: datetime) -> None:
        self.now = moment.timestamp()

    def __call__(self) -> float:
        return self.now

    def at(self, *args: int, tz=UTC) -> None:
        self.now = datetime(*args, tzinfo=tz).timestamp()


class Outbox:
    """A notifier plugin for ``test://`` URLs: records every message; fails while told to."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, Message]] = []
        self.failures: dict[str, int] = {}

    def send(self, url: str, message: Message) -> None:
        if self.failures.get(url, 0) > 0:
            self.failures[url] -= 1
            raise ConnectionError("451 try again later")
        self.sent.append((url, message))

    @hookimpl
    def register_notifiers(self, appliance):
        return [Notifier(name="test-outbox", schemes=("test",), send=self.send)]


def compose(schedule, site, start, end) -> Message:
    return Message(title=f"{site.domain} {start}..{end}", body="summary")


@pytest.fixture(scope="module")
def shared(tmp_path_factory):
    """One appliance for the module (each test gets its own site, deleted after it). Its own
    scheduler ticks once at open and then sleeps: these tests drive theirs."""
    outbox = Outbox()
    settings = load_settings(environ={"FOOTFALL_REPORTS_CHECK_INTERVAL_SECONDS": "3600"},
                             data_dir=str(tmp_path_factory.mktemp("scheduler") / "data"))
    appliance = Appliance(settings, plugins=[outbox]).open()
    yield appliance, outbox
    appliance.close()


@pytest.fixture
def world(shared):
    appliance, outbox = shared
    outbox.sent.clear()
    outbox.failures.clear()
    site = appliance.sites.add("sched.test")
    clock = Clock(datetime(2026, 3, 4, 10, tzinfo=UTC))  # a Wednesday
    schedules = Schedules(appliance.store, appliance.records, appliance.reports,
                          accepts=appliance.extensions.notifier_for, clock=clock)

    def scheduler(active=lambda: True) -> Scheduler:  # a fresh one is what a restarted process builds
        made = Scheduler(schedules=schedules, ledger=Ledger(appliance.store, appliance.records),
                         site_by_id=appliance.sites.by_id, compose=compose,
                         notifier_for=appliance.extensions.notifier_for, clock=clock, retry_base_seconds=60,
                         active=active)
        made.recover()
        return made

    yield appliance, site, clock, schedules, scheduler, outbox
    appliance.delete_site(site.domain)  # its reports, schedules and ledgers with it


def test_cadence_periods_and_due_times():
    berlin = "Europe/Berlin"
    # daily at 07:00 Berlin: the 3rd is due on the 4th at 06:00 UTC
    assert due_at(7, berlin, date(2026, 3, 3)) == datetime(2026, 3, 4, 6, tzinfo=UTC).timestamp()
    now = datetime(2026, 3, 4, 6, 30, tzinfo=UTC).timestamp()
    since = datetime(2026, 3, 1, 12, tzinfo=UTC).timestamp()
    assert due_periods("daily", 7, berlin, now, since) == [(date(2026, 3, d), date(2026, 3, d)) for d in (1, 2, 3)]
    # weekly: Monday to Sunday, sent on Monday; monthly: sent on the 1st
    monday = datetime(2026, 3, 9, 9, tzinfo=UTC).timestamp()
    assert due_periods("weekly", 8, "UTC", monday, since) == [
        (date(2026, 2, 23), date(2026, 3, 1)), (date(2026, 3, 2), date(2026, 3, 8))]
    assert due_periods("weekly", 10, "UTC", monday, since) == [(date(2026, 2, 23), date(2026, 3, 1))]  # not yet 10:00
    assert due_periods("monthly", 0, "UTC", datetime(2026, 4, 1, 0, tzinfo=UTC).timestamp(), since) == [
        (date(2026, 3, 1), date(2026, 3, 31))]
    assert next_due("daily", 7, berlin, now) == datetime(2026, 3, 5, 6, tzinfo=UTC).timestamp()
    assert period_key("monthly", date(2026, 3, 1)) == "month:2026-03-01"


def test_weekly_and_monthly_send_days_keep_the_closed_period_before():
    since = datetime(2026, 2, 1, 12, tzinfo=UTC).timestamp()
    thursday = send_offset("weekly", weekday=3)
    # Thursday 12 March 2026, 09:00: the week of 2-8 March is due at 08:00, not yet at 10:00
    moment = datetime(2026, 3, 12, 9, tzinfo=UTC).timestamp()
    assert due_periods("weekly", 8, "UTC", moment, since, thursday)[-1] == (date(2026, 3, 2), date(2026, 3, 8))
    assert due_periods("weekly", 10, "UTC", moment, since, thursday)[-1] == (date(2026, 2, 23), date(2026, 3, 1))
    # on the Monday nothing new is due yet for a Thursday schedule
    monday = datetime(2026, 3, 9, 9, tzinfo=UTC).timestamp()
    assert due_periods("weekly", 8, "UTC", monday, since, thursday)[-1] == (date(2026, 2, 23), date(2026, 3, 1))
    assert next_due("weekly", 8, "UTC", monday, thursday) == datetime(2026, 3, 12, 8, tzinfo=UTC).timestamp()
    # Sunday (6): the week just closed is sent a week later, never the week it is in
    assert due_periods("weekly", 8, "UTC", datetime(2026, 3, 15, 8, tzinfo=UTC).timestamp(), since,
                       send_offset("weekly", weekday=6))[-1] == (date(2026, 3, 2), date(2026, 3, 8))
    # monthly on the 15th: March is sent on 15 April; on 14 April February is the newest due
    fifteenth = send_offset("monthly", day=15)
    april_15 = datetime(2026, 4, 15, 7, tzinfo=UTC).timestamp()
    assert due_periods("monthly", 7, "UTC", april_15, since, fifteenth)[-1] == (date(2026, 3, 1), date(2026, 3, 31))
    april_14 = datetime(2026, 4, 14, 23, tzinfo=UTC).timestamp()
    assert due_periods("monthly", 7, "UTC", april_14, since, fifteenth)[-1] == (date(2026, 2, 1), date(2026, 2, 28))
    assert next_due("monthly", 7, "UTC", april_14, fifteenth) == april_15
    # day 28 after February: 28 March
    assert due_at(0, "UTC", date(2026, 2, 28), send_offset("monthly", day=28)) == datetime(
        2026, 3, 28, tzinfo=UTC).timestamp()
    assert send_offset("daily", weekday=5, day=9) == 0


def test_a_thursday_schedule_sends_its_week_on_thursday(world):
    appliance, site, clock, schedules, scheduler, outbox = world  # the clock: Wednesday 4 March, 10:00
    schedule = schedules.create(site.id, ScheduleInput(frequency="weekly", weekday=3, hour=9, destinations=["test://t"]))
    assert (schedule.weekday, schedule.day) == (3, 1)
    run = scheduler()
    assert run.status(schedule)["next_send_at"] == datetime(2026, 3, 5, 9, tzinfo=UTC).timestamp()
    clock.at(2026, 3, 5, 8, 59)
    assert run.tick() == {}
    clock.at(2026, 3, 5, 9)
    assert run.tick() == {"sent": 1}
    assert [m.title for _, m in outbox.sent] == ["sched.test 2026-02-23..2026-03-01"]
    clock.at(2026, 3, 9, 9)  # Monday: not the send day
    assert run.tick() == {}


def test_each_period_is_sent_once_across_a_restart(world):
    appliance, site, clock, schedules, scheduler, outbox = world
    schedule = schedules.create(site.id, ScheduleInput(frequency="daily", hour=6, destinations=["test://a"]))
    first = scheduler()
    assert first.tick() == {}  # created at 10:00 on the 4th: the 3rd fell due before it existed
    clock.at(2026, 3, 5, 6)
    assert first.tick() == {"sent": 1}
    assert first.tick() == {}
    restarted = scheduler()
    assert restarted.tick() == {}
    assert [m.title for _, m in outbox.sent] == ["sched.test 2026-03-04..2026-03-04"]
    # down for two days: both missed days are caught up, oldest first, once
    clock.at(2026, 3, 7, 9)
    assert scheduler().tick() == {"sent": 2}
    assert scheduler().tick() == {}
    assert [m.title.split()[1] for _, m in outbox.sent] == [
        "2026-03-04..2026-03-04", "2026-03-05..2026-03-05", "2026-03-06..2026-03-06"]
    history = first.status(schedule)
    assert history["last"]["state"] == "sent" and len(history["deliveries"]) == 3


def test_a_standby_sends_nothing_and_after_promotion_catches_up(world):
    appliance, site, clock, schedules, scheduler, outbox = world
    schedules.create(site.id, ScheduleInput(frequency="daily", hour=6, destinations=["test://a"]))
    following = [True]
    standby = scheduler(active=lambda: not following[0])
    clock.at(2026, 3, 6, 7)
    assert standby.tick() == {} and outbox.sent == []  # its primary sends these
    following[0] = False  # promoted: what fell due and was not sent goes out now
    assert standby.tick() == {"sent": 2}


def test_a_crash_during_a_send_is_not_repeated_but_the_rest_is_sent(world):
    appliance, site, clock, schedules, scheduler, outbox = world
    schedule = schedules.create(site.id, ScheduleInput(frequency="daily", hour=6, destinations=["test://a", "test://b"]))
    ledger = Ledger(appliance.store, appliance.records)
    # what a process killed while sending to test://a leaves behind
    ledger.put(Delivery(schedule_id=schedule.id, key="day:2026-03-04", start_date="2026-03-04", end_date="2026-03-04",
                        state="sending", attempts=1, in_flight=destination_digest("test://a"), created_at=clock()))
    clock.at(2026, 3, 5, 6)
    restarted = scheduler()  # recovers first
    assert restarted.tick() == {"interrupted": 1}
    assert [url for url, _ in outbox.sent] == ["test://b"]
    delivery = ledger.get(schedule.id, "day:2026-03-04")
    assert delivery.state == "interrupted" and delivery.uncertain == [destination_digest("test://a")]
    assert "interrupted" in delivery.last_error
    assert scheduler().tick() == {}  # and never again


def test_a_failing_destination_is_retried_with_back_off(world):
    appliance, site, clock, schedules, scheduler, outbox = world
    schedule = schedules.create(site.id, ScheduleInput(frequency="daily", hour=6, destinations=["test://ok", "test://flaky"]))
    outbox.failures["test://flaky"] = 2
    clock.at(2026, 3, 5, 6)
    running = scheduler()
    assert running.tick() == {"retrying": 1}
    delivery = running.ledger.get(schedule.id, "day:2026-03-04")
    assert delivery.next_attempt_at == clock() + 60 and "451" in delivery.last_error
    clock.now += 59
    assert running.tick() == {}
    clock.now += 1
    assert running.tick() == {"retrying": 1}  # second failure: twice the wait
    assert running.ledger.get(schedule.id, "day:2026-03-04").next_attempt_at == clock() + 120
    clock.now += 120
    assert scheduler().tick() == {"sent": 1}
    assert sorted(url for url, _ in outbox.sent) == ["test://flaky", "test://ok"]  # ok got it once
    final = running.ledger.get(schedule.id, "day:2026-03-04")
    assert final.attempts == 3 and final.last_error == ""


def test_gives_up_after_the_last_attempt(world):
    appliance, site, clock, schedules, scheduler, outbox = world
    schedule = schedules.create(site.id, ScheduleInput(frequency="daily", hour=6, destinations=["test://down"]))
    outbox.failures["test://down"] = 100
    clock.at(2026, 3, 5, 6)
    running = scheduler()
    outcomes, waits = [], []
    for _ in range(6):
        outcomes.append(running.tick())
        delivery = running.ledger.get(schedule.id, "day:2026-03-04")
        if delivery.state == "retrying":
            waits.append(delivery.next_attempt_at - clock())
            clock.now = delivery.next_attempt_at
    assert outcomes == [{"retrying": 1}] * 5 + [{"failed": 1}]
    assert waits == [60, 120, 240, 480, 960]
    assert running.tick() == {}
    delivery = running.ledger.get(schedule.id, "day:2026-03-04")
    assert delivery.state == "failed" and delivery.attempts == 6


def test_send_now_does_not_use_up_the_scheduled_send(world):
    appliance, site, clock, schedules, scheduler, outbox = world
    schedule = schedules.create(site.id, ScheduleInput(frequency="weekly", hour=6, destinations=["test://a"]))
    running = scheduler()
    queued = running.send_now(schedule)
    assert queued.state == "queued" and queued.key.startswith("manual:")
    assert running.tick() == {"sent": 1}
    assert outbox.sent[0][1].title == "sched.test 2026-02-23..2026-03-01"  # the latest closed week
    clock.at(2026, 3, 9, 6)
    assert running.tick() == {"sent": 1}  # the week of the 2nd is still sent on Monday


def test_schedule_and_report_checks_name_the_field(world):
    appliance, site, clock, schedules, scheduler, outbox = world
    bad = [
        (ScheduleInput(frequency="hourly", destinations=["test://a"]), "frequency"),
        (ScheduleInput(hour=24, destinations=["test://a"]), "hour"),
        (ScheduleInput(weekday=7, destinations=["test://a"]), "weekday"),
        (ScheduleInput(frequency="monthly", day=29, destinations=["test://a"]), "day"),
        (ScheduleInput(frequency="monthly", day=0, destinations=["test://a"]), "day"),
        (ScheduleInput(destinations=[]), "destinations"),
        (ScheduleInput(destinations=["nothing"]), "destinations[0]"),
        (ScheduleInput(destinations=["test://a"], formats=["docx"]), "formats[0]"),
        (ScheduleInput(destinations=["test://a"], report_id=999), "report_id"),
    ]
    for data, field in bad:
        with pytest.raises(DefinitionError) as raised:
            schedules.create(site.id, data)
        assert raised.value.field == field, (data, raised.value.message)
    reports = appliance.reports
    for data, field in [
        (ReportInput(title=""), "title"),
        (ReportInput(title="x", metrics=["visitors", "nope"]), "metrics[1]"),
        (ReportInput(title="x", dimensions=["page", "page"]), "dimensions[1]"),
        (ReportInput(title="x", dimensions=["page", "source", "os"]), "dimensions"),
        (ReportInput(title="x", filters=[["is", "nope", ["a"]]]), "filters[0]"),
        (ReportInput(title="x", period="fortnight"), "period"),
        (ReportInput(title="x", period="custom"), "start_date"),
        (ReportInput(title="x", comparison="sometimes"), "comparison"),
        (ReportInput(title="x", interval="minute"), "interval"),
        (ReportInput(title="x", segment=42), "segment"),
    ]:
        with pytest.raises(DefinitionError) as raised:
            reports.create(site.id, data)
        assert raised.value.field == field, (data, raised.value.message)
    assert masked("mailto://me:secret@mail.test?to=a@b.test") == "mailto://me:***@mail.test?to=a@b.test"


def test_deleting_a_site_deletes_its_reports_schedules_and_ledger(world):
    appliance, site, clock, schedules, scheduler, outbox = world
    report = appliance.reports.create(site.id, ReportInput(title="Gone soon"))
    schedule = schedules.create(site.id, ScheduleInput(report_id=report.id, frequency="daily", hour=6,
                                                       destinations=["test://a"]))
    clock.at(2026, 3, 5, 6)
    assert scheduler().tick() == {"sent": 1}
    ledger = Ledger(appliance.store, appliance.records)
    assert ledger.of(schedule.id)
    appliance.delete_site(site.domain)
    assert ledger.of(schedule.id) == [] and schedules.all() == [] and appliance.reports.list(site.id) == []


def test_the_dashboard_is_composed_with_its_summary_and_files(world):
    appliance, site, clock, schedules, scheduler, outbox = world
    schedule = schedules.create(site.id, ScheduleInput(frequency="monthly", hour=6, formats=["pdf", "csv"],
                                                       destinations=["test://a"]))
    message = ReportComposer(appliance)(schedule, site, date(2026, 2, 1), date(2026, 2, 28))
    assert message.title == "sched.test dashboard: 2026-02-01 – 2026-02-28"
    assert "Visitors: 0 (no data in the previous period)" in message.body
    kinds = {attachment.media_type.split(";")[0]: attachment for attachment in message.attachments}
    assert set(kinds) == {"application/pdf", "text/csv"}
    assert kinds["application/pdf"].data.startswith(b"%PDF") and kinds["application/pdf"].filename.endswith(".pdf")


def test_old_sent_deliveries_are_pruned_by_the_hourly_jobs_keeping_the_recent_history(world):
    """Sent records older than 400 days go (the hourly jobs, through the appliance's own
    scheduler), except each schedule's newest 20; failed ones and recent ones stay."""
    appliance, site, clock, schedules, scheduler, outbox = world
    schedule = schedules.create(site.id, ScheduleInput(frequency="daily", hour=6, destinations=["test://a"]))
    other = schedules.create(site.id, ScheduleInput(frequency="weekly", hour=6, destinations=["test://b"]))
    ledger = Ledger(appliance.store, appliance.records)
    now = time.time()
    first = date.today() - timedelta(days=470)
    for index in range(60):  # one a day, 470 to 411 days ago: all old
        day = first + timedelta(days=index)
        moment = now - (470 - index) * 86400
        state = "failed" if index == 3 else "sent"
        ledger.put(Delivery(schedule_id=schedule.id, key=f"day:{day.isoformat()}", start_date=day.isoformat(),
                            end_date=day.isoformat(), state=state, created_at=moment, updated_at=moment,
                            sent_at=moment if state == "sent" else 0.0))
    recent = now - 86400 * 3
    for index in range(25):  # the newest history: recent
        ledger.put(Delivery(schedule_id=schedule.id, key=f"manual:{index}", start_date="2026-01-01", end_date="2026-01-01",
                            state="sent", manual=True, created_at=recent + index, updated_at=recent + index,
                            sent_at=recent + index))
    few_old = now - 500 * 86400
    for index in range(5):  # another schedule: old, but its only five
        ledger.put(Delivery(schedule_id=other.id, key=f"week:{index}", start_date="2025-01-01", end_date="2025-01-07",
                            state="sent", created_at=few_old + index, updated_at=few_old + index, sent_at=few_old + index))
    results = appliance.jobs.run_once()
    assert results["prune_deliveries"] == {"deliveries": 59}  # every old sent one; the failed one stays
    kept = ledger.of(schedule.id)
    assert len(kept) == 26 and [d.state for d in kept].count("failed") == 1
    assert all(d.manual for d in kept[:KEEP_SENT])
    assert len(ledger.of(other.id)) == 5
    assert appliance.jobs.run_once()["prune_deliveries"] == {"deliveries": 0}
    # a standby prunes nothing
    assert scheduler(active=lambda: False).prune(now + 1000 * 86400) == {"deliveries": 0}
