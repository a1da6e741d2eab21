"""Deferred aggregation: committed events are counted even if the process dies before the
aggregation step, and reads always include every committed event."""

from __future__ import annotations

import time

import pytest

from appliance.config import load_settings
from appliance.models import Event, EventKind
from appliance.periods import day_bucket, day_from_number
from appliance.query.spec import Query
from appliance.runtime.appliance import Appliance


def _views(site, count: int, now: float) -> list[Event]:
    return [
        Event(kind=EventKind.PAGEVIEW, site_id=site.id, timestamp=now, name="pageview", visitor_id=i + 1, path=f"/p{i % 3}")
        for i in range(count)
    ]


def _settings(tmp_path, intake: str = "true"):
    return load_settings(
        environ={"FOOTFALL_INGEST_AGGREGATE_INTERVAL_MS": "3600000", "FOOTFALL_INGEST_AGGREGATE_MAX_EVENTS": "1000000",
                 "FOOTFALL_INGEST_INTAKE": intake},
        data_dir=str(tmp_path / "data"),
    )


@pytest.mark.parametrize("intake", ["true", "false"])
def test_committed_but_unaggregated_events_are_replayed_after_a_crash(tmp_path, intake):
    now = time.time()
    appliance = Appliance(_settings(tmp_path, intake)).open()
    site = appliance.sites.add("crash.test")
    appliance.writer.write_sync(_views(site, 50, now))  # durable, not yet aggregated
    assert appliance.recorder.waiting == 50
    # a crash: the process ends without the aggregation step (no flush, no close); every
    # thread stops with it
    appliance.minute_jobs.stop()
    appliance.scheduler.stop()
    appliance.jobs.stop()
    appliance.writer.stop()
    if appliance.folding is not None:
        appliance.folding.stop()
        assert appliance.intake.last_sequence() == 50 and appliance.store.entries(b"pending") == 0
    appliance.store.close()
    if appliance.intake is not None:
        appliance.intake.close()
    appliance._ownership.release()  # as the kernel does when the process dies

    reopened = Appliance(_settings(tmp_path, intake)).open()
    try:
        day = day_from_number(day_bucket(now))
        totals = reopened.stats.aggregate(Query(site=reopened.sites.get("crash.test"), date_from=day, date_to=day))
        assert totals["pageviews"] == 50
        assert totals["visitors"] == 50
        assert reopened.store.entries(b"pending") == 0
        assert reopened.eventlog.next_sequence == 51  # each event once in the log
    finally:
        reopened.close()


def test_reads_see_every_committed_event(tmp_path):
    now = time.time()
    with Appliance(_settings(tmp_path)) as appliance:
        site = appliance.sites.add("fresh.test")
        appliance.writer.write_sync(_views(site, 7, now))
        assert appliance.recorder.waiting  # still waiting for the (hourly) aggregation step
        day = day_from_number(day_bucket(now))
        assert appliance.stats.aggregate(Query(site=site, date_from=day, date_to=day))["pageviews"] == 7
        assert not appliance.recorder.waiting
