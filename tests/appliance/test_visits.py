"""Visits at the appliance level: the midnight salt change, timeouts, session ids, bounds."""

from __future__ import annotations

import time
from datetime import UTC, datetime

import msgspec

from appliance.ingest import visits
from appliance.ingest.drafts import draft_from_event_body
from appliance.models import EventBody, RequestContext
from appliance.periods import day_bucket, day_from_number
from appliance.query.spec import Query

UA = "Mozilla/5.0 (X11; Linux x86_64; rv:125.0) Gecko/20100101 Firefox/125.0"


def _process(appliance, site, when: float, path: str, session_id: str | None = None, user_id: str | None = None):
    body = msgspec.convert(
        {
            "event_type": "page_view",
            "site": site.domain,
            "session_id": session_id,
            "user_id": user_id,
            "timestamp": datetime.fromtimestamp(when, UTC).isoformat(),
            "metadata": {"page_url": f"https://{site.domain}{path}"},
        },
        EventBody,
    )
    context = RequestContext(client_ip="203.0.113.9", user_agent=UA, received_at=when)
    event = appliance.pipeline.process(draft_from_event_body(body), context)
    appliance.record_sync([event])
    return event


def _totals(appliance, site, when: float):
    day = day_from_number(day_bucket(when))
    return appliance.stats.aggregate(Query(site=site, date_from=day, date_to=day))


def test_a_visit_spanning_midnight_keeps_yesterdays_visitor_id(appliance):
    site = appliance.sites.add("midnight.test")
    midnight = datetime(2026, 11, 20, tzinfo=UTC).timestamp()
    before = _process(appliance, site, midnight - 300, "/a")
    after = _process(appliance, site, midnight + 300, "/b")
    # the day's salt changed at midnight, but the open visit was found with yesterday's
    assert after.visitor_id == before.visitor_id
    totals = _totals(appliance, site, midnight - 300)
    assert totals["visits"] == 1 and totals["visit_duration"] == 600 and totals["bounce_rate"] == 0
    # a new visit the next day, long after, gets the new day's id
    later = _process(appliance, site, midnight + 5 * 3600, "/c")
    assert later.visitor_id != before.visitor_id


def test_a_gap_over_the_timeout_starts_a_new_visit(appliance):
    site = appliance.sites.add("gap.test")
    start = datetime(2026, 11, 20, 10, tzinfo=UTC).timestamp()
    _process(appliance, site, start, "/a")
    _process(appliance, site, start + 29 * 60, "/b")  # within 30 minutes of the last event
    _process(appliance, site, start + 29 * 60 + 31 * 60, "/c")  # 31 minutes later: new visit
    totals = _totals(appliance, site, start)
    assert totals["visits"] == 2
    assert totals["bounce_rate"] == 50.0
    assert totals["visit_duration"] == round(29 * 60 / 2)


def test_a_new_client_session_id_starts_a_new_visit(appliance):
    site = appliance.sites.add("sessions.test")
    start = datetime(2026, 11, 20, 10, tzinfo=UTC).timestamp()
    _process(appliance, site, start, "/a", session_id="s1")
    _process(appliance, site, start + 60, "/b", session_id="s1")
    _process(appliance, site, start + 120, "/c", session_id="s2")
    assert _totals(appliance, site, start)["visits"] == 2


def test_open_visits_are_bounded(appliance):
    appliance.visits.max_open = 2
    site = appliance.sites.add("bounded.test")
    start = datetime(2026, 11, 20, 10, tzinfo=UTC).timestamp()
    for index in range(5):
        body = msgspec.convert(
            {"event_type": "page_view", "site": site.domain, "user_id": f"u{index}",
             "timestamp": datetime.fromtimestamp(start, UTC).isoformat()},
            EventBody,
        )
        context = RequestContext(client_ip="203.0.113.9", user_agent=UA, received_at=start)
        appliance.record_sync([appliance.pipeline.process(draft_from_event_body(body), context)])
        assert len(appliance.visits) <= 3  # checked after every commit (not once a minute): the bound + one batch
    appliance.visits.max_open = 10
    open_before = len(appliance.visits)  # (recently touched history visits are not closed as idle)
    assert appliance.visits.expire(start + 60, keep=1) == open_before - 1  # the longest idle beyond ``keep``
    assert len(appliance.visits) == 1


def test_an_idle_server_closes_visits_past_their_timeout(appliance, monkeypatch):
    """Visits were closed only after a commit: a server with no new events kept its last
    visits open (in memory and in LMDB) until the next one. The idle writer closes them."""
    monkeypatch.setattr(visits, "RECENT_SECONDS", 0)  # the visit was written a moment ago
    site = appliance.sites.add("idle.test")
    _process(appliance, site, time.time() - 2 * 3600, "/a")  # two hours idle: past the timeout
    appliance.coordinator.flush()
    assert len(appliance.visits) == 1
    appliance._last_expiry = 0.0  # the next minute's check is due; no event follows
    deadline = time.monotonic() + 30
    while len(appliance.visits):
        assert time.monotonic() < deadline, "the idle writer did not close the visit"
        time.sleep(0.01)
    assert _totals(appliance, site, time.time() - 2 * 3600)["visits"] == 1  # closed, still counted


def test_over_the_bound_every_idle_visit_closes_however_recently_written(appliance):
    """The expiry leaves recently written visits open (a history visit is idle at once), but
    not over the bound: there it closed only down to the bound, so a bulk load kept the table
    full and every few commits waited for the next expiry (paced tracker p99 153 ms)."""
    site = appliance.sites.add("bound.test")
    for index in range(5):  # five visitors' history: idle by the clock, written a moment ago
        body_time = time.time() - 2 * 3600 + index
        _process(appliance, site, body_time, f"/{index}", user_id=f"u{index}")
    appliance.coordinator.flush()
    assert len(appliance.visits) == 5
    assert appliance.visits.expire(time.time()) == 0  # within the bound: recent ones stay open
    assert appliance.visits.expire(time.time(), keep=3) == 5  # over it: every idle one closes
    assert len(appliance.visits) == 0
