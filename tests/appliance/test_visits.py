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


def test_over_the_bound_the_least_recently_touched_close_a_chunk_a_call(appliance, monkeypatch):
    """Over the bound recency does not count (a bulk load's visits are all recent), but the
    table no longer closes every idle visit at once: that held the writer 0.26-1.3 s every
    ~8 s of a load. A call closes what is over the bound plus a chunk, in touch order, until
    the table is down to :data:`~appliance.ingest.visits.DRAIN_TO` of its bound."""
    monkeypatch.setattr(visits, "CLOSE_AT_ONCE", 3)
    site = appliance.sites.add("bound.test")
    for index in range(10):  # ten visitors' history: idle by the clock, written a moment ago
        _process(appliance, site, time.time() - 2 * 3600 + index, f"/{index}", user_id=f"u{index}")
    appliance.coordinator.flush()
    table = appliance.visits
    touch_order = list(table._open)
    assert len(table) == 10
    assert table.expire(time.time()) == 0 and not table.due  # within the bound: recent ones stay open
    table.max_open = 7  # drains to 6 (90 %, rounded down)
    assert table.expire(time.time()) == 3 and table.due  # what is over the bound (3), at least
    assert list(table._open) == touch_order[3:]  # the least recently touched
    assert table.expire(time.time()) == 1 and not table.due  # then a chunk, down to 6
    assert table.expire(time.time()) == 0  # the drain is over: recent ones stay open again
    table.max_open = 2
    assert table.expire(time.time(), keep=1) == 4 and table.due  # over the bound by 4: more than a chunk
    assert table.expire(time.time()) == 1 and not table.due  # down to ``keep``
    assert list(table._open) == touch_order[-1:] and len(table.closed) == 9


def test_idle_visits_close_a_chunk_a_call_and_the_next_call_goes_on(appliance, monkeypatch):
    """Within the bound too: two minutes after a load, every one of its visits is idle and
    settled, and closing them all in one call held the writer as long as over the bound."""
    monkeypatch.setattr(visits, "CLOSE_AT_ONCE", 2)
    site = appliance.sites.add("idle-chunks.test")
    for index in range(5):
        _process(appliance, site, time.time() - 2 * 3600 + index, f"/{index}", user_id=f"u{index}")
    appliance.coordinator.flush()
    table = appliance.visits
    later = time.time() + visits.RECENT_SECONDS + 1  # none touched recently by then
    assert [(table.expire(later), table.due) for _ in range(4)] == [(2, True), (2, True), (1, False), (0, False)]
    assert len(table) == 0 and len(table.closed) == 5


def test_a_bulk_load_over_the_bound_drains_in_chunks_and_counts_the_same(make_appliance, monkeypatch):
    """Through the writer (expiry after every commit): no call closes more than a chunk or
    what is over the bound, the table stays within its bound and drains below it, and every
    figure equals a load that closed nothing early (late events re-derived)."""
    from tests.appliance.test_closed_visits import DAYS, _event, _start, history, report

    start = _start()
    days = history(11, start, visitors=60)
    ordered = sorted((spec for day in days.values() for specs in day.values() for spec in specs), key=lambda s: s["ts"])
    batches = [ordered[index : index + 15] for index in range(0, len(ordered), 15)]
    first, last = day_from_number(day_bucket(start)), day_from_number(day_bucket(start) + DAYS - 1)

    reference = make_appliance()
    reference_site = reference.sites.add("history.test", timezone="UTC")
    for batch in batches:
        reference.record_sync([_event(reference_site, spec) for spec in batch])
    expected = report(reference, reference_site, first, last)

    monkeypatch.setattr(visits, "CLOSE_AT_ONCE", 4)
    appliance = make_appliance()
    site = appliance.sites.add("history.test", timezone="UTC")
    table = appliance.visits
    table.max_open = 30
    calls: list[tuple[int, int]] = []
    expire = table.expire

    def spy(*args, **kwargs):
        before = len(table)
        closed = expire(*args, **kwargs)
        calls.append((before, closed))
        return closed

    monkeypatch.setattr(table, "expire", spy)
    sizes = []
    for batch in batches:
        appliance.record_sync([_event(site, spec) for spec in batch])
        sizes.append(len(table))
    assert max(sizes) <= table.max_open + 15  # at most one batch over it, closed at the next commit
    assert sum(closed for _, closed in calls) > 3 * table.max_open  # the load went over the bound many times
    assert all(closed <= max(4, before - table.max_open) for before, closed in calls)
    assert min(sizes[sizes.index(max(sizes)) :]) <= table.max_open * visits.DRAIN_TO // 100
    appliance.rederiver.run(force=True)
    assert not appliance.rederiver.dirty
    assert report(appliance, site, first, last) == expected
    assert expected["aggregate"]["visits"] > 300
