"""A report over a large frame gives the heap it freed back to the system (appliance/heap.py)."""

from __future__ import annotations

import random
import time
from datetime import timedelta

from appliance import heap
from appliance.filters import parse_filters
from appliance.heap import HeapTrimmer
from appliance.periods import local_today
from appliance.query.spec import Query
from tests.appliance.test_columns import _events


def test_the_trimmer_trims_at_most_once_per_interval():
    trimmer = HeapTrimmer(min_interval_s=3600)
    assert trimmer.available  # Debian's glibc, as in the image
    assert not trimmer.after_rows(heap.LARGE_FRAME_ROWS - 1)
    assert trimmer.after_rows(heap.LARGE_FRAME_ROWS)
    assert not trimmer.trim()  # within the interval
    assert trimmer.trims == 1


def test_a_scanned_report_over_a_large_frame_trims_and_a_kept_answer_does_not(
    appliance, monkeypatch
):
    site = appliance.sites.add("trim.test", timezone="UTC")
    appliance.record_sync(
        _events(site, random.Random(3), 400, time.time() - 2 * 86400, 2 * 86400 - 60)
    )
    memo = appliance.stats.scans.memo
    memo.trimmer.min_interval_s = 0
    today = local_today(site.timezone)
    query = Query(
        site=site,
        date_from=today - timedelta(days=3),
        date_to=today,
        filters=parse_filters("country==DE"),
    )
    monkeypatch.setattr(heap, "LARGE_FRAME_ROWS", 10**9)
    appliance.stats.aggregate(query)
    assert memo.trimmer.trims == 0  # a small frame: nothing worth trimming
    monkeypatch.setattr(heap, "LARGE_FRAME_ROWS", 100)  # the 400 events are a "large" frame now
    appliance.stats.breakdown(query, "page", 10)
    assert memo.trimmer.trims == 1
    appliance.stats.breakdown(query, "page", 10)  # a kept answer: no scan, no trim
    assert memo.trimmer.trims == 1
