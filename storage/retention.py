"""Deleting data: by key prefix (a site, a day), and past a site's retention (old buckets)."""

from __future__ import annotations

from storage.keys import DAY, HOUR, MONTH, WEEK, pack_u32, unpack_bucket_key
from storage.rollups import period_span


def delete_prefix(txn, db, prefix: bytes) -> int:
    """Delete every key of ``db`` that starts with ``prefix``; returns how many went."""
    cursor = txn.cursor(db=db)
    removed = 0
    if not cursor.set_range(prefix):
        return 0
    while cursor.key()[: len(prefix)] == prefix:
        if not cursor.delete():
            break
        removed += 1
        if not cursor.key():
            break
    return removed


def delete_buckets_before(txn, db, site: int, first_hour: int, first_day: int) -> int:
    """Delete the site's hour buckets before ``first_hour``, day buckets before ``first_day``
    and week and month rollups that end before it, in a counters or sketches database;
    returns how many keys went. The rollup holding ``first_day`` is left to be rebuilt
    (``rebuild_rollups`` of :class:`~storage.counters.Counters` and
    :class:`~storage.sketches.Sketches`)."""
    prefix = pack_u32(site)
    cursor = txn.cursor(db=db)
    removed = 0
    if not cursor.set_range(prefix):
        return 0
    while True:
        key = cursor.key()
        if not key or key[:4] != prefix:
            break
        _, granularity, _, bucket, _ = unpack_bucket_key(key)
        expired = (
            (granularity == HOUR and bucket < first_hour)
            or (granularity == DAY and bucket < first_day)
            or (granularity in (WEEK, MONTH) and period_span(granularity, bucket)[1] < first_day)
        )
        if expired:
            if not cursor.delete():
                break
            removed += 1
        elif not cursor.next():
            break
    return removed
