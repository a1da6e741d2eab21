"""Memory while history loads: the aggregation backlog is bounded by ``[memory] budget_mb``, and
the steps that free megabytes at once (closing a minute's visits, re-deriving a day) give
them back to the system (issue 17)."""

from __future__ import annotations

import random
import threading
import time

from appliance.ingest import rederive, visits
from appliance.ingest.writer import Writer
from appliance.memory import BYTES_PER_WAITING_EVENT, MIN_BACKLOG_EVENTS, SHARES, plan_memory
from tests.appliance.test_columns import _events


def test_the_backlog_bound_comes_from_the_budget():
    assert abs(sum(SHARES.values()) - 1.0) < 1e-9  # the shares split one budget
    plan = plan_memory(160, 500_000)
    assert plan.max_waiting_events == int((160 << 20) * SHARES["aggregation_backlog"]) // BYTES_PER_WAITING_EVENT
    assert plan_memory(1024, 500_000).max_waiting_events > plan.max_waiting_events
    assert plan_memory(1, 500_000).max_waiting_events >= MIN_BACKLOG_EVENTS  # a batch request always fits


def test_an_appliance_bounds_its_backlog_by_the_setting(make_appliance):
    appliance = make_appliance(memory_budget_mb=48, ingest_intake="false")  # the writer folds: tests/appliance/test_intake.py has the other
    assert appliance.recorder.max_waiting == plan_memory(48, 500_000).max_waiting_events
    site = appliance.sites.add("backlog.test", timezone="UTC")
    events = _events(site, random.Random(5), 300, time.time() - 3 * 86400, 3 * 86400 - 60)
    appliance.recorder.max_waiting = 40  # small, so the 300 events cross it many times
    seen: list[int] = []
    commit = appliance.recorder.commit

    def watched(batch, **kwargs):
        seen.append(appliance.recorder.waiting)  # the backlog when a batch is committed
        return commit(batch, **kwargs)

    appliance.writer._commit = watched
    threads = [
        threading.Thread(target=appliance.writer.write_sync, args=(events[n::6],)) for n in range(6)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert seen and max(seen) < 40  # each batch waited until the backlog was below its bound
    appliance.flush_aggregates()
    with appliance.store.read() as txn:
        assert txn.stat(appliance.store.db(b"pending"))["entries"] == 0  # every event folded in, none lost
    assert appliance.writer.events_committed == len(events)


def test_the_writer_folds_the_backlog_before_committing_more():
    backlog: list[int] = []
    at_commit: list[int] = []
    bound = 30

    def commit(events):
        at_commit.append(len(backlog))
        backlog.extend(events)
        return [b"k"] * len(events)

    def one_slice() -> bool:
        del backlog[:5]
        return bool(backlog)

    writer = Writer(
        commit, lambda events, keys: None, interval_ms=0, max_events=50,
        between=one_slice, hold=lambda: len(backlog) >= bound,
    )
    writer.start()
    try:
        threads = [threading.Thread(target=writer.write_sync, args=([n] * 25,)) for n in range(20)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    finally:
        writer.stop()
    assert writer.events_committed == 500
    assert max(at_commit) < bound  # every batch waited until the backlog was below its bound


def test_closing_many_visits_at_once_trims_the_heap(appliance, monkeypatch):
    site = appliance.sites.add("closing.test", timezone="UTC")
    appliance.record_sync(_events(site, random.Random(7), 200, time.time() - 4 * 3600, 3 * 3600))
    table = appliance.visits
    table.trimmer.min_interval_s = 0
    open_visits = len(table)
    monkeypatch.setattr(visits, "TRIM_AFTER_CLOSING", open_visits + 1)
    later = time.time() + visits.RECENT_SECONDS + 1  # none touched recently by then
    assert 0 < table.expire(later) <= open_visits  # the idle ones: fewer than the threshold
    assert table.trimmer.trims == 0
    appliance.record_sync(_events(site, random.Random(8), 200, time.time() - 4 * 3600, 3 * 3600))
    monkeypatch.setattr(visits, "TRIM_AFTER_CLOSING", 3)
    assert table.expire(time.time() + 10 * 86400) >= 3  # every visit idle by then
    assert table.trimmer.trims == 1


def test_re_deriving_a_large_day_trims_the_heap(appliance, monkeypatch):
    site = appliance.sites.add("rederived.test", timezone="UTC")
    events = _events(site, random.Random(9), 300, time.time() - 3 * 86400, 86400)
    rederiver = appliance.rederiver
    rederiver.trimmer.min_interval_s = 0
    monkeypatch.setattr(rederive, "LARGE_FRAME_ROWS", 10**9)
    appliance.visits.horizon = time.time()  # as in a store with events before this process
    appliance.record_sync(events[150:])  # history: its days are marked and re-derived (small days at once)
    assert rederiver.days_rederived >= 1 and rederiver.trimmer.trims == 0  # small frames: no trim
    monkeypatch.setattr(rederive, "LARGE_FRAME_ROWS", 100)
    appliance.record_sync(events[:150])  # earlier again: re-derived, and now "large"
    assert rederiver.trimmer.trims >= 1
