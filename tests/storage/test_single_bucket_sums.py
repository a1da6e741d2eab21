"""A one-bucket read (a single day: today's widgets) skips the summing sort (issue 17).

Its keys hold each dimension once and in order, so ``sum_days`` of one day must equal
the sorted, summed answer of a scan — for rolled-up and plain metrics, through the rollups
or day by day, and next to a range of several days that still sums.
"""

from __future__ import annotations

import random

from storage.counters import Counters
from storage.keys import DAY, pack_bucket_key

PAGEVIEWS = 1


def test_one_day_sums_equal_the_scanned_totals(store):
    counters = Counters(store, rolled_up=frozenset({PAGEVIEWS}))
    rng = random.Random(17)
    deltas: dict[bytes, int] = {}
    for day in (100, 101, 102):
        for dimension in rng.sample(range(1, 2**32 - 1), 300) + [0, 2**32 - 1]:
            deltas[pack_bucket_key(1, DAY, PAGEVIEWS, day, dimension)] = rng.randint(1, 50)
    store.write(lambda txn: counters.apply(txn, deltas))
    with store.read() as txn:
        for day in (100, 101, 102):
            scanned: dict[int, int] = {}
            for _, dimension, value in counters.scan(txn, 1, DAY, PAGEVIEWS, day, day):
                scanned[dimension] = scanned.get(dimension, 0) + value
            for rolled in (True, False):
                one = counters.sum_days(txn, 1, PAGEVIEWS, day, day, rolled)
                assert one == scanned and list(one) == sorted(scanned)
        three: dict[int, int] = {}
        for _, dimension, value in counters.scan(txn, 1, DAY, PAGEVIEWS, 100, 102):
            three[dimension] = three.get(dimension, 0) + value
        assert counters.sum_days(txn, 1, PAGEVIEWS, 100, 102, False) == three
        assert counters.sum_days(txn, 1, PAGEVIEWS, 103, 103) == {}
