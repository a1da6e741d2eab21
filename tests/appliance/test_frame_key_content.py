"""A period's frame key names which rows each day holds (``ColumnStore.frame_key``): a compaction
stores a day's rows again as they are and keeps the key, so the answers kept on it (the day
sets, the report memo) stay kept; a rewrite that drops rows or changes the visit figures
changes it. Before, a compaction bumped the key through the block's generation, and a
filtered dashboard that met yesterday's compaction walked its whole period twice."""

from __future__ import annotations

import random
import time

import numpy as np
import pytest
from test_background_walks import _week
from test_daywise_partials import _events

from appliance.query import daysets
from appliance.query.selection import span_ms

DAY = 86400


@pytest.fixture
def loaded(make_appliance):
    appliance = make_appliance()
    appliance.jobs.stop()  # compactions happen when the test says
    site = appliance.sites.add("content.example", timezone="UTC")
    appliance.record_sync(_events(site, random.Random(11), 6))
    return appliance, site


def _days(key) -> dict:
    return {day: (content, total) for day, content, total, _start, _end in key[1:]}


def test_a_compaction_keeps_the_key_and_the_kept_day_set(loaded, monkeypatch):
    appliance, site = loaded
    columns, scans = appliance.columns, appliance.stats.scans
    query = _week(site, "country==DE")
    walks = []
    plain = daysets.day_set
    monkeypatch.setattr(daysets, "day_set", lambda *args: walks.append(1) or plain(*args))
    before = columns.frame_key(site.id, *span_ms(query))
    first = scans.day_sets.get(scans, query)
    today = int(time.time() // DAY)
    assert columns.compact(site.id, today - 7, today) >= 5  # the closed days, from the log
    assert columns.frame_key(site.id, *span_ms(query)) == before
    assert scans.day_sets.get(scans, query) is first and len(walks) == 1  # kept, not walked again
    scans.forget()
    assert scans.day_sets.get(scans, query) is not first and len(walks) == 2
    fresh = scans.day_sets.get(scans, query)
    assert _comparable(fresh) == _comparable(first)  # the same answers from the blocks


def _comparable(found: dict) -> dict:
    """A day set's answers, comparable (its breakdowns are callables)."""
    return {name: value for name, value in found.items() if not callable(value)}


def test_a_rewrite_without_rows_or_with_new_visit_figures_changes_the_key(loaded):
    appliance, site = loaded
    columns = appliance.columns
    today = int(time.time() // DAY)
    span = ((today - 6) * DAY * 1000, (today + 1) * DAY * 1000)
    columns.compact(site.id, today - 7, today)
    compacted = _days(columns.frame_key(site.id, *span))
    day = today - 3
    assert columns.erase_rows(site.id, day, lambda block: np.arange(block.count) == 0) == 1
    erased = _days(columns.frame_key(site.id, *span))
    assert erased[day][0] > compacted[day][0] and erased[day][1] == compacted[day][1]  # counters untouched
    assert {d: v for d, v in erased.items() if d != day} == {d: v for d, v in compacted.items() if d != day}
    columns.timeout_ms += 60_000  # another visit timeout: every stored day is encoded again
    columns.compact(site.id, today - 7, today)
    retimed = _days(columns.frame_key(site.id, *span))
    assert all(retimed[d][0] > erased[d][0] for d in erased if d != today)
    columns.compact(site.id, today - 7, today)  # nothing to do: the same key
    assert _days(columns.frame_key(site.id, *span)) == retimed
