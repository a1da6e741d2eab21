"""A stopping server ends the job runner's long runs at their next day.

After a bulk load the first hourly run re-derives dozens of days and compacts the closed
ones, seconds each. Stopping the server in the middle of it waited for the whole run, past
the worker's kill timeout (``footfall serve`` gives it 8 s: it was killed). The runs now
begin no further day once the runner is told to stop; what they leave stays dirty or in the
log, for the next start's first run.
"""

from __future__ import annotations

import random
import threading
import time

from appliance.periods import day_bucket
from tests.appliance.test_arrival_order import _days, report
from tests.appliance.test_columns import _events
from tests.appliance.test_rederive_yields import shuffled_history

DAY = 86_400


def test_a_stopped_re_derivation_begins_no_further_day_and_the_next_run_finishes(make_appliance, monkeypatch):
    appliance, ordered, shuffled, specs = shuffled_history(make_appliance, monkeypatch)
    rederiver = appliance.rederiver
    dirty = len(rederiver.dirty)
    stop = threading.Event()
    one_day = rederiver._rederive_one

    def then_stop(key, scan):
        done = one_day(key, scan)
        stop.set()  # told to stop while this day was derived
        return done

    monkeypatch.setattr(rederiver, "_rederive_one", then_stop)
    assert rederiver.run(force=True, stop=stop) == 1
    assert len(rederiver.dirty) == dirty - 1

    monkeypatch.setattr(rederiver, "_rederive_one", one_day)
    assert rederiver.run(force=True) == dirty - 1
    assert not rederiver.dirty
    first, last = _days([spec["ts"] for spec in specs])
    assert report(appliance, shuffled, first, last) == report(appliance, ordered, first, last)


def test_a_stopped_compaction_leaves_the_days_it_did_not_begin_in_the_log(appliance, monkeypatch):
    site = appliance.sites.add("compact-stop.test", timezone="UTC")
    midnight = time.time() // DAY * DAY
    appliance.record_sync(_events(site, random.Random(5), 300, midnight - 4 * DAY, 3 * DAY))
    columns = appliance.columns
    today = day_bucket(time.time())
    with appliance.store.read() as txn:
        in_log = columns.log_days(txn, site.id, 0, today)
    assert len(in_log) == 3
    stop = threading.Event()
    compact_day = columns.compact_day

    def then_stop(site_id, day):
        written = compact_day(site_id, day)
        stop.set()
        return written

    monkeypatch.setattr(columns, "compact_day", then_stop)
    assert columns.compact(site.id, 0, today, stop) == 1
    with appliance.store.read() as txn:
        assert columns.log_days(txn, site.id, 0, today) == in_log[1:]

    monkeypatch.setattr(columns, "compact_day", compact_day)
    assert columns.compact(site.id, 0, today) == 2
    with appliance.store.read() as txn:
        assert columns.log_days(txn, site.id, 0, today) == []


def test_stopping_the_runner_ends_its_hourly_run_after_the_day_under_way(make_appliance, monkeypatch):
    appliance, _, _, _ = shuffled_history(make_appliance, monkeypatch)
    rederiver, jobs = appliance.rederiver, appliance.jobs
    dirty = len(rederiver.dirty)
    inside, release = threading.Event(), threading.Event()
    one_day = rederiver._rederive_one

    def held(key, scan):
        inside.set()
        assert release.wait(30)  # a long day: the runner is told to stop meanwhile
        return one_day(key, scan)

    monkeypatch.setattr(rederiver, "_rederive_one", held)
    results: dict = {}
    run = threading.Thread(target=lambda: results.update(jobs.run_once()))
    run.start()
    assert inside.wait(30)
    stopping = threading.Thread(target=jobs.stop)
    stopping.start()
    while not jobs._stop.is_set():
        time.sleep(0.001)
    release.set()
    run.join(30)
    stopping.join(30)
    assert not run.is_alive() and not stopping.is_alive()
    assert results["rederive_visits"] == 1  # the day under way, no further one
    assert len(rederiver.dirty) == dirty - 1
    assert "compact_columns" not in results and "backup" not in results  # nor the jobs after it
