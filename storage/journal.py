"""The replication journal: every committed event row again, keyed by its global sequence.

A standby (see ``appliance.operations``) pulls rows in commit order with a cursor: the last
sequence it applied. The event log cannot serve that order (it is keyed by site and time, and
closed days leave it for column blocks), so the commit that appends a batch to the log also
appends each row here, in the same transaction. Keys are ``sequence u64``; values are ``site
u32 | timestamp_ms u64 | committed_at u32 (Unix seconds) | the log row``. Rows committed longer
ago than the journal's retention are trimmed (``trim_before``); a standby further behind than
that is seeded from a backup instead.

The journal is kept only while it is needed (:mod:`appliance.operations.replication` decides):
when it starts, :meth:`Journal.cover_from` records the last sequence committed without it, so
``trimmed_through`` is also where its coverage begins, and :meth:`Journal.mark_attached`
records when a standby last attached (``journal_meta``: ``trimmed`` and ``attached`` as u64).
"""

from __future__ import annotations

import struct

from storage.keys import pack_u64, unpack_u64

_HEAD = struct.Struct(">IQI")


class Journal:
    def __init__(self, store) -> None:
        self._db = store.db(b"journal")
        self._meta = store.db(b"journal_meta")

    def trimmed_through(self, txn) -> int:
        """The highest sequence trimmed away (0: nothing yet): a cursor below it has a gap."""
        raw = txn.get(b"trimmed", db=self._meta)
        return unpack_u64(raw) if raw else 0

    def cover_from(self, txn, sequence: int) -> None:
        """The journal holds every row after ``sequence`` from now on (rows up to it were
        committed without it): a cursor below it has a gap, like one below a trimmed front."""
        if sequence > self.trimmed_through(txn):
            txn.put(b"trimmed", pack_u64(sequence), db=self._meta)

    def attached_at(self, txn) -> int:
        """When a standby last attached (Unix seconds; 0: never)."""
        raw = txn.get(b"attached", db=self._meta)
        return unpack_u64(raw) if raw else 0

    def mark_attached(self, txn, when: int) -> None:
        txn.put(b"attached", pack_u64(when), db=self._meta)

    def is_kept(self, txn) -> bool:
        """Whether the journal was being kept (every commit appended to it) when last written."""
        return txn.get(b"kept", db=self._meta) is not None

    def set_kept(self, txn, kept: bool) -> None:
        if kept:
            txn.put(b"kept", b"", db=self._meta)
        else:
            txn.delete(b"kept", db=self._meta)

    def entries(self, txn) -> int:
        """How many rows the journal holds."""
        return txn.stat(self._db)["entries"]

    def append(self, txn, rows: list[tuple[int, int, int, bytes]], committed_at: int) -> None:
        """Store ``(sequence, site, timestamp_ms, row)`` entries (in sequence order)."""
        cursor = txn.cursor(db=self._db)
        for sequence, site, timestamp_ms, row in rows:
            cursor.put(pack_u64(sequence), _HEAD.pack(site, timestamp_ms, committed_at) + row)

    def read(self, txn, after: int, limit: int) -> list[tuple[int, int, int, bytes]]:
        """Up to ``limit`` entries with a sequence above ``after``, in order."""
        cursor = txn.cursor(db=self._db)
        out: list[tuple[int, int, int, bytes]] = []
        if not cursor.set_range(pack_u64(after + 1)):
            return out
        for key, value in cursor:
            site, timestamp_ms, _ = _HEAD.unpack_from(value)
            out.append((unpack_u64(key), site, timestamp_ms, bytes(value[_HEAD.size :])))
            if len(out) >= limit:
                break
        return out

    def bounds(self, txn) -> tuple[int, int]:
        """``(first, last)`` sequences held, ``(0, 0)`` when empty."""
        cursor = txn.cursor(db=self._db)
        if not cursor.first():
            return 0, 0
        first = unpack_u64(cursor.key())
        cursor.last()
        return first, unpack_u64(cursor.key())

    def trim_before(self, txn, cutoff: int, keep_after: int = 0, limit: int | None = None) -> int:
        """Delete entries committed before ``cutoff`` (Unix seconds) from the front, but none
        above sequence ``keep_after`` when given (a standby still needs them), and at most
        ``limit`` when given (a long trim in several short transactions)."""
        cursor = txn.cursor(db=self._db)
        removed = 0
        if not cursor.first():
            return 0
        while True:
            key, value = cursor.key(), cursor.value()
            if not key:
                break
            _, _, committed_at = _HEAD.unpack_from(value)
            if committed_at >= cutoff or (keep_after and unpack_u64(key) > keep_after):
                break
            trimmed = unpack_u64(key)
            if not cursor.delete():
                break
            removed += 1
            if limit is not None and removed >= limit:
                break
        if removed:
            self.cover_from(txn, trimmed)  # never below where a later start put it
        return removed

    def delete_where(self, txn, doomed) -> int:
        """Delete the entries for which ``doomed(site, row)`` is true (a person's erasure)."""
        cursor = txn.cursor(db=self._db)
        keys = [bytes(key) for key, value in cursor if doomed(_HEAD.unpack_from(value)[0], value[_HEAD.size :])]
        for key in keys:
            txn.delete(key, db=self._db)
        return len(keys)
