"""A batch the store took stays acknowledged when the aggregation step after it fails on a full disk.

The writer folds committed events into the aggregates between commits once enough are
waiting (``ingest.aggregate_max_events``; ``Recorder.aggregate_slice``). If that step fails
(``StorageFullError``), the batch
is already durable: the commit must not fail with it, or the ingest writer answers 503 for
stored events (a client sends them again) and a standby applies the batch twice (its cursor is
advanced only when the commit returns). Here the aggregation step is made to fail the way a
full disk fails it, once; the events stay pending and are counted by the next step.
"""

from __future__ import annotations

import time

from appliance.models import Event, EventKind
from storage import StorageFullError


def test_a_commit_stays_acknowledged_when_the_aggregation_after_it_fails(make_appliance, monkeypatch):
    # the writer's step between commits (no folding thread beside the test's own call)
    appliance = make_appliance(ingest_aggregate_max_events=1, ingest_intake="false")
    site = appliance.sites.add("full.test")
    now = time.time()
    events = [
        Event(kind=EventKind.PAGEVIEW, site_id=site.id, timestamp=now, name="pageview", visitor_id=visitor,
              path=f"/p{visitor}")
        for visitor in range(1, 6)
    ]
    recorder, coordinator = appliance.recorder, appliance.coordinator
    failures = []

    def full_disk(limit: int | None = None, idle_visits: bool = False) -> int:
        failures.append(recorder.waiting)
        raise StorageFullError("disk error while writing: mdb_txn_commit: No space left on device")

    keys = recorder.commit(events)
    monkeypatch.setattr(recorder, "aggregate_pending", full_disk)
    assert recorder.aggregation_due()
    assert recorder.aggregate_slice() is False  # the aggregation step after it fails: the commit stands
    monkeypatch.undo()
    assert failures == [5] and len(keys) == 5
    assert recorder.waiting == 5  # stored, not yet aggregated
    assert coordinator.flush() == 5 and recorder.waiting == 0  # the next step counts them
    stored = [event.path for _, event in appliance.events(site, now - 1, now + 1)]
    assert stored == [f"/p{v}" for v in range(1, 6)]  # once each
