"""The raw event log: every accepted event, in time order per site.

Keys are ``site u32 | timestamp_ms u64 | sequence u32``; values are whatever compact bytes
the caller encodes (the appliance stores msgspec MessagePack arrays of interned ids). The
sequence is global and persisted, so two events in the same millisecond never collide, even
across restarts.
"""

from __future__ import annotations

import bisect
import itertools
from collections.abc import Iterator

from storage.keys import pack_event_key, pack_u64, unpack_event_key, unpack_u64

_SEQUENCE_KEY = b"event_sequence"


class MissingRow(LookupError):
    """A row :meth:`EventLog.delete_rows` was to delete is not in the log (purged meanwhile)."""


class EventLog:
    def __init__(self, store) -> None:
        self._db = store.db(b"events")
        self._sequences = store.db(b"sequences")
        with store.read() as txn:
            raw = txn.get(_SEQUENCE_KEY, db=self._sequences)
        self._next_sequence = unpack_u64(raw) if raw else 1

    @property
    def next_sequence(self) -> int:
        """The global sequence the next appended event gets (committed state)."""
        return self._next_sequence

    def append(self, txn, entries: list[tuple[int, int, bytes]], sequences: list[int] | None = None) -> list[bytes]:
        """Store ``(site, timestamp_ms, value)`` entries; return their keys. ``sequences``
        (ascending, above every stored one) gives them instead of the next ones: a standby
        stores a primary's events under the primary's sequences.

        Call :meth:`committed` after the transaction commits, or :meth:`rolled_back`.
        """
        keys = []
        sequence = self._next_sequence
        cursor = txn.cursor(db=self._db)
        for index, (site, timestamp_ms, value) in enumerate(entries):
            if sequences is not None:
                sequence = sequences[index]
            key = pack_event_key(site, timestamp_ms, sequence & 0xFFFFFFFF)
            sequence += 1
            cursor.put(key, value)
            keys.append(key)
        sequence = max(sequence, self._next_sequence)
        txn.put(_SEQUENCE_KEY, pack_u64(sequence), db=self._sequences)
        self._pending_sequence = sequence
        return keys

    def committed(self) -> None:
        self._next_sequence = getattr(self, "_pending_sequence", self._next_sequence)

    def rolled_back(self) -> None:
        self._pending_sequence = self._next_sequence

    def scan(self, txn, site: int, start_ms: int, end_ms: int) -> Iterator[tuple[bytes, bytes]]:
        """Yield ``(key, value)`` for the site's events with ``start_ms <= t < end_ms``."""
        cursor = txn.cursor(db=self._db)
        if not cursor.set_range(pack_event_key(site, start_ms, 0)):
            return
        end = pack_event_key(site, end_ms, 0)
        for key, value in cursor:
            if key >= end:
                return
            yield key, value

    def chunks(
        self, txn, site: int, start_ms: int, end_ms: int, size: int, expected: int = 0
    ) -> Iterator[list[tuple[bytes, bytes]]]:
        """:meth:`scan` in lists of at most ``size`` rows (none empty), so a whole day is never
        one list: the seed's day as ``(key, value)`` pairs is ~110 MB of Python objects. A
        chunk is taken without a comparison per row (a day built from the log reads hundreds
        of thousands); only its last key is compared with the range's end, and the chunk cut
        there by bisection. ``expected`` (about how many rows the range holds) sizes the last
        chunk, so it reads one row past the range rather than up to a chunk of the next day's."""
        cursor = txn.cursor(db=self._db)
        if not cursor.set_range(pack_event_key(site, start_ms, 0)):
            return
        end = pack_event_key(site, end_ms, 0)
        rows = cursor.iternext()
        left = expected
        while True:
            want = min(size, left + 1) if left > 0 else size
            found = list(itertools.islice(rows, want))
            left -= len(found)
            if found and found[-1][0] >= end:
                found = found[: bisect.bisect_left(found, (end,))]
                if found:
                    yield found
                return
            if found:
                yield found
            if len(found) < want:
                return

    def get(self, txn, key: bytes) -> bytes | None:
        return txn.get(key, db=self._db)

    def delete_range(self, txn, site: int, start_ms: int, end_ms: int) -> int:
        cursor = txn.cursor(db=self._db)
        removed = 0
        end = pack_event_key(site, end_ms, 0)
        if not cursor.set_range(pack_event_key(site, start_ms, 0)):
            return 0
        while True:
            key = cursor.key()
            if not key or key >= end:
                break
            if not cursor.delete():
                break
            removed += 1
        return removed

    def delete_rows(self, txn, keys: list[bytes]) -> None:
        """Delete the rows of ``keys`` (ascending), every one of them or none: one cursor walk
        in key order, stepping over the rows between them (kept: rows still pending, rows that
        arrived after ``keys`` were read). Raises :class:`MissingRow` at the first key not in
        the log; the rows before it are deleted by then, so the caller's transaction must be
        aborted (``Store.write`` aborts on any exception). A walk, not a lookup per key: the
        rows of one day are neighbours, so each step is the cursor's next, not a tree descent
        (compaction's write transaction, which every tracker commit waits for, is mostly this)."""
        if not keys:
            return
        cursor = txn.cursor(db=self._db)
        cursor.set_range(keys[0])
        for key in keys:
            found = cursor.key()  # empty past the last row
            while found and found < key:
                cursor.next()
                found = cursor.key()
            if found != key:
                raise MissingRow(key)
            cursor.delete()  # and on to the next row

    @staticmethod
    def split_key(key: bytes) -> tuple[int, int, int]:
        return unpack_event_key(key)
