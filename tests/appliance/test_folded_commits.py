"""A due aggregation slice folded into the next batch's commit (``Recorder.commit_folding``).

Every LMDB transaction is an fsync; under single-event load the writer alternated a commit
and a slice, two fsyncs a cycle. The ingest writer's commit now folds the due slice into the
batch's own transaction: the same figures, the batch durable as before, half the fsyncs.
"""

from __future__ import annotations

import threading
import time

from appliance.ingest.writer import Writer
from appliance.models import Event, EventKind
from appliance.periods import local_today
from appliance.query.spec import Query

DEFERRED = {"ingest_aggregate_interval_ms": 3_600_000}  # only the test makes a step due


def _events(site_id: int, now: float) -> list[Event]:
    """Three visitors, visits of several page views and a custom event: visits, bounces,
    entry and exit pages depend on the order the folds keep."""
    events = []
    for step in range(12):
        visitor = step % 3 + 1
        kind, name = (EventKind.CUSTOM, "signup") if step == 7 else (EventKind.PAGEVIEW, "pageview")
        events.append(Event(kind=kind, site_id=site_id, timestamp=now - 600 + step * 20, name=name,
                            visitor_id=visitor, path=f"/page{step % 4}"))
    return events


def _report(appliance, site) -> tuple:
    today = local_today(site.timezone)
    query = Query(site=site, date_from=today, date_to=today)
    stats = appliance.stats
    return stats.aggregate(query), stats.breakdown(query, "page"), stats.timeseries(query, visit_metrics=True)


def _count_transactions(appliance) -> list[int]:
    store = appliance.recorder._store
    count = [0]
    write = store.write

    def counted(fn):
        count[0] += 1
        return write(fn)

    store.write = counted
    return count


def _pending_keys(appliance) -> set[bytes]:
    recorder = appliance.recorder
    with recorder._store.read() as txn:
        return {key for key, _ in txn.cursor(db=recorder._pending_db)}


def test_folding_commits_count_what_one_step_does_in_one_transaction_each(make_appliance):
    folding = make_appliance(ingest_aggregate_slice_events=5, ingest_aggregate_max_events=1, **DEFERRED)
    whole = make_appliance(ingest_aggregate_slice_events=0, ingest_aggregate_max_events=1, **DEFERRED)
    now = time.time()
    site = folding.sites.add("fold.test")
    transactions = _count_transactions(folding)
    waiting = []
    for event in _events(site.id, now):
        folding.recorder.commit_folding([event])
        waiting.append(folding.recorder.waiting)
    # one transaction a commit; from the second on, each folds the event before it
    assert transactions[0] == 12
    assert waiting == [1] * 12
    assert _pending_keys(folding) == {key for key, _ in folding.recorder._unaggregated}
    other = whole.sites.add("fold.test")
    for event in _events(other.id, now):
        whole.recorder.commit([event])
    assert _report(folding, site) == _report(whole, other)
    top = _report(folding, site)[0]
    assert (top["pageviews"], top["visitors"], top["visits"], top["visit_duration"]) == (11, 3, 3, 180)


def test_a_fold_takes_at_least_the_batch_and_keeps_pace(make_appliance):
    appliance = make_appliance(ingest_aggregate_slice_events=5, ingest_aggregate_max_events=1, **DEFERRED)
    site = appliance.sites.add("pace.test")
    now = time.time()
    backlog = []
    for round_number in range(4):
        appliance.recorder.commit_folding(_events(site.id, now - 3600 * round_number))  # 12 a commit
        backlog.append(appliance.recorder.waiting)
    assert backlog == [12, 12, 12, 12]  # each commit folded the 12 before it, not just 5


def test_no_fold_before_the_step_is_due(make_appliance):
    appliance = make_appliance(ingest_aggregate_slice_events=5, ingest_aggregate_max_events=100, **DEFERRED)
    site = appliance.sites.add("due.test")
    now = time.time()
    appliance.recorder.commit_folding(_events(site.id, now))
    appliance.recorder.commit_folding(_events(site.id, now - 3600))
    assert appliance.recorder.waiting == 24


def test_a_failing_fold_commits_the_batch_alone_and_loses_nothing(make_appliance, monkeypatch):
    appliance = make_appliance(ingest_aggregate_slice_events=5, ingest_aggregate_max_events=1, **DEFERRED)
    whole = make_appliance(ingest_aggregate_slice_events=0, ingest_aggregate_max_events=1, **DEFERRED)
    site = appliance.sites.add("fail.test")
    recorder = appliance.recorder
    now = time.time()
    events = _events(site.id, now)
    recorder.commit_folding(events[:6])
    aggregate_in = recorder._aggregate_in
    calls = []

    def broken(*args, **kwargs):
        calls.append(len(args[1]))
        raise RuntimeError("a bug in an aggregation step")

    monkeypatch.setattr(recorder, "_aggregate_in", broken)
    keys = recorder.commit_folding(events[6:])  # the fold fails: committed alone
    assert calls == [6] and len(keys) == 6
    assert recorder.waiting == 12 and len(_pending_keys(appliance)) == 12
    monkeypatch.setattr(recorder, "_aggregate_in", aggregate_in)
    other = whole.sites.add("fail.test")
    whole.recorder.commit(_events(other.id, now))
    assert _report(appliance, site) == _report(whole, other)  # the read folds all 12 in
    assert recorder.waiting == 0 and not _pending_keys(appliance)


def test_a_folded_slice_survives_a_reopen_pending_or_counted(make_appliance, tmp_path):
    data_dir = tmp_path / "reopen"
    appliance = make_appliance(data_dir=data_dir, ingest_aggregate_slice_events=5, ingest_aggregate_max_events=1,
                               **DEFERRED)
    site = appliance.sites.add("reopen.test")
    now = time.time()
    for event in _events(site.id, now):
        appliance.recorder.commit_folding([event])
    assert len(_pending_keys(appliance)) == 1  # the last event: the other 11 were folded
    appliance.close()
    reopened = make_appliance(data_dir=data_dir, **DEFERRED)
    top = _report(reopened, reopened.sites.get("reopen.test"))[0]
    assert (top["pageviews"], top["visits"]) == (11, 3)


def test_commit_first_commits_a_waiting_batch_before_any_slice():
    order: list[str] = []
    done = threading.Event()
    writer: Writer

    def commit(events: list) -> list[bytes]:
        order.append(f"commit {','.join(events)}")
        if events == ["a"]:
            writer.submit(["b"])  # a request arriving while the batch before it commits
        return [event.encode() for event in events]

    def between() -> bool:
        order.append("slice")
        if "commit b" in order:
            done.set()
        return False

    writer = Writer(commit, lambda events, keys: None, interval_ms=0, max_events=100, between=between,
                    commit_first=True)
    writer.start()
    try:
        writer.write_sync(["a"])
        assert done.wait(10)
    finally:
        writer.stop()
    assert order[:3] == ["commit a", "commit b", "slice"]
