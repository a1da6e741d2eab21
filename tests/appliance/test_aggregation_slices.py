"""The aggregation step in slices: bounded work riding along each commit, the same figures.

Once events have waited ``aggregate_interval_ms``, each commit also folds the oldest
``SLICE_EVENTS`` (or twice its batch) in its own transaction, so no commit waits behind a
whole interval's events; should that fail, the batch is committed alone. Visits span slices
(an event joining a visit opened in an earlier slice), so the figures must equal those of
folding everything in one step.
"""

from __future__ import annotations

import time

from appliance.ingest.recording import SLICE_EVENTS
from appliance.models import Event, EventKind
from appliance.periods import day_bucket, day_from_number
from appliance.query.spec import Query

SOURCES = ("", "google.com", "news.ycombinator.com")


def _traffic(site_id: int, now: float) -> list[Event]:
    """Three pages a visitor, a few seconds apart, visitors interleaved: visits cross slices."""
    events = []
    for step in range(3):
        for visitor in range(1, 121):
            events.append(Event(
                kind=EventKind.PAGEVIEW, site_id=site_id, timestamp=now - 600 + step * 7 + visitor * 0.01,
                name="pageview", visitor_id=visitor, path=f"/p{(visitor + step) % 5}",
                referrer_host=SOURCES[visitor % 3] if step == 0 else "", source=SOURCES[visitor % 3] if step == 0 else "",
            ))
    # a visitor who only bounces, and a second visit after the timeout for a few
    events += [
        Event(kind=EventKind.PAGEVIEW, site_id=site_id, timestamp=now - 10, name="pageview", visitor_id=visitor,
              path="/again")
        for visitor in range(1, 6)
    ]
    return events


def _figures(appliance, site, now: float) -> dict:
    day = day_from_number(day_bucket(now))
    query = Query(site=site, date_from=day, date_to=day)
    stats = appliance.stats
    return {
        "totals": stats.aggregate(query),
        "pages": stats.breakdown(query, "page", 20),
        "series": stats.timeseries(query, visit_metrics=True),  # visits, bounces, durations
        "sources": stats.breakdown(query, "source", 20),
    }


def test_slices_are_bounded_keep_up_and_count_like_one_step(make_appliance):
    now = time.time()
    # interval 0: waiting events are due at once; an hour: only the read folds them
    sliced = make_appliance(ingest_aggregate_interval_ms=0, ingest_aggregate_max_events=100_000)
    whole = make_appliance(ingest_aggregate_interval_ms=3_600_000, ingest_aggregate_max_events=100_000)
    site_id = sliced.sites.add("slices.test").id
    assert whole.sites.add("slices.test").id == site_id
    events = _traffic(site_id, now)
    backlog = [Event(kind=EventKind.PAGEVIEW, site_id=site_id, timestamp=now - 5, name="pageview",
                     visitor_id=1000 + n, path="/small") for n in range(SLICE_EVENTS * 3)]
    recorder = sliced.recorder
    waiting = []
    with sliced.coordinator.mutex:  # the writer thread's idle step waits meanwhile
        recorder.commit(backlog)  # nothing was waiting: nothing folded
        waiting.append(recorder.waiting)
        for start in range(0, 20, 10):  # small batches fold one bounded slice each
            recorder.commit(events[start : start + 10])
            waiting.append(recorder.waiting)
        recorder.commit(events[20:320])  # a batch bigger than a slice folds twice its size
        waiting.append(recorder.waiting)
        recorder.commit(events[320:])
        waiting.append(recorder.waiting)
    assert waiting == [
        3 * SLICE_EVENTS,
        3 * SLICE_EVENTS - SLICE_EVENTS + 10,
        3 * SLICE_EVENTS - 2 * SLICE_EVENTS + 20,  # the backlog's last slice plus two batches
        300,  # everything older folded (at most 600 could be)
        300 - SLICE_EVENTS + len(events) - 320,  # a small batch again: one slice
    ]
    recorder_whole = whole.recorder
    for batch in (backlog, events[:20], events[20:320], events[320:]):
        recorder_whole.commit(batch)
    assert recorder_whole.waiting == len(backlog) + len(events)  # not due for an hour
    site = sliced.sites.get("slices.test")
    assert _figures(sliced, site, now) == _figures(whole, whole.sites.get("slices.test"), now)  # reads fold the rest
    assert _figures(sliced, site, now)["totals"]["pageviews"] == len(events) + len(backlog)


def test_a_batch_is_committed_alone_when_the_slice_riding_along_fails(make_appliance, monkeypatch):
    now = time.time()
    appliance = make_appliance(ingest_aggregate_interval_ms=0, ingest_aggregate_max_events=100_000)
    site = appliance.sites.add("fails.test")
    events = _traffic(site.id, now)
    recorder = appliance.recorder
    real = recorder._aggregate_in
    calls = []

    def failing_once(txn, batch, timezones):
        calls.append(len(batch))
        if len(calls) == 1:
            raise RuntimeError("a bug in the aggregation step")
        return real(txn, batch, timezones)

    with appliance.coordinator.mutex:
        recorder.commit(events[:100])
        monkeypatch.setattr(recorder, "_aggregate_in", failing_once)
        keys = recorder.commit(events[100:150])  # its slice fails: the batch is committed alone
        assert len(keys) == 50 and calls == [100] and recorder.waiting == 150
        recorder.commit(events[150:200])  # the next commit folds a slice of them
        folded = min(150, SLICE_EVENTS)
        assert calls == [100, folded] and recorder.waiting == 150 - folded + 50
    monkeypatch.undo()
    recorder.commit(events[200:])
    totals = _figures(appliance, site, now)["totals"]
    assert totals["pageviews"] == len(events)
    stored = [event.path for _, event in appliance.events(site, now - 3600, now + 1)]
    assert sorted(stored) == sorted(event.path for event in events)  # each once
