"""The aggregation step in bounded slices between commits (``ingest.aggregate_slice_events``).

A whole second of events aggregated in one go held up the next commit, and every tracker
request waiting for it, for as long as the step took. The writer now commits any waiting
batch between slices, and slices add up to exactly what one step gives.
"""

from __future__ import annotations

import threading
import time
from datetime import timedelta

from appliance.events import coordinator as coordinator_module
from appliance.ingest import recording as recording_module
from appliance.ingest.writer import Writer
from appliance.models import Event, EventKind
from appliance.periods import day_bucket, day_from_number, local_today
from appliance.query.spec import Query

# only the test aggregates; commits to the store itself, where the writer folds between them
# (with the intake a thread of its own folds: tests/appliance/test_intake.py)
DEFERRED = {"ingest_aggregate_interval_ms": 3_600_000, "ingest_intake": "false"}


def _events(site_id: int, now: float) -> list[Event]:
    """Three visitors with visits of several page views and a custom event: visits, bounces,
    entry and exit pages depend on the order the slices keep."""
    events = []
    for step in range(12):
        visitor = step % 3 + 1
        kind, name = (EventKind.CUSTOM, "signup") if step == 7 else (EventKind.PAGEVIEW, "pageview")
        events.append(Event(kind=kind, site_id=site_id, timestamp=now - 600 + step * 20, name=name,
                            visitor_id=visitor, path=f"/page{step % 4}"))
    return events


def _report(appliance, site, now: float) -> tuple:
    """The reports of the days ``_events(site.id, now)`` stamps its events on (up to ten
    minutes before ``now``): just after midnight (UTC), or across one, not the clock's today."""
    first, last = (day_from_number(day_bucket(moment, site.timezone)) for moment in (now - 600, now))
    query = Query(site=site, date_from=first, date_to=last)
    stats = appliance.stats
    return stats.aggregate(query), stats.breakdown(query, "page"), stats.timeseries(query, visit_metrics=True)


def test_slices_aggregate_what_one_step_does(make_appliance):
    sliced = make_appliance(ingest_aggregate_slice_events=5, ingest_aggregate_max_events=1, **DEFERRED)
    whole = make_appliance(ingest_aggregate_slice_events=0, ingest_aggregate_max_events=1, **DEFERRED)
    now = time.time()
    reports = []
    for appliance in (sliced, whole):
        site = appliance.sites.add("slices.test")
        recorder = appliance.recorder
        for event in _events(site.id, now):  # a slice folds at least the last commit: one event
            recorder.commit([event])
        waiting = [recorder.waiting]
        while recorder.aggregate_slice():
            waiting.append(recorder.waiting)
        waiting.append(recorder.waiting)
        reports.append((waiting, _report(appliance, site, now)))
    (sliced_waiting, sliced_report), (whole_waiting, whole_report) = reports
    assert sliced_waiting == [12, 7, 2, 0] and whole_waiting == [12, 0]
    assert sliced_report == whole_report
    top = sliced_report[0]
    assert (top["pageviews"], top["visitors"], top["visits"], top["visit_duration"]) == (11, 3, 3, 180)


def test_an_aggregation_step_not_yet_due_waits(make_appliance):
    appliance = make_appliance(ingest_aggregate_slice_events=5, ingest_aggregate_max_events=100, **DEFERRED)
    site = appliance.sites.add("due.test")
    appliance.recorder.commit(_events(site.id, time.time()))
    assert not appliance.recorder.aggregation_due()
    assert appliance.recorder.aggregate_slice() is False and appliance.recorder.waiting == 12
    appliance.coordinator.flush()  # a settled read folds in everything at once
    assert appliance.recorder.waiting == 0


def test_the_writer_commits_a_waiting_batch_between_slices():
    order: list[str] = []
    slices_left = [3]
    finished = threading.Event()
    writer: Writer

    def commit(events: list) -> list[bytes]:
        order.append(f"commit {','.join(events)}")
        return [event.encode() for event in events]

    def between() -> bool:
        if not slices_left[0]:
            return False
        if slices_left[0] == 3:
            writer.submit(["b"])  # a request arriving while the aggregation step is under way
        order.append("slice")
        slices_left[0] -= 1
        if not slices_left[0]:
            finished.set()
        return slices_left[0] > 0

    writer = Writer(commit, lambda events, keys: None, interval_ms=0, max_events=100, between=between)
    writer.start()
    try:
        writer.write_sync(["a"])
        assert finished.wait(10)
    finally:
        writer.stop()
    assert order == ["commit a", "slice", "commit b", "slice", "slice"]


def test_a_slice_keeps_pace_with_the_commits(make_appliance):
    """Under a flood of batches the writer runs one slice per commit: a slice smaller than the
    commit before it would let the backlog grow without end (the first read after it then
    folded it for longer than its time budget), so a slice folds at least the last commit."""
    appliance = make_appliance(ingest_aggregate_slice_events=5, ingest_aggregate_max_events=1, **DEFERRED)
    site = appliance.sites.add("pace.test")
    recorder = appliance.recorder
    now = time.time()
    backlog = []
    for round_number in range(4):
        recorder.commit(_events(site.id, now - 3600 * round_number))  # 12 a commit
        recorder.aggregate_slice()
        backlog.append(recorder.waiting)
    assert backlog == [0, 0, 0, 0]


def test_a_settled_read_folds_a_backlog_in_slices_first(make_appliance, monkeypatch):
    """The first query after a pause finds up to a second's events waiting: all but the last
    slice are folded in a slice per hold of the mutex (commits go on in between), the rest
    under the mutex with the read opening, so the answer still counts every event."""
    monkeypatch.setattr(recording_module, "READ_SLICE_EVENTS", 5)  # 1,000 in service
    appliance = make_appliance(ingest_aggregate_slice_events=5, ingest_aggregate_max_events=100, **DEFERRED)
    site = appliance.sites.add("backlog.test")
    recorder = appliance.recorder
    now = time.time()
    recorder.commit(_events(site.id, now))
    folds = []
    fold = recorder.aggregate_pending

    def recording(limit=None):
        folds.append((recorder.waiting, limit))
        return fold(limit)

    monkeypatch.setattr(recorder, "aggregate_pending", recording)
    top = _report(appliance, site, now)[0]
    assert folds[:3] == [(12, 5), (7, 5), (2, 2)] and recorder.waiting == 0  # the last under the mutex too
    assert set(folds[3:]) <= {(0, 1)}  # the report's other reads: nothing waits
    assert (top["pageviews"], top["visits"]) == (11, 3)


def _flushed(appliance, monkeypatch) -> tuple[int, tuple]:
    """Commit ``_events`` to a new site, flush them in: the write transactions the flush took,
    and the site's reports after it."""
    site = appliance.sites.add("flush.test")
    now = time.time()
    appliance.recorder.commit(_events(site.id, now))
    writes = []
    with monkeypatch.context() as patched:
        write = appliance.store.write
        patched.setattr(appliance.store, "write", lambda fn, **kw: writes.append(fn) or write(fn, **kw))
        assert appliance.coordinator.flush() == 12 and appliance.recorder.waiting == 0
    return len(writes), _report(appliance, site, now)


def test_a_flush_folds_a_backlog_a_read_slice_per_transaction(make_appliance, monkeypatch):
    """LMDB keeps a buffer, for good, for every page the largest write transaction since start
    dirtied: a flush (retention's purge, a settled read's last part, the close) folds what waits
    a read slice per write transaction, not the whole backlog in one. Unsliced, in one."""
    monkeypatch.setattr(recording_module, "READ_SLICE_EVENTS", 5)
    sliced = _flushed(make_appliance(ingest_aggregate_slice_events=5, ingest_aggregate_max_events=100, **DEFERRED),
                      monkeypatch)
    whole = _flushed(make_appliance(ingest_aggregate_slice_events=0, ingest_aggregate_max_events=100, **DEFERRED),
                     monkeypatch)
    assert (sliced[0], whole[0]) == (3, 1)
    assert sliced[1] == whole[1] and (sliced[1][0]["pageviews"], sliced[1][0]["visits"]) == (11, 3)


def test_a_commit_waiting_for_the_mutex_goes_between_a_settled_reads_slices(make_appliance, monkeypatch):
    """The writer asks for the mutex while a query folds the first slice of a backlog: it
    commits before the query's next slice. With a plain ``threading.RLock`` the folding thread
    took it straight back, and the commit waited for every slice (the first tracker request
    after a slow query began waited 0.3-0.6 s for 2-4 slices)."""
    monkeypatch.setattr(recording_module, "READ_SLICE_EVENTS", 5)  # 1,000 in service
    monkeypatch.setattr(coordinator_module, "LET_IN_SECONDS", 30.0)  # a busy machine may not schedule the writer in 1 s
    appliance = make_appliance(ingest_aggregate_slice_events=5, ingest_aggregate_max_events=100, **DEFERRED)
    site = appliance.sites.add("backlog.test")
    recorder, mutex = appliance.recorder, appliance.coordinator.mutex
    now = time.time()
    recorder.commit(_events(site.id, now))
    order = []
    fold = recorder.aggregate_pending

    def commit_meanwhile() -> None:
        with mutex:  # as the writer's commit takes it
            recorder.commit(_events(site.id, now - 7200))
            order.append("commit")

    def recording(limit=None):
        order.append("fold")
        if len(order) == 1:  # the writer arrives during the first slice and queues for the mutex
            threading.Thread(target=commit_meanwhile, daemon=True).start()
            deadline = time.monotonic() + 30
            while not mutex.waiting and time.monotonic() < deadline:
                time.sleep(0.001)
            assert mutex.waiting, "the committing thread never queued for the mutex"
        return fold(limit)

    monkeypatch.setattr(recorder, "aggregate_pending", recording)
    _report(appliance, site, now)
    assert order[:3] == ["fold", "commit", "fold"], order
    today = local_today(site.timezone)
    both_days = appliance.stats.aggregate(Query(site=site, date_from=today - timedelta(days=1), date_to=today))
    assert both_days["pageviews"] == 22 and recorder.waiting == 0  # every event of both commits


def test_a_commit_queued_for_the_mutex_goes_before_the_next_fold(make_appliance):
    """A commit's tracker requests wait for it, so once the writer queues for the mutex behind a
    query's fold, it commits before any fold or read takes the mutex next, the folding thread's
    own next one included. With a plain lock that thread, still running, took it straight back:
    paced at 1,000 events/s with two dashboard readers, 39 % of the writer's wait for the mutex
    was behind folds that began after it queued."""
    appliance = make_appliance(ingest_aggregate_slice_events=5, ingest_aggregate_max_events=100, **DEFERRED)
    site = appliance.sites.add("ahead.test")
    recorder, mutex = appliance.recorder, appliance.coordinator.mutex
    now = time.time()
    recorder.commit(_events(site.id, now))
    committer = threading.Thread(target=recorder.commit, args=(_events(site.id, now - 7200),), daemon=True)
    with mutex:  # a query folding
        committer.start()
        deadline = time.monotonic() + 30
        while not mutex.waiting and time.monotonic() < deadline:
            time.sleep(0.001)
        assert mutex.waiting, "the committing thread never queued for the mutex"
    appliance.coordinator.flush()  # the same thread's next fold, straight away
    committer.join(30)
    assert recorder.waiting == 0  # the commit went first: nothing of it is left unfolded
