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
    appliance.visits.idle.listed_at = 0.0  # the next minute's list is due; no event follows
    deadline = time.monotonic() + 30
    while len(appliance.visits):
        assert time.monotonic() < deadline, "the idle writer did not close the visit"
        time.sleep(0.01)
    assert _totals(appliance, site, time.time() - 2 * 3600)["visits"] == 1  # closed, still counted


def _history_visitors(appliance, site, count: int) -> None:
    for index in range(count):  # history: idle by the clock, written a moment ago
        _process(appliance, site, time.time() - 2 * 3600 + index, f"/{index}", user_id=f"u{index}")
    appliance.coordinator.flush()


def test_over_the_bound_the_aggregation_closes_its_excess_in_its_own_transaction(make_appliance, monkeypatch):
    """What a slice of the aggregation step puts over the bound closes in that slice's
    transaction, the least recently touched first: no expiry transaction of its own after the
    commit (whole tables at once held the writer 0.12-1.3 s; chunks of their own after every
    commit put ~20 ms on each tracker commit after a load), and the bound holds at once."""
    appliance = make_appliance(ingest_aggregate_interval_ms=3_600_000)  # only the test aggregates
    site = appliance.sites.add("bound.test")
    table = appliance.visits
    _history_visitors(appliance, site, 5)
    touch_order = list(table._open)
    assert table.expire(time.time()) == 0  # within the bound: recent ones stay open
    table.max_open = 5
    later = time.time() + 60
    appliance.writer.write_sync([
        appliance.pipeline.process(draft_from_event_body(msgspec.convert(
            {"event_type": "page_view", "site": site.domain, "user_id": f"new{index}",
             "timestamp": datetime.fromtimestamp(later + index, UTC).isoformat()}, EventBody)),
            RequestContext(client_ip="203.0.113.9", user_agent=UA, received_at=later))
        for index in range(3)
    ])
    writes = []
    write = appliance.store.write
    monkeypatch.setattr(appliance.store, "write", lambda fn, **kw: writes.append(fn) or write(fn, **kw))
    appliance.coordinator.flush()  # the aggregation step, and nothing after it
    assert len(writes) == 1 and len(table) == 5
    assert list(table._open)[:2] == touch_order[3:]  # the three least recently touched closed
    assert len(table.closed) == 3
    # gone from LMDB in that same transaction: the table read again holds the same five
    assert visits.VisitTable(appliance.store, table.timeout)._open == table._open


def test_idle_visits_close_a_chunk_at_a_time_spaced_out(appliance, monkeypatch):
    """Once the minute's list is made, idle visits close :attr:`IdleVisits.chunk` at a time,
    at most one chunk every :attr:`IdleVisits.spacing` seconds, so tracker commits between
    chunks never wait for one; a listed visit touched since stays open."""
    site = appliance.sites.add("idle-chunks.test")
    _history_visitors(appliance, site, 5)
    table = appliance.visits
    table.idle.chunk, table.idle.spacing, table.idle.listed_at = 2, 10.0, 0.0
    later = time.time() + visits.RECENT_SECONDS + 1  # none touched recently by then
    closed = [table.close_idle(later + step) for step in (0, 1, 10, 11, 20, 30, 40)]
    assert closed == [2, 0, 2, 0, 1, 0, 0]  # a chunk, none within the spacing, the rest; done
    assert len(table) == 0 and len(table.closed) == 5
    _history_visitors(appliance, site, 3)
    table.idle.listed_at = 0.0
    table.idle.list(later, [(key, table._open[key]) for key in table._open])
    _process(appliance, site, time.time() - 3600, "/again", user_id="u0")  # touched after the list
    assert table.close_idle(later + 100) == 2 and len(table) == 1


def test_a_bulk_load_over_the_bound_closes_in_its_slices_and_counts_the_same(make_appliance, monkeypatch):
    """Through the writer: the table never ends an aggregation over its bound, no transaction
    closes more than a chunk besides what its own batch put over the bound, and every figure
    equals a load that closed nothing early (late events re-derived)."""
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

    monkeypatch.setattr(visits, "RECENT_SECONDS", 0)  # every idle visit may close in a chunk
    appliance = make_appliance(ingest_aggregate_max_events=1)  # every slice due at once
    site = appliance.sites.add("history.test", timezone="UTC")
    table = appliance.visits
    table.max_open, table.idle.chunk, table.idle.spacing, table.idle.every = 30, 4, 0.0, 0.0
    calls: list[tuple[int, int, int]] = []
    close_in = table.close_in

    def spy(txn, now, idle=False):
        grown = sum(1 for key, visit in table._pending.items() if visit is not None and key not in table._open)
        closed = close_in(txn, now, idle)
        calls.append((len(table) + grown, closed, table._idle_closing))
        return closed

    monkeypatch.setattr(table, "close_in", spy)
    for batch in batches:
        appliance.writer.write_sync([_event(site, spec) for spec in batch])
        while appliance.recorder.aggregate_slice():  # the writer's slices (it may run them itself)
            pass
        appliance.coordinator.flush()
        assert len(table) <= table.max_open
    assert sum(closed for _, closed, _ in calls) > 3 * table.max_open  # the load went over the bound many times
    assert all(idle <= 4 and closed - idle <= max(0, after - table.max_open) for after, closed, idle in calls)
    assert any(idle for _, _, idle in calls)
    appliance.rederiver.run(force=True)
    assert not appliance.rederiver.dirty
    assert report(appliance, site, first, last) == expected
    assert expected["aggregate"]["visits"] > 300
