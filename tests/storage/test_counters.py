"""Counters: deltas applied in one transaction in key order, a bucket range read as one scan."""

from __future__ import annotations

import pytest

from storage.counters import Counters
from storage.keys import DAY, HOUR, pack_bucket_key

PAGEVIEWS = 1
EVENTS = 5


@pytest.fixture
def counters(store) -> Counters:
    return Counters(store)


def key(
    site: int = 1,
    metric: int = PAGEVIEWS,
    bucket: int = 100,
    dimension: int = 0,
    granularity: int = DAY,
) -> bytes:
    return pack_bucket_key(site, granularity, metric, bucket, dimension)


def read(store, counters, site=1, metric=PAGEVIEWS, first=0, last=2**32 - 1, granularity=DAY):
    with store.read() as txn:
        return list(counters.scan(txn, site, granularity, metric, first, last))


class Boom(Exception):
    pass


def test_deltas_add_up_across_transactions(store, counters):
    store.write(lambda txn: counters.apply(txn, {key(bucket=1): 3, key(bucket=2): 1}))
    store.write(lambda txn: counters.apply(txn, {key(bucket=1): 4}))

    assert read(store, counters) == [(1, 0, 7), (2, 0, 1)]


def test_a_batch_of_deltas_is_all_or_nothing(store, counters):
    store.write(lambda txn: counters.apply(txn, {key(bucket=1): 1}))

    def fails_after_applying(txn):
        counters.apply(txn, {key(bucket=1): 10, key(bucket=2): 10, key(site=2): 10})
        raise Boom

    with pytest.raises(Boom):
        store.write(fails_after_applying)

    assert read(store, counters) == [(1, 0, 1)]
    assert read(store, counters, site=2) == []


def test_scan_returns_exactly_the_buckets_in_the_inclusive_range(store, counters):
    deltas = {
        key(bucket=bucket, dimension=dimension): bucket * 10 + dimension
        for bucket in range(20)
        for dimension in (0, 7)
    }
    # Neighbours of the range in every other key field: none of these may leak into the scan.
    deltas[key(site=0, bucket=6)] = 1000
    deltas[key(site=2, bucket=6)] = 1000
    deltas[key(metric=PAGEVIEWS - 1, bucket=6)] = 1000
    deltas[key(metric=PAGEVIEWS + 1, bucket=6)] = 1000
    deltas[key(granularity=HOUR, bucket=6)] = 1000
    store.write(lambda txn: counters.apply(txn, deltas))

    rows = read(store, counters, first=5, last=9)

    assert rows == [
        (bucket, dimension, bucket * 10 + dimension)
        for bucket in range(5, 10)
        for dimension in (0, 7)
    ]
    assert read(store, counters, first=9, last=9) == [(9, 0, 90), (9, 7, 97)]
    assert read(store, counters, first=19, last=500) == [(19, 0, 190), (19, 7, 197)]
    assert read(store, counters, first=20, last=500) == []
    assert read(store, counters, first=9, last=5) == []


def test_scan_is_in_numeric_bucket_order_across_byte_boundaries(store, counters):
    buckets = [255, 256, 65535, 65536, 2**32 - 1, 0, 1]
    store.write(lambda txn: counters.apply(txn, {key(bucket=bucket): 1 for bucket in buckets}))

    assert [bucket for bucket, _, _ in read(store, counters)] == sorted(buckets)
    assert [bucket for bucket, _, _ in read(store, counters, first=256, last=65536)] == [
        256,
        65535,
        65536,
    ]


def test_sites_metrics_and_granularities_are_isolated(store, counters):
    store.write(
        lambda txn: counters.apply(
            txn,
            {
                key(site=1, metric=PAGEVIEWS): 1,
                key(site=1, metric=EVENTS): 2,
                key(site=2, metric=PAGEVIEWS): 3,
                key(site=256, metric=PAGEVIEWS): 4,
                key(site=1, metric=PAGEVIEWS, granularity=HOUR): 5,
            },
        )
    )

    assert read(store, counters, site=1) == [(100, 0, 1)]
    assert read(store, counters, site=1, metric=EVENTS) == [(100, 0, 2)]
    assert read(store, counters, site=2) == [(100, 0, 3)]
    assert read(store, counters, site=256) == [(100, 0, 4)]
    assert read(store, counters, site=1, granularity=HOUR) == [(100, 0, 5)]
    assert read(store, counters, site=3) == []


def test_negative_deltas_subtract_and_may_go_below_zero(store, counters):
    store.write(lambda txn: counters.apply(txn, {key(): 5}))
    store.write(lambda txn: counters.apply(txn, {key(): -3}))
    with store.read() as txn:
        assert counters.get(txn, key()) == 2

    store.write(lambda txn: counters.apply(txn, {key(): -4, key(bucket=101): -1}))

    assert read(store, counters) == [(100, 0, -2), (101, 0, -1)]


def test_zero_deltas_write_nothing(store, counters):
    store.write(lambda txn: counters.apply(txn, {key(): 0}))

    assert store.entries(b"counters") == 0
    with store.read() as txn:
        assert counters.get(txn, key()) == 0


def test_replacing_a_bucket_that_differs_only_by_stored_zeros_changes_nothing(store, counters):
    """Deltas that cancel leave a zero counter; re-deriving the day drops it, which changes no
    figure: no rollup difference, and no neighbouring day re-derived in cascade."""
    store.write(lambda txn: counters.apply(txn, {key(dimension=1): 4, key(dimension=2): 1}))
    store.write(lambda txn: counters.apply(txn, {key(dimension=2): -1}))  # a stored zero
    assert store.entries(b"counters") == 2

    unchanged = store.write(lambda txn: counters.replace_bucket(txn, 1, DAY, PAGEVIEWS, 100, {1: 4}))
    changed = store.write(lambda txn: counters.replace_bucket(txn, 1, DAY, PAGEVIEWS, 100, {1: 5}))

    assert (unchanged, changed) == (False, True)
    assert read(store, counters) == [(100, 1, 5)]
    assert store.entries(b"counters") == 1


class RecordingTransaction:
    """A write transaction that remembers the keys put through it or any of its cursors."""

    def __init__(self, txn) -> None:
        self._txn = txn
        self.puts: list[bytes] = []

    def put(self, key, value, *args, **kwargs):
        self.puts.append(bytes(key))
        return self._txn.put(key, value, *args, **kwargs)

    def cursor(self, *args, **kwargs):
        return RecordingCursor(self._txn.cursor(*args, **kwargs), self.puts)

    def __getattr__(self, name):
        return getattr(self._txn, name)


class RecordingCursor:
    def __init__(self, cursor, puts: list[bytes]) -> None:
        self._cursor = cursor
        self._puts = puts

    def put(self, key, value, *args, **kwargs):
        self._puts.append(bytes(key))
        return self._cursor.put(key, value, *args, **kwargs)

    def __getattr__(self, name):
        return getattr(self._cursor, name)

    def __iter__(self):
        return iter(self._cursor)


def test_deltas_are_written_in_sorted_key_order(store, counters):
    deltas = {
        key(site=3, bucket=1): 1,
        key(site=1, bucket=300): 1,
        key(site=1, bucket=2, dimension=9): 1,
        key(site=2, metric=EVENTS, bucket=1): 1,
        key(site=1, bucket=2, dimension=1): 1,
        key(site=1, granularity=HOUR, bucket=7): 1,
    }
    recorder: list[RecordingTransaction] = []

    def apply(txn):
        recording = RecordingTransaction(txn)
        recorder.append(recording)
        counters.apply(recording, deltas)

    store.write(apply)

    assert recorder[-1].puts == sorted(deltas)


def test_delete_site_removes_only_that_site(store, counters):
    deltas = {}
    for site in (1, 2, 3, 256):
        for bucket in range(5):
            deltas[key(site=site, bucket=bucket)] = site
            deltas[key(site=site, granularity=HOUR, metric=EVENTS, bucket=bucket)] = site
    store.write(lambda txn: counters.apply(txn, deltas))

    removed = store.write(lambda txn: counters.delete_site(txn, 2))

    assert removed == 10
    assert read(store, counters, site=2) == []
    assert read(store, counters, site=2, granularity=HOUR, metric=EVENTS) == []
    for site in (1, 3, 256):
        assert read(store, counters, site=site) == [(bucket, 0, site) for bucket in range(5)]
    assert store.entries(b"counters") == 30


def test_delete_site_at_the_end_of_the_database_and_of_an_unknown_site(store, counters):
    store.write(
        lambda txn: counters.apply(
            txn, {key(site=1): 1, key(site=9, bucket=1): 1, key(site=9, bucket=2): 1}
        )
    )

    assert store.write(lambda txn: counters.delete_site(txn, 9)) == 2
    assert store.write(lambda txn: counters.delete_site(txn, 9)) == 0
    assert store.write(lambda txn: counters.delete_site(txn, 5)) == 0
    assert read(store, counters, site=1) == [(100, 0, 1)]
