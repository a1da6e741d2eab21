"""A visits-dirty day's window read and sessionised in the build helper process
(appliance/events/compaction_build.py, appliance/ingest/rederive_window.py): the same window as
read in process, from log rows and from compacted blocks with late rows alike; a forced run
re-derives big days there, with the figures of in-order arrival; a helper that fails leaves
the day to the process."""

from __future__ import annotations

import dataclasses

import numpy as np

from appliance.events.blocks import DAY_MS
from appliance.events.compaction_build import BuildHelper, HelperFailed
from appliance.events.rederive_window import LastVisits, Window, derive_window
from appliance.events.window_reader import WindowReader
from appliance.models import EventKind
from tests.appliance.test_arrival_order import _days, _event, report
from tests.appliance.test_rederive_yields import DAY, shuffled_history


def _in_process(appliance, site_id: int, day: int) -> Window:
    rederiver, columns = appliance.rederiver, appliance.columns
    first_ms, end_ms = rederiver._bounds(day, rederiver._kept(site_id, day))
    return derive_window(lambda lo, hi: columns.frame(site_id, lo, hi), lambda lo, hi: columns.frame_key(site_id, lo, hi),
                         first_ms, end_ms, columns.timeout_ms)


def _in_helper(appliance, site_id: int, day: int) -> Window:
    rederiver, columns = appliance.rederiver, appliance.columns
    first_ms, end_ms = rederiver._bounds(day, rederiver._kept(site_id, day))
    with columns.compaction_session():
        return columns.build_helper.derive(site_id, first_ms, end_ms, columns.timeout_ms)


def _assert_same(helper: Window, process: Window) -> None:
    plain = ("lo", "hi", "frame_key", "size", "counters", "crossing_before", "crossing_after")
    assert {name: getattr(helper, name) for name in plain} == {name: getattr(process, name) for name in plain}
    assert helper.sketches.keys() == process.sketches.keys()
    for metric, members in helper.sketches.items():
        assert {dim: sketch.to_bytes() for dim, sketch in members.items()} == {
            dim: sketch.to_bytes() for dim, sketch in process.sketches[metric].items()}
    for field in dataclasses.fields(LastVisits):
        assert np.array_equal(getattr(helper.last, field.name), getattr(process.last, field.name)), field.name


def test_the_helper_reads_the_window_the_process_reads(make_appliance, monkeypatch):
    appliance, ordered, shuffled, specs = shuffled_history(make_appliance, monkeypatch)
    appliance.jobs.stop()
    dirty = sorted(key for key in appliance.rederiver.dirty if key[0] == shuffled.id)
    assert dirty
    for site_id, day in dirty:  # every day still in the log
        _assert_same(_in_helper(appliance, site_id, day), _in_process(appliance, site_id, day))
    # compacted, then a late event on one of the days: a stored block and a log row after it
    days = [day for _, day in dirty]
    appliance.columns.compact(shuffled.id, min(days) - 1, max(days) + 1)
    late = {"visitor": 5, "ts": days[0] * DAY + 15 * 3600, "kind": EventKind.PAGEVIEW, "path": "/late",
            "source": "", "channel": "Direct"}
    appliance.record_sync([_event(shuffled, late)])
    assert appliance.columns.compactions
    for site_id, day in dirty:
        _assert_same(_in_helper(appliance, site_id, day), _in_process(appliance, site_id, day))


def test_a_forced_run_rederives_big_days_in_the_helper(make_appliance, monkeypatch):
    appliance, ordered, shuffled, specs = shuffled_history(make_appliance, monkeypatch)
    appliance.columns.helper_events = 1  # 20,000 events by default
    helper = appliance.columns.build_helper
    assert appliance.rederiver.run(force=True) >= 3
    assert helper.derives >= 3 and helper._process is None  # used, and gone after the run
    assert not appliance.rederiver.dirty
    first, last = _days([spec["ts"] for spec in specs])
    assert report(appliance, shuffled, first, last) == report(appliance, ordered, first, last)


def test_a_helper_that_fails_leaves_the_day_to_the_process(make_appliance, monkeypatch):
    appliance, ordered, shuffled, specs = shuffled_history(make_appliance, monkeypatch)
    appliance.columns.helper_events = 1

    asked = []

    def failing(self, *args):
        asked.append(args)
        raise HelperFailed("the build helper failed: a test")

    monkeypatch.setattr(BuildHelper, "derive", failing)
    assert appliance.rederiver.run(force=True) >= 3
    assert len(asked) >= 3  # each day went to the helper first
    assert not appliance.rederiver.dirty
    first, last = _days([spec["ts"] for spec in specs])
    assert report(appliance, shuffled, first, last) == report(appliance, ordered, first, last)


def test_the_helper_decodes_only_a_log_days_rows_in_the_window(make_appliance, monkeypatch):
    """A window that cuts two days still in the log decodes their rows in range only: nothing
    in the helper caches a day, so the rest would be memory (and mapped pages) for nothing."""
    appliance, ordered, shuffled, specs = shuffled_history(make_appliance, monkeypatch)
    appliance.jobs.stop()
    stamps = sorted(int(spec["ts"] * 1000) for spec in specs)
    per_day = len(stamps) // 3
    lo, hi = stamps[per_day // 2], stamps[per_day + per_day // 2]  # mid-first day to mid-second
    reader = WindowReader(appliance.store)
    with appliance.store.read() as txn:
        in_range = sum(1 for _ in reader.eventlog.scan(txn, shuffled.id, lo, hi))
        whole_days = sum(1 for _ in reader.eventlog.scan(txn, shuffled.id, lo // DAY_MS * DAY_MS, (hi // DAY_MS + 1) * DAY_MS))
        frame = reader.frame(txn, shuffled.id, lo, hi)
    assert 0 < in_range < whole_days and len(frame.parts) == 2
    assert frame.size == in_range and sum(block.count for block, _, _ in frame.parts) == in_range
    assert all(lo <= ts < hi for block, _, _ in frame.parts for ts in block.scalar("ts"))
