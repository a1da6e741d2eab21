"""Closed days that batches of history left in the event log (a backfill over the API, no
importer to ask) are compacted by the job runner's sweep once they stop changing."""

from __future__ import annotations

import time

from appliance.models import Event, EventKind


def _history(site_id: int, days: list[int], count: int, now: float, offset: int = 0) -> list[Event]:
    return [
        Event(kind=EventKind.PAGEVIEW, site_id=site_id, timestamp=min(days[i % len(days)] * 86400 + 3600 + offset + i, now - 1),
              name="pageview", visitor_id=2000 + i % 41, path=f"/h/{i % 7}")
        for i in range(count)
    ]


def test_the_sweep_compacts_closed_days_whose_log_stopped_changing(make_appliance):
    appliance = make_appliance()
    appliance.columns.compact_read_rows = 50  # small days here; 20,000 log rows by default
    appliance.columns.compaction_wanted = None  # only the sweep asks here (not a block built from the log)
    site = appliance.sites.add("backfill.example")
    now = time.time()
    today = int(now // 86400)
    past = [today - 4, today - 3, today - 2]
    appliance.record_sync(_history(site.id, past, 450, now))
    appliance.record_sync(_history(site.id, [today - 5], 20, now))  # too few rows to be worth a block now

    assert appliance.jobs.sweep() == 0  # first look: nothing known to be quiet yet
    appliance.record_sync(_history(site.id, [today - 2], 60, now, offset=5000))  # still being written
    assert appliance.jobs.sweep() == 2  # the two days that did not change
    assert appliance.jobs.compactions.wait(timeout=60)
    with appliance.store.read() as txn:
        assert appliance.columns.blocks.days(txn, site.id) == [today - 4, today - 3]
        assert appliance.columns.log_days(txn, site.id, 0, today - 1) == [today - 5, today - 2]

    assert appliance.jobs.sweep() == 1  # today - 2 has stopped changing since
    assert appliance.jobs.compactions.wait(timeout=60)
    with appliance.store.read() as txn:
        assert appliance.columns.blocks.days(txn, site.id) == [today - 4, today - 3, today - 2]
        assert appliance.columns.log_days(txn, site.id, 0, today - 1) == [today - 5]
        assert sum(appliance.columns.day_count(txn, site.id, day) for day in past) == 510
