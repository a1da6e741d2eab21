"""The intake: an LMDB environment of its own where a commit makes events durable.

A tracker request is answered once its event is on disk. Written to the main store, that
commit needed the main store's one write transaction, which the aggregation step and every
settled read's fold also take, so a commit waited for whichever fold was under way. Here
a commit takes only the intake's write lock and writes ONE row: its batch, keyed by the
global sequence of its first event (``u64``, big-endian), the value the number of events
(``u32``) and their encoding. One row, because py-lmdb lets go of the interpreter lock around
every LMDB call and, beside threads running Python (the dashboard's queries), waits up to the
switch interval to get it back: a row per event made a commit's calls, and its requests'
waits, grow with the batch. The environment is opened with LMDB's own meta-page flush, so the
commit's one call flushes everything (no second ``sync`` call).

The main store learns the events when the aggregation step folds them: the event log, the
counters, sketches and visits in one transaction, which also records how far the log has
come (the event log's next sequence). A staged batch stays until the main store holds it
*durably* (the recorder flushes the main store, then passes the sequence it had folded to
:meth:`Intake.stage` as ``trim_through``), so a crash at any point finds each event in one
of the two: after a restart every staged event at or past the event log's next sequence is
folded again (:meth:`Intake.rows_from`), the rest deleted (:meth:`Intake.trim`).
"""

from __future__ import annotations

import os
import struct
from collections.abc import Iterator

from storage.environment import Store
from storage.keys import pack_u64, unpack_u64

INTAKE_DIRECTORY = "intake.lmdb"  # in the data dir, beside the store
_STAGED = b"staged"
_COUNT = struct.Struct(">I")
#: batches older than ``trim_through`` one commit deletes beside writing its own: a bound on
#: the extra work its requests wait for that still clears batches faster than they come
TRIM_PER_COMMIT = 4


class Intake:
    """Staged batches by first sequence. One writer (the ingest writer's thread) stages; the
    aggregation step folds what it was handed in memory, so nothing here is shared with the
    main store's transactions."""

    def __init__(self, path: str | os.PathLike[str], *, min_free_disk_bytes: int = 64 << 20) -> None:
        self.store = Store(path, initial_map_bytes=64 << 20, min_free_disk_bytes=min_free_disk_bytes,
                           readahead=False, databases=(_STAGED,), metasync=True)
        self._db = self.store.db(_STAGED)
        self._trimmed_through = 0  # every batch ending at or below it is gone

    @property
    def tight(self) -> bool:
        return self.store.tight

    def last_sequence(self) -> int:
        """The highest staged sequence (0 when nothing is staged)."""
        with self.store.read() as txn:
            cursor = txn.cursor(db=self._db)
            if not cursor.last():
                return 0
            return unpack_u64(cursor.key()) + _COUNT.unpack_from(cursor.value())[0] - 1

    def stage(self, first: int, count: int, encoded: bytes, trim_through: int = 0) -> None:
        """Store a batch of ``count`` events from sequence ``first`` durably, in one
        transaction; with ``trim_through``, delete a few batches ending at or below it too."""
        value = _COUNT.pack(count) + encoded

        def write(txn) -> int | None:
            trimmed = None
            if trim_through > self._trimmed_through:
                trimmed = self._trim_in(txn.cursor(db=self._db), trim_through, TRIM_PER_COMMIT)
            txn.put(pack_u64(first), value, db=self._db, append=True)
            return trimmed

        trimmed = self.store.write(write, durable=False)  # durable all the same: LMDB flushes the meta page itself
        if trimmed is not None:
            self._trimmed_through = trimmed

    def _trim_in(self, cursor, through: int, limit: int) -> int:
        """Delete batches ending at or below ``through`` (at most ``limit``); return the
        sequence every batch ending at or below which is now gone."""
        for _ in range(limit):
            if not cursor.first():
                return through
            first = unpack_u64(cursor.key())
            if first + _COUNT.unpack_from(cursor.value())[0] - 1 > through:
                return through
            cursor.delete()
        return min(through, unpack_u64(cursor.key()) - 1) if cursor.first() else through

    def trim(self, through: int) -> None:
        """Delete every batch ending at or below ``through`` (at start, after the main store's flush)."""
        while self._trimmed_through < through:
            trimmed = self.store.write(lambda txn: self._trim_in(txn.cursor(db=self._db), through, 10_000))
            if trimmed <= self._trimmed_through:
                break  # the first batch left reaches past it
            self._trimmed_through = trimmed

    def rows_from(self, sequence: int) -> Iterator[tuple[int, bytes]]:
        """The staged batches holding sequences from ``sequence`` on, in order, as
        ``(first sequence, encoded events)``."""
        with self.store.read() as txn:
            cursor = txn.cursor(db=self._db)
            if not cursor.set_range(pack_u64(sequence)):
                if not cursor.last():
                    return
            elif unpack_u64(cursor.key()) > sequence:
                cursor.prev() or cursor.first()  # the batch before may hold it
            for key, value in cursor:
                first = unpack_u64(key)
                if first + _COUNT.unpack_from(value)[0] - 1 >= sequence:
                    yield first, value[_COUNT.size:]

    def close(self) -> None:
        self.store.close()
