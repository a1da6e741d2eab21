"""Kept sums of closed day ranges, exact because every write of a day bumps its generation.

A 30-day breakdown sums every value's counters over the range: through the rollups that is
still a dozen buckets of every value (18,000 keys for the pages of the seed's month) on every
request, though all but the last day never change. :class:`RangeSums` keeps the decoded
``(dimensions, totals)`` of a range's days before its last one, and the caller adds the last
day (today, which changes) read fresh.

Exactness: every write that changes a rolled-up day counter (:meth:`storage.counters.Counters.apply`,
``replace_bucket``) bumps that day's *generation* in the ``day_generations`` database in the
same transaction; a rebuild of week and month rollups (retention, the open-time build) bumps
the site's *epoch*. A kept sum is stored with its *token* — the epoch and the generation of
every day of its range, read in the reader's own transaction — and is used only by a reader
whose transaction reads the same token: LMDB's snapshots make that exactly "nothing in the
range was written since", with no in-memory invalidation to race with commits.

:meth:`storage.sketches.Sketches.union_days` keeps the same way each shown value's union of
the range's days before the last (as stored bytes), and its writes bump the same generations.

Read them only in read-only transactions (the counted reports' settled reads): a token read
inside a write transaction could see generations that an abort takes back.

Bounded in bytes (least recently used dropped first); part of the ``[memory]`` budget.
"""

from __future__ import annotations

import struct
import threading
from collections import OrderedDict

from storage.retention import delete_prefix

_KEY = struct.Struct(">II")
_VALUE = struct.Struct(">Q")
EPOCH = 0xFFFFFFFF  # the day number of a site's epoch key
_ENTRY_OVERHEAD = 400  # bytes of one entry besides its arrays (key, token, bookkeeping)


class RangeSums:
    def __init__(self, store, max_bytes: int) -> None:
        self._db = store.db(b"day_generations")
        self.max_bytes = max_bytes
        self._entries: OrderedDict[tuple, tuple[bytes, object, int]] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    # -- writers (inside the write transaction that changes the counters) -------------------
    def bump(self, txn, site: int, days) -> None:
        """Raise the generation of each day of ``site`` (its counters changed)."""
        for day in sorted(set(days)):
            key = _KEY.pack(site, day)
            raw = txn.get(key, db=self._db)
            txn.put(key, _VALUE.pack((_VALUE.unpack(raw)[0] if raw else 0) + 1), db=self._db)

    def bump_epoch(self, txn, site: int) -> None:
        """Every kept sum of ``site`` is stale (rollups rebuilt, days deleted)."""
        self.bump(txn, site, (EPOCH,))

    def delete_before(self, txn, site: int, first_day: int) -> int:
        """Forget the generations of ``site``'s days before ``first_day`` (retention deleted
        the days) and bump its epoch, so no sum kept before matches again; returns how many
        went."""
        cursor = txn.cursor(db=self._db)
        end = _KEY.pack(site, first_day)
        removed = 0
        if cursor.set_range(_KEY.pack(site, 0)):
            while cursor.key() and cursor.key() < end:
                cursor.delete()
                removed += 1
        if removed:
            self.bump_epoch(txn, site)
        return removed

    def delete_site(self, txn, site: int) -> None:
        delete_prefix(txn, self._db, struct.pack(">I", site))
        with self._lock:
            for key in [key for key in self._entries if key[0] == site]:
                self._bytes -= self._entries.pop(key)[2]

    # -- readers ----------------------------------------------------------------------------
    def token(self, txn, site: int, first_day: int, last_day: int) -> bytes:
        """What a kept sum of ``[first_day, last_day]`` was computed from, as this transaction
        sees it: the site's epoch and every generation in the range (days never written have
        none, and a first write adds one)."""
        parts = [txn.get(_KEY.pack(site, EPOCH), db=self._db) or b"-"]
        cursor = txn.cursor(db=self._db)
        end = _KEY.pack(site, last_day)
        if cursor.set_range(_KEY.pack(site, first_day)):
            for key, value in cursor.iternext():
                if key > end:
                    break
                parts.append(key[4:])
                parts.append(value)
        return b"".join(parts)

    def get(self, key: tuple, token: bytes):
        """The value kept under ``key`` if it was kept with ``token``, else None."""
        with self._lock:
            entry = self._entries.get(key)
            if entry is None or entry[0] != token:
                self.misses += 1
                return None
            self._entries.move_to_end(key)
            self.hits += 1
            return entry[1]

    def put(self, key: tuple, token: bytes, value, nbytes: int) -> None:
        """Keep ``value`` (immutable: read-only arrays, bytes) of ``nbytes`` under ``key``."""
        size = nbytes + len(token) + _ENTRY_OVERHEAD
        if size > self.max_bytes // 4:
            return
        with self._lock:
            old = self._entries.pop(key, None)
            if old is not None:
                self._bytes -= old[2]
            self._entries[key] = (token, value, size)
            self._bytes += size
            while self._bytes > self.max_bytes and self._entries:
                self._bytes -= self._entries.popitem(last=False)[1][2]

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()
            self._bytes = 0

    @property
    def size_bytes(self) -> int:
        return self._bytes

    def __len__(self) -> int:
        return len(self._entries)
