"""Caches let go of what went unused (``[memory] release_unused_seconds``, appliance/heap.py
``UnusedCaches``): decoded column blocks no query requested and write-back sketches no fold
wrote for that long are dropped, the rest kept; what is let go is read again, the same."""

from __future__ import annotations

import random
import threading
import time
from datetime import timedelta

import numpy as np

from appliance.events.block_cache import BlockCache
from appliance.events.blocks import Block
from appliance.filters import parse_filters
from appliance.heap import SKETCHES_UNUSED_S, HeapTrimmer, UnusedCaches
from appliance.periods import local_today
from appliance.query.spec import Query
from storage.keys import DAY, pack_bucket_key
from storage.sketches import SITE_PRECISION, Sketches
from tests.appliance.test_columns import _events


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _block(day: int) -> Block:
    return Block(1, day, 100, {"timestamp": np.arange(100, dtype=np.float64)})


def test_the_block_cache_lets_go_of_blocks_requested_before_the_cutoff_only():
    clock = Clock()
    cache = BlockCache(1 << 30, clock=clock)
    first, second, third = _block(1), _block(2), _block(3)
    cache.remember(first)  # at 1000
    clock.now = 1010
    cache.remember(second)
    clock.now = 1020
    cache.remember(third)
    clock.now = 1030
    assert cache.requested((1, 1)) is first  # used again at 1030: now the newest
    epoch, before = cache.epoch, cache.cached_bytes

    freed = cache.let_go_unused(1015)

    assert freed == second.cached_size > 0
    assert cache.peek((1, 2)) is None
    assert cache.peek((1, 1)) is first and cache.peek((1, 3)) is third
    assert cache.cached_bytes == before - freed
    assert cache.epoch == epoch  # what was let go is still current: kept answers stay valid
    assert cache.let_go_unused(1015) == 0
    assert cache.let_go_unused(1031) == first.cached_size + third.cached_size
    assert len(cache) == 0 and cache.cached_bytes == 0


def _key(day: int) -> bytes:
    return pack_bucket_key(1, DAY, 1, day, 0)


def _count(sketches, txn, day: int) -> int:
    return sketches.union(txn, 1, DAY, 1, day, day, SITE_PRECISION)[0].count()


def test_the_sketch_cache_lets_go_of_sketches_written_before_the_cutoff_only(store):
    clock = Clock()
    sketches = Sketches(store, clock=clock)
    rng = random.Random(5)
    for day in (1, 2, 3):
        clock.now = 1000 + 10 * day
        store.write(lambda txn, day=day: sketches.add(
            txn, {_key(day): (SITE_PRECISION, [rng.getrandbits(64) for _ in range(50)])}))
        sketches.committed()
    clock.now = 1040
    store.write(lambda txn: sketches.add(txn, {_key(1): (SITE_PRECISION, [rng.getrandbits(64)])}))
    sketches.committed()
    with store.read() as txn:
        counts = {day: _count(sketches, txn, day) for day in (1, 2, 3)}
    assert sketches.cached_entries == 3
    before = sketches.cached_bytes

    freed = sketches.let_go_unused(1035)  # day 2 (written at 1020) and day 3 (1030)

    assert freed > 0 and sketches.cached_bytes == before - freed
    assert sketches.cached_entries == 1
    assert sketches.let_go_unused(1035) == 0
    # what was let go is read from the store again, the same, and written to as before
    store.write(lambda txn: sketches.add(txn, {_key(2): (SITE_PRECISION, [rng.getrandbits(64)])}))
    sketches.committed()
    with store.read() as txn:
        assert _count(sketches, txn, 3) == counts[3]
        assert _count(sketches, txn, 2) == counts[2] + 1
    left = sketches.cached_bytes
    assert sketches.let_go_unused(clock.now + 1) == left
    assert sketches.cached_entries == 0 and sketches.cached_bytes == 0


def test_an_idle_server_lets_go_of_its_caches_and_answers_the_same_after(appliance):
    site = appliance.sites.add("unused.test", timezone="UTC")
    appliance.record_sync(_events(site, random.Random(11), 600, time.time() - 3 * 86400, 3 * 86400 - 60))
    today = local_today(site.timezone)
    query = Query(site=site, date_from=today - timedelta(days=3), date_to=today,
                  filters=parse_filters("country==DE"))
    answer = appliance.stats.breakdown(query, "page", 10)
    blocks, sketches = appliance.columns.cache, appliance.sketches
    assert blocks.cached_bytes > 0 and sketches.cached_bytes > 0
    trimmer = HeapTrimmer(min_interval_s=0)
    releaser = UnusedCaches(blocks, sketches, appliance.coordinator.mutex, 60, trimmer,
                            clock=lambda: time.monotonic() + 61, trim_from=1)

    # while the writer holds its mutex the sketches are not touched (the next poll tries again)
    held, release = threading.Event(), threading.Event()

    def hold() -> None:
        with appliance.coordinator.mutex:
            held.set()
            release.wait(10)

    holder = threading.Thread(target=hold)
    holder.start()
    held.wait(10)
    try:
        assert releaser.poll() > 0
        assert blocks.cached_bytes == 0 and sketches.cached_bytes > 0
    finally:
        release.set()
        holder.join()
    assert releaser.poll() > 0
    assert sketches.cached_bytes == 0 and sketches.cached_entries == 0
    assert trimmer.trims == 2 and releaser.released_bytes > 0
    appliance.stats.scans.memo.clear()  # a kept answer would hide the blocks' second reading
    assert appliance.stats.breakdown(query, "page", 10) == answer
    assert blocks.cached_bytes > 0


def test_zero_keeps_the_caches(appliance):
    blocks = BlockCache(1 << 30, clock=lambda: 10**9)
    blocks.remember(_block(1))
    releaser = UnusedCaches(blocks, appliance.sketches, appliance.coordinator.mutex, 0, HeapTrimmer())
    assert releaser.poll() == 0 and len(blocks) == 1


def test_sketches_no_fold_wrote_for_half_a_minute_go_before_the_blocks(appliance):
    """The write-back sketches serve only the folds: after a load of history they are the
    passed days', let go after SKETCHES_UNUSED_S though the blocks stay the setting's 120 s;
    a poll that let go of less than its trim threshold does not trim the heap."""
    site = appliance.sites.add("sketches.test", timezone="UTC")
    appliance.record_sync(_events(site, random.Random(12), 300, time.time() - 2 * 86400, 2 * 86400 - 60))
    blocks, sketches = BlockCache(1 << 30), appliance.sketches
    blocks.remember(_block(1))
    assert sketches.cached_bytes > 0
    clock = Clock()
    clock.now = time.monotonic() + SKETCHES_UNUSED_S - 5
    trimmer = HeapTrimmer(min_interval_s=0)
    releaser = UnusedCaches(blocks, sketches, appliance.coordinator.mutex, 120, trimmer, clock=clock)
    assert releaser.poll() == 0 and sketches.cached_bytes > 0  # written under half a minute ago

    clock.now += 10
    cached = sketches.cached_bytes
    assert releaser.poll() == cached  # every sketch; the block (requested just now) stays
    assert sketches.cached_entries == 0 and len(blocks) == 1
    assert trimmer.trims == 0  # a few kilobytes: not worth a trim on their own
    assert releaser.poll() == 0


def test_what_the_polls_let_go_is_trimmed_once_it_adds_up_to_the_threshold(appliance):
    """A load lets go of its passed days' sketches a little at every poll: the heap is
    trimmed once those add up to the threshold, not at every poll, nor never."""
    clock = Clock()
    blocks = BlockCache(1 << 30, clock=clock)
    trimmer = HeapTrimmer(min_interval_s=0)
    probe = _block(0)
    BlockCache(1 << 30).remember(probe)
    one = probe.cached_size  # what a block counts once cached
    releaser = UnusedCaches(blocks, appliance.sketches, appliance.coordinator.mutex, 10, trimmer, clock=clock,
                            trim_from=int(2.5 * one))
    trims = []
    for day in range(1, 7):
        blocks.remember(_block(day))
        clock.now += 11  # the block before this one went unused
        releaser.poll()
        trims.append(trimmer.trims)
    assert releaser.released_bytes == 6 * one
    assert trims == [0, 0, 1, 1, 1, 2]  # after the 3rd block let go, and the 6th


def test_a_trim_the_interval_held_back_comes_at_a_later_poll(appliance):
    """The trimmer runs at most once a second (its other callers share it): what the polls let
    go is trimmed at a later poll, even one that lets go of nothing more."""
    clock = Clock()
    blocks = BlockCache(1 << 30, clock=clock)
    trimmer = HeapTrimmer(min_interval_s=3600)
    assert trimmer.trim()  # another caller just trimmed: the next trim is held back
    releaser = UnusedCaches(blocks, appliance.sketches, appliance.coordinator.mutex, 10, trimmer, clock=clock,
                            trim_from=1)
    blocks.remember(_block(1))
    clock.now += 11
    assert releaser.poll() > 0 and trimmer.trims == 1  # let go; its trim held back
    trimmer.min_interval_s = 0
    assert releaser.poll() == 0 and trimmer.trims == 2  # nothing more let go: the trim comes now
    assert releaser.poll() == 0 and trimmer.trims == 2  # and only once
