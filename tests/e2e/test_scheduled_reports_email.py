"""Scheduled reports end to end: a real server, apprise's ``mailto://`` and a local SMTP sink.

The server's scheduler reads "now" from the test-only ``[reports] test_clock_file`` and ticks
every 0.2 s, so the test moves time by writing the file and waits on conditions (the e-mail
arriving, the schedule's status), never on the wall clock. One daily schedule at 06:00 (UTC):

1. nothing is sent before its time; at its time one e-mail arrives with the PDF attached and
   the summary in the body;
2. the next day's period is sent once;
3. killed (SIGKILL) in the middle of a send (the SMTP sink holds the transaction open): after
   the restart neither the periods sent before nor the interrupted one are sent again (at most
   once; the schedule says ``interrupted``) — and the next period arrives once;
4. the destination refuses (451): the schedule shows ``retrying`` with the error, and the
   retry after the back-off delivers it.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from tests.servers import ServerHandle, start_server
from tests.smtp_sink import SmtpSink

SITE = "scheduled.test"
DAY = 86_400


def wait_until(check: Callable[[], object], timeout: float = 30.0, what: str = "the condition"):
    """Poll ``check`` until it returns something truthy (the server ticks every 0.2 s)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = check()
        if found:
            return found
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


class World:
    def __init__(self, tmp_path) -> None:
        self.data = tmp_path / "data"
        self.clock_file = tmp_path / "now.txt"
        self.now = float(int(time.time()))
        self.set_clock(self.now)
        self.env = {
            "FOOTFALL_REPORTS_TEST_CLOCK_FILE": str(self.clock_file),
            "FOOTFALL_REPORTS_CHECK_INTERVAL_SECONDS": "0.2",
            "FOOTFALL_REPORTS_RETRY_BASE_SECONDS": "300",
        }
        self.sink = SmtpSink()
        self.server: ServerHandle = start_server(self.data, env=self.env)
        self.schedule_id = 0

    def set_clock(self, moment: float) -> None:
        self.now = moment
        self.clock_file.write_text(repr(moment))

    def api(self, method: str, path: str, **kwargs) -> httpx.Response:
        with self.server.client() as client:
            return client.request(method, path, headers=self.server.auth(), **kwargs)

    def schedule(self) -> dict:
        answer = self.api("GET", f"/api/v1/sites/{SITE}/schedules/{self.schedule_id}")
        assert answer.status_code == 200, answer.text
        return answer.json()["data"]

    def tick_seen(self) -> dict:
        """Wait until the server's scheduler has ticked at the clock's current "now"."""
        return wait_until(lambda: (s := self.schedule())["status"]["checked_at"] == self.now and s,
                          what=f"a scheduler tick at {self.now}")

    def restart(self, kill: bool = True) -> None:
        if kill:
            self.server.kill()  # SIGKILL to the whole process group: no shutdown of any kind
        self.server = start_server(self.data, env=self.env)


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    made = World(tmp_path_factory.mktemp("scheduled"))
    try:
        yield made
    finally:
        made.server.stop()
        made.sink.stop()


def _delivery(schedule: dict, key: str) -> dict | None:
    return next((d for d in schedule["status"]["deliveries"] if d["key"] == key), None)


def _day_key(moment: float) -> str:
    return "day:" + datetime.fromtimestamp(moment, UTC).date().isoformat()


def test_the_email_arrives_at_its_time_with_the_pdf(world):
    assert world.api("POST", "/api/v1/sites", json={"domain": SITE}).status_code == 201
    report = world.api("POST", f"/api/v1/sites/{SITE}/reports", json={
        "title": "Daily pages", "metrics": ["visitors", "pageviews"], "dimensions": ["page"], "period": "7d"})
    assert report.status_code == 201, report.text
    created = world.api("POST", f"/api/v1/sites/{SITE}/schedules", json={
        "report_id": report.json()["data"]["id"], "frequency": "daily", "hour": 6, "formats": ["pdf", "csv"],
        "destinations": [world.sink.url()]})
    assert created.status_code == 201, created.text
    world.schedule_id = created.json()["data"]["id"]
    due = created.json()["data"]["next_send_at"]
    assert datetime.fromtimestamp(due, UTC).hour == 6 and due > world.now
    # four visitors in the day the first e-mail covers (the day before it is due), not in the future
    day = datetime.fromtimestamp(due, UTC).date() - timedelta(days=1)
    start = datetime(day.year, day.month, day.day, tzinfo=UTC).timestamp()
    moment = max(start, min(time.time() - 60, start + DAY - 60))
    events = [{"event_type": "page_view", "user_id": f"v{i}", "site": SITE, "session_id": f"s{i}",
               "timestamp": datetime.fromtimestamp(moment + i, UTC).isoformat().replace("+00:00", "Z"),
               "metadata": {"page_url": f"https://{SITE}/p{i % 2}"}} for i in range(4)]
    answer = world.api("POST", "/api/v1/events", json=events)
    assert answer.status_code == 200, answer.text
    world.set_clock(due - 1)
    world.tick_seen()
    assert world.sink.messages == []  # one second early: nothing
    world.set_clock(due)
    [message] = world.sink.wait_for(1)
    today = day.isoformat()
    assert message["Subject"] == f"Daily pages: {today}"
    body = message.get_body(preferencelist=("plain",)).get_content()
    assert "Visitors: 4 (" in body and "Page views: 4 (" in body and "previous period" in body
    attachments = {part.get_filename(): part for part in message.iter_attachments()}
    pdf = next(part for name, part in attachments.items() if name.endswith(".pdf"))
    assert pdf.get_content_type() == "application/pdf" and pdf.get_content().startswith(b"%PDF")
    assert any(name.endswith(".csv") for name in attachments)
    sent = wait_until(lambda: (d := _delivery(world.schedule(), f"day:{today}")) and d["state"] == "sent" and d,
                      what="the delivery recorded as sent")
    assert sent["attempts"] == 1


def test_the_next_period_is_sent_once(world):
    world.set_clock(world.now + DAY)
    world.sink.wait_for(2)
    world.set_clock(world.now + 60)
    world.tick_seen()
    assert len(world.sink.messages) == 2
    keys = [d["key"] for d in world.schedule()["status"]["deliveries"] if d["state"] == "sent"]
    assert len(keys) == len(set(keys)) == 2


def test_a_send_killed_midway_is_not_repeated(world):
    world.sink.hold()  # the sink records the next message and does not answer
    world.set_clock(world.now + DAY)
    world.sink.wait_for(3)
    key = _day_key(world.now - DAY)
    assert world.schedule()["status"]["last"]["state"] == "sending"
    world.restart(kill=True)  # killed with the SMTP transaction open
    world.sink.release()
    world.tick_seen()
    schedule = world.schedule()
    delivery = _delivery(schedule, key)
    assert delivery["state"] == "interrupted" and delivery["destinations_uncertain"] == 1
    assert "interrupted" in delivery["last_error"]
    assert len(world.sink.messages) == 3  # at most once: not sent again, nor the two sent before the kill
    assert [d["state"] for d in schedule["status"]["deliveries"]] == ["interrupted", "sent", "sent"]
    world.set_clock(world.now + DAY)  # the next period goes out as usual, once
    world.sink.wait_for(4)
    world.set_clock(world.now + 60)
    world.tick_seen()
    assert len(world.sink.messages) == 4


def test_a_refusing_destination_is_retried_after_the_back_off(world):
    world.sink.refuse_next(1)
    world.set_clock(world.now + DAY)
    key = _day_key(world.now - DAY)
    retrying = wait_until(lambda: (d := _delivery(world.schedule(), key)) and d["state"] == "retrying" and d,
                          what="the failed send recorded as retrying")
    assert world.sink.refused == 1 and len(world.sink.messages) == 4
    assert retrying["next_attempt_at"] == world.now + 300 and "failed" in retrying["last_error"]
    world.set_clock(world.now + 299)
    world.tick_seen()
    assert len(world.sink.messages) == 4  # not before the back-off
    world.set_clock(world.now + 1)
    world.sink.wait_for(5)
    done = wait_until(lambda: (d := _delivery(world.schedule(), key)) and d["state"] == "sent" and d,
                      what="the retry recorded as sent")
    assert done["attempts"] == 2 and done["last_error"] == ""
