"""Visitor sketches: exact sets up to EXACT_LIMIT, HyperLogLog past it, unions never sums.

The HyperLogLog checks use seeded random 64-bit visitor hashes (visitor ids are keyed
BLAKE2b digests, so uniform) and require every estimate to be within three standard errors
(:func:`storage.sketches.standard_error`) of the true distinct count.
"""

from __future__ import annotations

import random

import numpy as np
import pytest

from storage.keys import DAY, pack_bucket_key
from storage.sketches import (
    DIMENSION_PRECISION,
    EXACT_LIMIT,
    SITE_PRECISION,
    Sketch,
    Sketches,
    sketch_bytes,
    standard_error,
)

SITE = 1
VISITORS = 100
DAYS = 30
DISTINCT_VISITORS = 200_000


@pytest.fixture
def sketches(store) -> Sketches:
    return Sketches(store)


def hashes(count: int, seed: int) -> list[int]:
    rng = random.Random(seed)
    return [rng.getrandbits(64) for _ in range(count)]


def sketch_of(values, precision: int = SITE_PRECISION) -> Sketch:
    sketch = Sketch(precision)
    sketch.add_many(values)
    return sketch


def day_key(day: int, metric: int = VISITORS, dimension: int = 0) -> bytes:
    return pack_bucket_key(SITE, DAY, metric, day, dimension)


def within_three_standard_errors(estimate: int, truth: int, precision: int) -> bool:
    return abs(estimate - truth) <= 3 * standard_error(precision) * truth


# -- exact, then HyperLogLog -------------------------------------------------------------


def test_a_sketch_is_exact_up_to_the_limit_then_becomes_hyperloglog():
    values = hashes(EXACT_LIMIT + 1, seed=1)
    sketch = Sketch(SITE_PRECISION)

    sketch.add_many(values[:EXACT_LIMIT])
    sketch.add_many(values[:10])  # repeat visitors do not count twice

    assert sketch.is_exact
    assert sketch.count() == EXACT_LIMIT
    assert sketch.to_bytes()[:1] == b"E"

    sketch.add_many(values[EXACT_LIMIT:])

    assert not sketch.is_exact
    assert sketch.to_bytes()[:2] == b"S" + bytes([SITE_PRECISION])  # sparse registers
    assert within_three_standard_errors(sketch.count(), EXACT_LIMIT + 1, SITE_PRECISION)


def test_stored_sketches_switch_representation_at_the_limit(store, sketches):
    values = hashes(EXACT_LIMIT + 1, seed=2)
    store.write(lambda txn: sketches.add(txn, {day_key(1): (SITE_PRECISION, values[:EXACT_LIMIT])}))
    with store.read() as txn:
        [(_, _, raw)] = list(sketches.scan(txn, SITE, DAY, VISITORS, 1, 1))
    assert Sketch.from_bytes(raw).exact == set(values[:EXACT_LIMIT])

    store.write(lambda txn: sketches.add(txn, {day_key(1): (SITE_PRECISION, values[EXACT_LIMIT:])}))
    with store.read() as txn:
        [(_, _, raw)] = list(sketches.scan(txn, SITE, DAY, VISITORS, 1, 1))
    stored = Sketch.from_bytes(raw)
    assert not stored.is_exact
    assert stored.precision == SITE_PRECISION


def test_unions_over_days_are_exact_while_the_sets_are_small(store, sketches):
    rng = random.Random(3)
    pool = hashes(150, seed=3)
    daily = {day: set(rng.sample(pool, 40)) for day in range(1, 8)}
    store.write(
        lambda txn: sketches.add(
            txn, {day_key(day): (SITE_PRECISION, list(members)) for day, members in daily.items()}
        )
    )

    with store.read() as txn:
        week = sketches.union(txn, SITE, DAY, VISITORS, 1, 7, SITE_PRECISION)[0]
        midweek = sketches.union(txn, SITE, DAY, VISITORS, 3, 5, SITE_PRECISION)[0]

    truth = set().union(*daily.values())
    assert week.is_exact
    assert week.count() == len(truth)
    assert week.count() < sum(len(members) for members in daily.values())
    assert midweek.count() == len(daily[3] | daily[4] | daily[5])


def test_union_keeps_dimensions_apart_and_can_select_some(store, sketches):
    store.write(
        lambda txn: sketches.add(
            txn,
            {
                day_key(1, metric=110, dimension=1): (DIMENSION_PRECISION, [1, 2, 3]),
                day_key(2, metric=110, dimension=1): (DIMENSION_PRECISION, [3, 4]),
                day_key(1, metric=110, dimension=2): (DIMENSION_PRECISION, [1]),
                day_key(1, metric=111, dimension=1): (DIMENSION_PRECISION, [9]),
            },
        )
    )
    with store.read() as txn:
        every = sketches.union(txn, SITE, DAY, 110, 1, 2, DIMENSION_PRECISION)
        some = sketches.union(txn, SITE, DAY, 110, 1, 2, DIMENSION_PRECISION, dimensions={2})

    assert {dimension: sketch.exact for dimension, sketch in every.items()} == {
        1: {1, 2, 3, 4},
        2: {1},
    }
    assert list(some) == [2]


# -- HyperLogLog accuracy ----------------------------------------------------------------


def overlapping_daily_visitors(seed: int) -> tuple[np.ndarray, list[np.ndarray]]:
    """200k distinct visitors over 30 days: each has a home day and returns on ~10 % of others."""
    rng = np.random.default_rng(seed)
    visitors = np.unique(
        rng.integers(0, 2**64, size=DISTINCT_VISITORS, dtype=np.uint64, endpoint=False)
    )
    home = rng.integers(0, DAYS, size=len(visitors))
    days = [visitors[(home == day) | (rng.random(len(visitors)) < 0.10)] for day in range(DAYS)]
    return visitors, days


@pytest.mark.parametrize("precision", [SITE_PRECISION, DIMENSION_PRECISION])
def test_hyperloglog_union_over_a_month_is_within_three_standard_errors(store, sketches, precision):
    visitors, days = overlapping_daily_visitors(seed=20260301 + precision)
    store.write(
        lambda txn: sketches.add(
            txn, {day_key(day): (precision, members.tolist()) for day, members in enumerate(days)}
        )
    )

    with store.read() as txn:
        month = sketches.union(txn, SITE, DAY, VISITORS, 0, DAYS - 1, precision)[0]
        daily_counts = [
            Sketch.from_bytes(raw).count()
            for _, _, raw in sketches.scan(txn, SITE, DAY, VISITORS, 0, DAYS - 1)
        ]

    truth = len(visitors)
    estimate = month.count()
    relative_error = abs(estimate - truth) / truth
    assert not month.is_exact
    assert relative_error <= 3 * standard_error(precision), (
        f"p={precision}: estimate {estimate} for {truth} distinct, error {relative_error:.4%} "
        f"> 3 x {standard_error(precision):.4%}"
    )
    # Returning visitors make the daily counts add up to far more than the month's visitors.
    assert len(daily_counts) == DAYS
    assert sum(daily_counts) > 3 * truth
    assert estimate < sum(daily_counts) / 3
    # Thirty daily estimates: four standard errors each keeps the chance of a fluke tiny.
    for members, count in zip(days, daily_counts, strict=True):
        assert abs(count - len(members)) <= 4 * standard_error(precision) * len(members)


def test_sketches_are_deterministic_and_independent_of_insertion_order():
    values = hashes(5000, seed=4)
    shuffled = values[:]
    random.Random(5).shuffle(shuffled)

    first = sketch_of(values)
    again = sketch_of(hashes(5000, seed=4))
    in_chunks = Sketch(SITE_PRECISION)
    for start in range(0, len(shuffled), 700):
        in_chunks.add_many(shuffled[start : start + 700])

    assert first.to_bytes() == again.to_bytes() == in_chunks.to_bytes()
    assert first.count() == again.count() == in_chunks.count()


# -- bytes and merges --------------------------------------------------------------------


def test_exact_sketch_round_trips_through_bytes():
    values = hashes(100, seed=6)
    sketch = sketch_of(values)

    data = sketch.to_bytes()
    back = Sketch.from_bytes(data)

    assert back.is_exact
    assert back.exact == set(values)
    assert back.to_bytes() == data
    assert Sketch.from_bytes(Sketch(SITE_PRECISION).to_bytes()).count() == 0


@pytest.mark.parametrize("precision", [SITE_PRECISION, DIMENSION_PRECISION])
def test_hyperloglog_sketch_round_trips_through_bytes(precision):
    sketch = sketch_of(hashes(3000, seed=7), precision)

    data = sketch.to_bytes()
    back = Sketch.from_bytes(data)

    assert not back.is_exact
    assert back.precision == precision
    assert np.array_equal(back.hll.M, sketch.hll.M)
    assert back.count() == sketch.count()
    assert back.to_bytes() == data
    back.add_many(hashes(10, seed=8))  # registers read back are writable
    # sparse (u16 index + u8 rank per filled register) while under a third full, else raw
    assert len(data) <= 2 + (1 << precision)


def test_merging_an_exact_set_into_a_hyperloglog_equals_adding_its_members():
    big = hashes(5000, seed=9)
    small = big[:50] + hashes(100, seed=10)  # 50 already counted, 100 new
    hll = sketch_of(big)
    exact = sketch_of(small)
    assert exact.is_exact and not hll.is_exact

    hll.merge(exact)

    assert hll.to_bytes() == sketch_of(big + small).to_bytes()
    assert within_three_standard_errors(hll.count(), len(set(big + small)), SITE_PRECISION)
    assert exact.exact == set(small)  # the merged-in sketch is not changed


def test_merging_a_hyperloglog_into_an_exact_set_converts_it():
    exact = sketch_of(hashes(100, seed=11))
    hll = sketch_of(hashes(5000, seed=12))

    exact.merge(hll)

    assert not exact.is_exact
    assert exact.to_bytes() == sketch_of(hashes(100, seed=11) + hashes(5000, seed=12)).to_bytes()


def test_merging_exact_sets_stays_exact_until_the_limit():
    left = sketch_of(range(1, 201))
    right = sketch_of(range(101, 251))

    left.merge(right)
    assert left.is_exact and left.count() == 250

    left.merge(sketch_of(range(251, 261)))
    assert not left.is_exact


def test_sketches_of_different_precision_do_not_merge(store, sketches):
    site_sketch = sketch_of(hashes(1000, seed=13), SITE_PRECISION)
    dimension_sketch = sketch_of(hashes(1000, seed=14), DIMENSION_PRECISION)

    with pytest.raises(ValueError, match="precision"):
        site_sketch.merge(dimension_sketch)

    store.write(
        lambda txn: sketches.add(txn, {day_key(1): (SITE_PRECISION, hashes(1000, seed=15))})
    )
    with pytest.raises(ValueError, match="precision"):
        store.write(lambda txn: sketches.add(txn, {day_key(1): (DIMENSION_PRECISION, [1])}))


@pytest.mark.parametrize(("members", "precision"), [(1, 12), (100, 12), (EXACT_LIMIT, 12), (1000, 12), (1000, 14)])
def test_sketch_bytes_is_close_to_what_the_heap_holds(members, precision):
    import tracemalloc

    raw = sketch_of(hashes(members, seed=members), precision).to_bytes()
    tracemalloc.start()
    try:  # decoded, as the cache holds them: each with its own members
        before = tracemalloc.get_traced_memory()[0]
        kept = [Sketch.from_bytes(raw) for _ in range(20)]
        measured = (tracemalloc.get_traced_memory()[0] - before) / len(kept)
    finally:
        tracemalloc.stop()
    assert kept[0].is_exact == (members <= EXACT_LIMIT)
    assert 0.9 * measured <= sketch_bytes(kept[0]) <= 1.1 * measured, (sketch_bytes(kept[0]), measured)


def test_the_write_back_cache_is_bounded_in_bytes(store):
    bounded = Sketches(store, cache_bytes=200_000)
    for day in range(40):  # 40 exact sketches of 200 visitors: ~15 KB each, 600 KB in all
        store.write(lambda txn, day=day: bounded.add(txn, {day_key(day): (DIMENSION_PRECISION, hashes(200, day))}))
        bounded.committed()
        assert bounded.cached_bytes <= 200_000
    assert bounded.cached_bytes == sum(sketch_bytes(sketch) for sketch in bounded._cache.values())
    assert 5 <= bounded.cached_entries < 40  # the least recently used went
    assert day_key(39) in bounded._cache and day_key(0) not in bounded._cache
    # a cached sketch updated again: counted once, at its new size
    store.write(lambda txn: bounded.add(txn, {day_key(39): (DIMENSION_PRECISION, hashes(50, 99))}))
    bounded.committed()
    assert bounded.cached_bytes == sum(sketch_bytes(sketch) for sketch in bounded._cache.values())
    with store.read() as txn:  # and every sketch, cached or dropped, is stored whole
        assert bounded.union(txn, SITE, DAY, VISITORS, 0, 0, DIMENSION_PRECISION)[0].count() == 200
        assert bounded.union(txn, SITE, DAY, VISITORS, 39, 39, DIMENSION_PRECISION)[0].count() == 250
    bounded.forget()
    assert bounded.cached_bytes == 0 and bounded.cached_entries == 0


class _RecordingCursor:
    def __init__(self, cursor, puts: list[bytes]) -> None:
        self._cursor, self._puts = cursor, puts

    def get(self, key):
        return self._cursor.get(key)

    def put(self, key, value):
        self._puts.append(key)
        return self._cursor.put(key, value)


class _RecordingTransaction:
    """A write transaction that notes which keys :meth:`Sketches.add` writes."""

    def __init__(self, txn) -> None:
        self._txn, self.puts = txn, []

    def cursor(self, db):
        return _RecordingCursor(self._txn.cursor(db=db), self.puts)


@pytest.mark.parametrize("members", [40, 1_000], ids=["exact", "hyperloglog"])
def test_a_sketch_an_add_leaves_unchanged_is_not_written_again(store, sketches, members):
    """Every settled read runs an aggregation step first: re-encoding sketches the step did
    not change was most of its cost. Unchanged ones are skipped; changed ones are written,
    and what is stored always equals the sketch of every member added."""
    known = hashes(members, 7)

    def add(values: list[int]) -> list[bytes]:
        def transaction(txn):
            recording = _RecordingTransaction(txn)
            sketches.add(recording, {day_key(1): (DIMENSION_PRECISION, values)})
            return recording.puts

        puts = store.write(transaction)
        sketches.committed()
        return puts

    assert add(known) == [day_key(1)]  # new: written
    assert add(known) == []  # the same members again, the many-hashes path: not written
    assert add(known[:5]) == []  # a few of them, the few-hashes path: not written
    sketches.forget()  # decoded from storage rather than the cache: the same answer
    assert add(known[:100]) == []
    added = known + hashes(300, 8)
    assert add(added[members:]) == [day_key(1)]  # new visitors change it
    with store.read() as txn:
        stored = sketches.union(txn, SITE, DAY, VISITORS, 1, 1, DIMENSION_PRECISION)[0]
    assert stored.to_bytes() == sketch_of(added, DIMENSION_PRECISION).to_bytes()


def test_add_many_says_whether_a_sketch_changed():
    exact = sketch_of(hashes(10, 1), DIMENSION_PRECISION)
    assert not exact.add_many(hashes(10, 1)) and exact.add_many(hashes(1, 2))
    assert exact.add_many(hashes(EXACT_LIMIT, 3)) and not exact.is_exact  # turned into registers
    assert not exact.add_many(hashes(EXACT_LIMIT, 3)) and not exact.add_many(hashes(3, 3))
