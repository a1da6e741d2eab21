"""The column-block cache's bound holds while a report runs: every column a cached block
loads lazily, and every visit array it decodes, counts against ``[memory]``'s share at once
(issue 17: after a filtered 30-day query at the seed's month the cache held 195 MB of arrays
it counted as 70 MB, because loads were counted only at the block's next request)."""

from __future__ import annotations

import random
import time
from datetime import timedelta

import pytest

from appliance.filters import parse_filters
from appliance.periods import local_today
from appliance.query.spec import Query
from appliance.runtime.jobs import compact_closed_days
from tests.appliance.test_columns import _events

FILTERS = ("entry_page==/a", "country==DE;source==Google", "page==/b/*", "event==purchase")


@pytest.fixture
def compacted(appliance):
    site = appliance.sites.add("heap.test", timezone="Europe/Berlin")
    appliance.record_sync(
        _events(site, random.Random(17), 3000, time.time() - 6 * 86400, 6 * 86400 - 60)
    )
    compact_closed_days(appliance)
    appliance.stats.scans.forget()
    return appliance, site


def _run(appliance, site, text):
    today = local_today(site.timezone)
    query = Query(
        site=site, date_from=today - timedelta(days=7), date_to=today, filters=parse_filters(text)
    )
    stats = appliance.stats
    return [
        stats.aggregate(query),
        stats.breakdown(query, "page", 10),
        stats.entry_pages(query, 10),
        stats.timeseries(query),
    ]


def test_every_array_a_cached_block_holds_is_counted(compacted):
    appliance, site = compacted
    cache = appliance.columns.cache
    cache.limit_bytes = 1 << 40  # nothing is dropped: the count alone is checked
    for text in FILTERS:
        _run(appliance, site, text)
        blocks = cache.blocks()
        assert sum(block.stored for block in blocks) >= 3
        for block in blocks:
            assert block.cached_size >= block.nbytes() > 0
        assert cache.cached_bytes == sum(block.cached_size for block in blocks)


def test_the_cache_stays_within_its_bound_after_each_report(compacted):
    appliance, site = compacted
    cache, scans = appliance.columns.cache, appliance.stats.scans
    cache.limit_bytes = 1 << 40
    for text in FILTERS:
        _run(appliance, site, text)
    whole = sum(block.nbytes() for block in cache.blocks())
    cache.limit_bytes = whole // 3
    for text in FILTERS:
        scans.memo.clear()  # scanned again: columns loaded lazily by the reports themselves
        answers = _run(appliance, site, text)
        held = cache.blocks()
        assert len(held) == 1 or sum(block.nbytes() for block in held) <= cache.limit_bytes
        assert cache.cached_bytes <= cache.limit_bytes or len(held) == 1
        scans.forget()
        assert (
            _run(appliance, site, text) == answers
        )  # dropping blocks mid-report changes no answer


def test_stored_visits_share_the_blocks_decoded_visit_rows(compacted):
    appliance, site = compacted
    _run(appliance, site, "entry_page==/a")
    stored = [block for block in appliance.columns.cache.blocks() if block.stored]
    assert stored
    for block in stored:
        visits = block.local_visits(block.timeout_ms)
        assert visits["visit_of"] is block.column_visit_rows()
