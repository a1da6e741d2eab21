"""One memory budget bounds every cache (appliance/memory.py)."""

from __future__ import annotations

import pytest

from appliance.memory import BYTES_PER_ESTIMATE, BYTES_PER_VISIT, SHARES, plan_memory


def test_the_budget_is_split_between_the_caches():
    plan = plan_memory(160, 500_000)
    assert plan.budget_bytes == 160 << 20
    assert plan.column_cache_bytes == int((160 << 20) * SHARES["column_blocks"])
    assert plan.max_open_visits == int((160 << 20) * SHARES["open_visits"]) // BYTES_PER_VISIT
    assert plan_memory(160, 5_000).max_open_visits == 5_000  # the sites setting, when lower
    bigger = plan_memory(1024, 500_000)
    assert plan.sketch_cache_bytes == int((160 << 20) * SHARES["sketches"])
    assert bigger.sketch_cache_bytes > plan.sketch_cache_bytes
    assert bigger.string_cache_entries > plan.string_cache_entries
    assert plan.estimates_kept == int((160 << 20) * SHARES["estimates"]) // BYTES_PER_ESTIMATE
    assert bigger.estimates_kept > plan.estimates_kept
    assert sum(SHARES.values()) == pytest.approx(1.0)


def test_an_appliance_takes_its_bounds_from_the_setting(make_appliance):
    appliance = make_appliance(memory_budget_mb=64)
    assert appliance.memory == plan_memory(64, appliance.settings.sites.max_open_visits)
    assert appliance.visits.max_open == appliance.memory.max_open_visits
    assert appliance.strings.max_cached == appliance.memory.string_cache_entries
    assert appliance.sketches.cache_limit == appliance.memory.sketch_cache_bytes
    assert appliance.stats.counted.estimates.kept == appliance.memory.estimates_kept


def test_readahead_is_on_by_default_and_the_storage_setting_turns_it_off(make_appliance):
    # [storage] readahead: off opens the map with MDB_NORDAHEAD (fewer pages resident while
    # a load writes; the first scans after it fault page by page), see storage/environment.py
    assert make_appliance().store.env.flags()["readahead"] is True
    assert make_appliance(storage_readahead="false").store.env.flags()["readahead"] is False
