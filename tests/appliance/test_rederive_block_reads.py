"""Re-deriving visits reads column blocks for itself, never into the shared block cache.

A bulk load's late events mark its days *visits dirty*; re-deriving them read every day's
block (from the log, hundreds of thousands of rows a day at the seed's month) through the
shared cache, which held them for days nobody asked about, up to its bound. A run keeps the
blocks it reads in its own :class:`ScanBlocks` (consecutive days share two of their three UTC
days), and the figures are those of in-order arrival.
"""

from __future__ import annotations

import numpy as np

from appliance.events.block_cache import ScanBlocks
from appliance.events.blocks import Block
from appliance.periods import day_bucket
from tests.appliance.test_arrival_order import _days, report
from tests.appliance.test_rederive_yields import shuffled_history


def test_a_run_leaves_the_shared_block_cache_as_it_was(make_appliance, monkeypatch):
    appliance, ordered, shuffled, specs = shuffled_history(make_appliance, monkeypatch)
    appliance.columns.forget()
    assert len(appliance.columns.cache) == 0

    assert appliance.rederiver.run(force=True) >= 3
    assert not appliance.rederiver.dirty
    assert len(appliance.columns.cache) == 0  # the run read every day's block, and kept none

    first, last = _days([spec["ts"] for spec in specs])
    assert report(appliance, shuffled, first, last) == report(appliance, ordered, first, last)


def test_a_run_uses_the_blocks_the_shared_cache_holds_and_adds_none(make_appliance, monkeypatch):
    appliance, _, shuffled, specs = shuffled_history(make_appliance, monkeypatch)
    columns = appliance.columns
    days = range(day_bucket(min(s["ts"] for s in specs)), day_bucket(max(s["ts"] for s in specs)) + 1)
    held = {day: columns.block(shuffled.id, day) for day in days}  # a query read them
    before = len(columns.cache)

    appliance.rederiver.run(force=True)

    assert len(columns.cache) == before
    assert all(columns.cache.holds(block) for block in held.values())


def test_consecutive_days_of_a_run_share_their_blocks(make_appliance, monkeypatch):
    appliance, _, shuffled, specs = shuffled_history(make_appliance, monkeypatch)
    appliance.columns.forget()
    scan = ScanBlocks()
    day = day_bucket(min(s["ts"] for s in specs)) + 1
    appliance.rederiver.rederive_day(shuffled.id, day, scan=scan)
    middle = appliance.columns.block(shuffled.id, day, scan)
    appliance.rederiver.rederive_day(shuffled.id, day + 1, scan=scan)
    assert appliance.columns.block(shuffled.id, day, scan) is middle  # read once for both days
    assert len(scan) <= scan.limit and len(appliance.columns.cache) == 0


def test_scan_blocks_make_room_before_a_block_is_built():
    scan = ScanBlocks(limit=2)
    for day in (1, 2):
        assert scan.requested((1, day)) is None
        scan.remember(Block(1, day, 0, {}))
    assert scan.requested((1, 1)) is not None  # now the most recently requested
    assert scan.requested((1, 3)) is None and len(scan) == 1  # day 2 went before day 3 is built
    scan.remember(Block(1, 3, 0, {}))
    assert scan.requested((1, 1)) is not None and scan.requested((1, 2)) is None


def test_scan_blocks_keep_at_most_their_bytes():
    def block(day: int, rows: int) -> Block:
        return Block(1, day, rows, {"ts": np.zeros(rows, np.int64)})  # 8 bytes a row

    scan = ScanBlocks(limit=3, limit_bytes=2_000)
    for day in (1, 2):
        assert scan.requested((1, day)) is None
        scan.remember(block(day, 100))  # 800 bytes each: both kept
    assert len(scan) == 2
    assert scan.requested((1, 3)) is None
    scan.remember(block(3, 100))  # 2,400 bytes: the least recently requested goes
    assert len(scan) == 2 and scan.requested((1, 1)) is None
    scan.remember(block(4, 1_000))  # larger than the bound alone: nothing kept, not even it
    assert len(scan) == 0


def test_the_appliance_bounds_a_runs_blocks_by_the_column_cache_share(make_appliance):
    appliance = make_appliance()
    assert appliance.rederiver.scan_bytes == appliance.memory.column_cache_bytes > 0
