"""Settled reads folded on the writer thread (appliance/ingest/settling.py): a query thread
asks the writer to fold what waits and opens its read transaction while the writer holds
commits back, so its snapshot counts every acknowledged event and holds no committed event
that is not aggregated; a reader the writer cannot serve in time settles itself, as before."""

from __future__ import annotations

import threading
import time

import pytest

from appliance.ingest import settling
from appliance.models import Event, EventKind
from appliance.periods import day_bucket, day_from_number
from appliance.query.spec import Query

DEFERRED = {"ingest_aggregate_interval_ms": 3_600_000, "ingest_aggregate_max_events": 1_000_000}


def _pageviews(site_id: int, writer: int, round_: int, count: int, now: float) -> list[Event]:
    return [
        Event(kind=EventKind.PAGEVIEW, site_id=site_id, timestamp=now, name="pageview",
              visitor_id=writer * 1_000_000 + round_ * 1000 + i + 1, path=f"/p{i % 5}")
        for i in range(count)
    ]


def _pending_in(appliance, txn) -> int:
    return txn.stat(appliance.store.dbs[b"pending"])["entries"]


def test_the_writer_folds_for_a_reader_and_the_read_counts_every_acknowledged_event(make_appliance):
    appliance = make_appliance(**DEFERRED)  # only reads fold pending events in
    appliance.jobs.stop()  # no background job reads (or folds) meanwhile
    site = appliance.sites.add("settle.test")
    now = time.time()
    appliance.writer.write_sync(_pageviews(site.id, 0, 0, 40, now))
    assert appliance.recorder.waiting == 40
    day = day_from_number(day_bucket(now))

    assert appliance.stats.aggregate(Query(site=site, date_from=day, date_to=day))["pageviews"] == 40
    reads = appliance.recorder.settled_reads
    assert (reads.served, reads.fell_back) == (1, 0)
    assert appliance.recorder.waiting == 0
    with appliance.coordinator.settled() as txn:  # nothing waits now: settled here, no writer round
        assert _pending_in(appliance, txn) == 0
    assert reads.served == 1


@pytest.mark.parametrize("open_seconds", [settling.OPEN_SECONDS, 0.0])
def test_concurrent_snapshots_hold_no_unaggregated_event(make_appliance, monkeypatch, open_seconds):
    """With 0 s to open, readers race the writer's deadline: those too late settle themselves."""
    monkeypatch.setattr(settling, "OPEN_SECONDS", open_seconds)
    appliance = make_appliance(**DEFERRED)
    appliance.jobs.stop()
    site = appliance.sites.add("settle-race.test")
    now = time.time()
    day = day_from_number(day_bucket(now))
    query = Query(site=site, date_from=day, date_to=day)
    lock = threading.Lock()
    acknowledged = [0]
    failures: list[str] = []
    done = threading.Event()
    started = threading.Event()

    def write(number: int) -> None:
        for round_ in range(20):
            events = _pageviews(site.id, number, round_, 30, now)
            appliance.writer.write_sync(events)
            with lock:
                acknowledged[0] += len(events)
            started.set()

    def read(number: int) -> None:
        started.wait(60)
        made = 0
        try:  # while the writers write, and a few reads after they are done
            while (not done.is_set() or made < 3) and len(failures) < 5:
                with lock:
                    before = acknowledged[0]
                with appliance.coordinator.settled() as txn:
                    if _pending_in(appliance, txn):
                        failures.append(f"reader {number}: {_pending_in(appliance, txn)} unaggregated in a snapshot")
                got = appliance.stats.aggregate(query)["pageviews"]
                if got < before:
                    failures.append(f"reader {number}: {got} page views, {before} acknowledged before")
                made += 1
        except Exception as error:  # noqa: BLE001 - reported by the test
            failures.append(f"reader {number}: {error!r}")

    readers = [threading.Thread(target=read, args=(n,)) for n in range(3)]
    writers = [threading.Thread(target=write, args=(n,)) for n in range(3)]
    for thread in readers + writers:
        thread.start()
    for thread in writers:
        thread.join(120)
    done.set()
    for thread in readers:
        thread.join(120)
    assert not failures, failures[:5]
    assert appliance.stats.aggregate(query)["pageviews"] == acknowledged[0] == 3 * 20 * 30
    reads = appliance.recorder.settled_reads
    assert reads.served + reads.fell_back > 0
    if open_seconds:
        assert reads.served > 0
