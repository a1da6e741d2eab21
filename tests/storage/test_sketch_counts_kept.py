"""``Sketches.count_stored``: the count of a stored sketch, remembered by its bytes, equals
decoding and counting it, for exact, sparse and dense sketches, and stays bounded."""

from __future__ import annotations

import random

from storage import sketches as sketches_module
from storage.keys import DAY, pack_bucket_key
from storage.range_sums import RangeSums
from storage.sketches import DIMENSION_PRECISION, SITE_PRECISION, Sketch, Sketches


def _stored(size: int, precision: int, seed: int) -> bytes:
    rng = random.Random(seed)
    sketch = Sketch(precision)
    sketch.add_many(rng.getrandbits(64) for _ in range(size))
    return sketch.to_bytes()


def test_count_stored_equals_decoding_and_counting(store):
    sketches = Sketches(store)
    raws = [_stored(size, precision, seed) for seed, (size, precision) in enumerate(
        [(0, DIMENSION_PRECISION), (40, DIMENSION_PRECISION), (600, DIMENSION_PRECISION), (60_000, SITE_PRECISION),
         (300, SITE_PRECISION), (20_000, DIMENSION_PRECISION)]
    )]
    assert {raw[:1] for raw in raws} >= {b"E", b"S", b"R"}  # every stored form
    for _ in range(2):  # counted, then remembered
        assert [sketches.count_stored(raw) for raw in raws] == [Sketch.from_bytes(raw).count() for raw in raws]
    grown = Sketch.from_bytes(raws[2])
    grown.add_many(random.Random(99).getrandbits(64) for _ in range(5_000))
    assert sketches.count_stored(grown.to_bytes()) == grown.count() > sketches.count_stored(raws[2])


def test_remembered_counts_are_bounded(store, monkeypatch):
    monkeypatch.setattr(sketches_module, "COUNTS_KEPT", 8)
    sketches = Sketches(store)
    raws = [_stored(300, DIMENSION_PRECISION, seed) for seed in range(20)]
    assert [sketches.count_stored(raw) for raw in raws] == [Sketch.from_bytes(raw).count() for raw in raws]
    assert len(sketches._counts) == 8


def test_kept_unions_follow_a_sketch_written_alone(store):
    """A kept union of closed days is not used once one of its days' sketches changes, even
    by a write that changes no counter (the generation is the sketches' too)."""
    metric, site, first, last = 3, 1, 20_000, 20_020
    plain = Sketches(store, rolled_up={metric: DIMENSION_PRECISION})
    kept = Sketches(store, rolled_up={metric: DIMENSION_PRECISION}, sums=RangeSums(store, 1 << 20))
    rng = random.Random(4)

    def add(sketches, day, dimension, count):
        additions = {pack_bucket_key(site, DAY, metric, day, dimension): (
            DIMENSION_PRECISION, [rng.getrandbits(64) for _ in range(count)])}
        store.write(lambda txn: sketches.add(txn, additions))
        sketches.committed()

    for day in range(first, last + 1):
        for dimension in (1, 2, 3):
            add(kept, day, dimension, rng.choice([3, 40, 400]))

    def unions(sketches, rollups=True):  # a breakdown's few values, and every value
        with store.read() as txn:
            found = sketches.union_days(txn, site, metric, first, last, DIMENSION_PRECISION, {1, 2, 3, 4}, rollups)
            every = sketches.union_days(txn, site, metric, first, last, DIMENSION_PRECISION, None, rollups)
        assert every.keys() >= found.keys()
        return {dimension: sketch.count() for dimension, sketch in found.items()}, {
            dimension: sketch.count() for dimension, sketch in every.items()}

    expected = unions(plain, False)
    assert unions(kept) == unions(kept) == expected
    assert kept.sums.hits >= 4
    add(kept, first + 5, 2, 300)  # a closed day's sketch grows; no counter is written
    add(kept, first + 6, 4, 2)  # a value the kept range did not have
    changed = unions(plain, False)
    assert changed != expected
    assert unions(kept) == unions(kept) == changed
