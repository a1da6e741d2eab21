"""The hourly job leaves the visits of days a bulk load is still on dirty.

A bulk load of history marks its days visits dirty. The job runner's first hourly run, a
minute into a load of the seed's month, re-derived the days loaded so far from the log (the
load's heap peak, ~450 MB) and held the runner's thread for two minutes, away from the
compactions of the days the load had passed; the days it derived were marked again as their
neighbours were. Days around which a block's worth of a closed day's events waits to be
handed over (:meth:`PassedDays.loading <appliance.runtime.passed_days.PassedDays.loading>`)
now wait for a run after the load; the others are derived as before.
"""

from __future__ import annotations

from appliance.models import Event, EventKind
from tests.appliance.test_arrival_order import _days, report
from tests.appliance.test_rederive_yields import shuffled_history


def test_a_run_leaves_the_deferred_days_dirty_and_derives_the_rest(make_appliance, monkeypatch):
    appliance, ordered, shuffled, specs = shuffled_history(make_appliance, monkeypatch)
    rederiver = appliance.rederiver
    dirty = set(rederiver.dirty)
    deferred = min(dirty)
    assert rederiver.run(force=True, defer=lambda site, day: (site, day) == deferred) >= len(dirty) - 1
    assert rederiver.dirty == {deferred}
    assert rederiver.run(force=True) == 1 and not rederiver.dirty
    first, last = _days([spec["ts"] for spec in specs])
    assert report(appliance, shuffled, first, last) == report(appliance, ordered, first, last)


def test_the_hourly_run_defers_the_days_a_load_is_still_on(make_appliance, monkeypatch):
    appliance, ordered, shuffled, specs = shuffled_history(make_appliance, monkeypatch)
    rederiver, jobs = appliance.rederiver, appliance.jobs
    site, loaded = min(rederiver.dirty)  # the load goes on on this (closed) day
    per_day = max(sum(1 for spec in specs if int(spec["ts"] // 86400) == day) for day in range(loaded - 2, loaded + 4))
    monkeypatch.setattr(appliance.columns, "compact_read_rows", per_day + 1)  # the history's days are no load
    jobs.passed_days.committed([
        Event(kind=EventKind.PAGEVIEW, site_id=site, timestamp=loaded * 86400 + 43_200 + i, name="pageview",
              visitor_id=77, path="/") for i in range(per_day + 1)
    ])
    window = {(site, day) for day in range(loaded - 1, loaded + 2)}

    dirty = set(rederiver.dirty)
    assert jobs.run_once()["rederive_visits"] == len(dirty - window)
    assert rederiver.dirty == dirty & window  # those around the day loaded wait  # those around the day loaded wait

    monkeypatch.setattr(jobs.passed_days, "quiet_seconds", 0.0)
    jobs.passed_days.committed([
        Event(kind=EventKind.PAGEVIEW, site_id=site, timestamp=(loaded + 1) * 86400 + 43_200, name="pageview",
              visitor_id=78, path="/")
    ])  # the load moves on: the day is handed over to compaction
    assert not jobs.passed_days.loading(site, loaded)
    jobs.run_once()
    assert not rederiver.dirty
    first, last = _days([spec["ts"] for spec in specs])
    assert report(appliance, shuffled, first, last) == report(appliance, ordered, first, last)
