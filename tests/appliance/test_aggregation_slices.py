"""The writer's aggregation step in slices: bounded work after each commit, the same figures.

After a commit the writer folds at most ``SLICE_EVENTS`` (or twice the batch) of the oldest
waiting events once they have waited ``aggregate_interval_ms`` (:meth:`Recorder.
aggregate_after_commit`), so the next commit never waits behind a whole interval's events.
Visits span slices (an event joining a visit opened in an earlier slice), so the figures must
equal those of folding everything in one step.
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


def _commit_in_batches(appliance, events: list[Event], size: int, after_each) -> None:
    recorder = appliance.recorder
    for start in range(0, len(events), size):
        batch = events[start : start + size]
        recorder.commit(batch)
        after_each(len(batch))


def test_slices_fold_bounded_steps_and_count_like_one_step(make_appliance):
    now = time.time()
    # interval 0: aggregation is due after every commit; the writer's own thread stays idle
    sliced = make_appliance(ingest_aggregate_interval_ms=0, ingest_aggregate_max_events=100_000)
    whole = make_appliance(ingest_aggregate_interval_ms=3_600_000, ingest_aggregate_max_events=100_000)
    events = _traffic(sliced.sites.add("slices.test").id, now)
    whole_site = whole.sites.add("slices.test")
    assert whole_site.id == sliced.sites.get("slices.test").id

    folded: list[int] = []
    recorder = sliced.recorder
    with sliced.coordinator.mutex:  # no idle flush by the writer thread meanwhile
        _commit_in_batches(sliced, events, 300, lambda size: folded.append(recorder.aggregate_after_commit(size)))
        while recorder.waiting:
            folded.append(recorder.aggregate_after_commit(1))
    assert folded == [300, len(events) - 300]  # a batch bigger than a slice is folded whole

    steps: list[int] = []
    with sliced.coordinator.mutex:
        small = [Event(kind=EventKind.PAGEVIEW, site_id=whole_site.id, timestamp=now - 5, name="pageview",
                       visitor_id=1000 + n, path="/small") for n in range(SLICE_EVENTS * 3)]
        for start in range(0, len(small), 10):
            recorder.commit(small[start : start + 10])
        steps.append(recorder.aggregate_after_commit(10))
        steps.append(recorder.aggregate_after_commit(SLICE_EVENTS))
    # bounded: a slice, then twice the batch; the rest waits for the next commits
    assert steps == [SLICE_EVENTS, 2 * SLICE_EVENTS] and recorder.waiting == 0

    _commit_in_batches(whole, events + small, 300, lambda size: None)
    assert whole.recorder.aggregate_after_commit(300) == 0  # not due for an hour
    site = sliced.sites.get("slices.test")
    assert _figures(sliced, site, now) == _figures(whole, whole_site, now)  # the read folds the rest
    assert _figures(sliced, site, now)["totals"]["pageviews"] == len(events) + len(small)
