"""Time-bucketed integer counters.

Writers gather deltas in a dict keyed by packed bucket keys and apply them in one transaction
in sorted key order (sequential page access). Readers scan a bucket range per metric.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator

from storage.keys import bucket_prefix, pack_bucket_key, unpack_bucket_key
from storage.retention import delete_prefix

_VALUE = struct.Struct(">q")


def stored_metrics(txn, db, site: int, granularity: int) -> list[int]:
    """The metrics with any key under ``site`` and ``granularity`` in ``db`` (counters or
    sketches share the bucket-key layout): one cursor seek per metric found."""
    cursor = txn.cursor(db=db)
    found = []
    metric = 0
    while metric <= 0xFFFF and cursor.set_range(pack_bucket_key(site, granularity, metric, 0, 0)):
        key_site, key_granularity, metric, _, _ = unpack_bucket_key(cursor.key())
        if (key_site, key_granularity) != (site, granularity):
            break
        found.append(metric)
        metric += 1
    return found


class Counters:
    def __init__(self, store) -> None:
        self._db = store.db(b"counters")

    def apply(self, txn, deltas: dict[bytes, int]) -> None:
        """Add each delta to its counter (keys from :func:`storage.keys.pack_bucket_key`)."""
        db = self._db
        cursor = txn.cursor(db=db)
        for key in sorted(deltas):
            delta = deltas[key]
            if not delta:
                continue
            current = cursor.get(key)
            value = _VALUE.unpack(current)[0] + delta if current is not None else delta
            cursor.put(key, _VALUE.pack(value))

    def scan(
        self, txn, site: int, granularity: int, metric: int, first_bucket: int, last_bucket: int
    ) -> Iterator[tuple[int, int, int]]:
        """Yield ``(bucket, dimension, value)`` for buckets in ``[first_bucket, last_bucket]``."""
        prefix = bucket_prefix(site, granularity, metric)
        start = pack_bucket_key(site, granularity, metric, first_bucket, 0)
        cursor = txn.cursor(db=self._db)
        if not cursor.set_range(start):
            return
        unpack_value = _VALUE.unpack
        for key, value in cursor:
            if key[:7] != prefix:
                return
            _, _, _, bucket, dimension = unpack_bucket_key(key)
            if bucket > last_bucket:
                return
            yield bucket, dimension, unpack_value(value)[0]

    def replace_bucket(self, txn, site: int, granularity: int, metric: int, bucket: int, values: dict[int, int]) -> bool:
        """Set one bucket's counters to ``{dimension: value}`` exactly: counters absent from
        ``values`` (or zero) are deleted. Returns whether anything changed."""
        cursor = txn.cursor(db=self._db)
        old: dict[int, int] = {}
        start = pack_bucket_key(site, granularity, metric, bucket, 0)
        prefix = start[:11]
        if cursor.set_range(start):
            for key, value in cursor:
                if key[:11] != prefix:
                    break
                old[unpack_bucket_key(key)[4]] = _VALUE.unpack(value)[0]
        new = {dimension: value for dimension, value in values.items() if value}
        if new == old:
            return False
        for dimension in old.keys() - new.keys():
            txn.delete(pack_bucket_key(site, granularity, metric, bucket, dimension), db=self._db)
        for dimension in sorted(new):
            if old.get(dimension) != new[dimension]:
                cursor.put(pack_bucket_key(site, granularity, metric, bucket, dimension), _VALUE.pack(new[dimension]))
        return True

    def metrics(self, txn, site: int, granularity: int) -> list[int]:
        """The metrics the site has counters of, at one granularity."""
        return stored_metrics(txn, self._db, site, granularity)

    def get(self, txn, key: bytes) -> int:
        value = txn.get(key, db=self._db)
        return _VALUE.unpack(value)[0] if value is not None else 0

    def delete_site(self, txn, site: int) -> int:
        return delete_prefix(txn, self._db, struct.pack(">I", site))
