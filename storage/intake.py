"""The intake: an LMDB environment of its own where a commit makes events durable.

A tracker request is answered once its event is on disk. Written to the main store, that
commit needed the main store's one write transaction, which the aggregation step and every
settled read's fold also take, so a commit waited for whichever fold was under way. Here
a commit takes only the intake's write lock: rows keyed by the event's global sequence
(``u64``, big-endian) holding the encoded event, fsync'd before the commit returns.

The main store learns the events when the aggregation step folds them: the event log, the
counters, sketches and visits in one transaction, which also records how far the log has
come (the event log's next sequence). A staged row stays until the main store holds it
*durably* (the recorder flushes the main store, then passes the sequence it had folded to
:meth:`Intake.stage` as ``trim_through``), so a crash at any point finds each event in one
of the two: after a restart every staged row at or past the event log's next sequence is
folded again (:meth:`Intake.rows_from`), the rest deleted (:meth:`Intake.trim`).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator

from storage.environment import Store
from storage.keys import pack_u64, unpack_u64

INTAKE_DIRECTORY = "intake.lmdb"  # in the data dir, beside the store
_STAGED = b"staged"
#: how many rows older than ``trim_through`` one commit deletes beside its own, per row of its
#: own (plus a few): a bound on the extra work a commit does (its requests wait for it) that
#: still clears rows faster than they come
TRIM_PER_ROW, TRIM_EXTRA = 2, 64


class Intake:
    """Staged events by sequence. One writer (the ingest writer's thread) stages; the
    aggregation step only reads what it was handed in memory, so nothing here is shared
    with the main store's transactions."""

    def __init__(self, path: str | os.PathLike[str], *, min_free_disk_bytes: int = 64 << 20) -> None:
        self.store = Store(path, initial_map_bytes=64 << 20, min_free_disk_bytes=min_free_disk_bytes,
                           readahead=False, databases=(_STAGED,))
        self._db = self.store.db(_STAGED)
        self._trimmed_through = 0  # every row at or below it is gone

    @property
    def tight(self) -> bool:
        return self.store.tight

    def last_sequence(self) -> int:
        """The highest staged sequence (0 when nothing is staged)."""
        with self.store.read() as txn:
            cursor = txn.cursor(db=self._db)
            return unpack_u64(cursor.key()) if cursor.last() else 0

    def stage(self, rows: list[tuple[int, bytes]], trim_through: int = 0) -> None:
        """Store ``(sequence, encoded event)`` rows durably, in one transaction; with
        ``trim_through``, delete some rows at or below it as well (:data:`TRIM_PER_ROW`)."""

        def write(txn) -> int:
            cursor = txn.cursor(db=self._db)
            limit = TRIM_PER_ROW * len(rows) + TRIM_EXTRA
            trimmed = self._trim_in(cursor, trim_through, limit) if trim_through > self._trimmed_through else None
            for sequence, value in rows:
                txn.put(pack_u64(sequence), value, db=self._db, append=True)
            return trimmed

        trimmed = self.store.write(write)
        if trimmed is not None:
            self._trimmed_through = trimmed

    def _trim_in(self, cursor, through: int, limit: int) -> int:
        """Delete rows at or below ``through`` (at most ``limit``); return the sequence every
        row at or below which is now gone."""
        deleted = 0
        if not cursor.first():
            return through
        while deleted < limit:
            sequence = unpack_u64(cursor.key())
            if sequence > through:
                return through
            if not cursor.delete():  # the cursor now stands on the next row
                return through
            deleted += 1
            if cursor.key() == b"":
                return through
        return unpack_u64(cursor.key()) - 1

    def trim(self, through: int) -> None:
        """Delete every row at or below ``through`` (at start, after the main store's flush)."""
        while self._trimmed_through < through:
            self._trimmed_through = self.store.write(
                lambda txn: self._trim_in(txn.cursor(db=self._db), through, 50_000)
            )

    def rows_from(self, sequence: int) -> Iterator[tuple[int, bytes]]:
        """The staged rows from ``sequence`` on, in order."""
        with self.store.read() as txn:
            cursor = txn.cursor(db=self._db)
            if cursor.set_range(pack_u64(sequence)):
                for key, value in cursor:
                    yield unpack_u64(key), value

    def delete_where(self, doomed: Callable[[bytes], bool]) -> int:
        """Delete every staged row whose value ``doomed(value)`` (a deleted site's events);
        returns how many."""

        def write(txn) -> int:
            cursor = txn.cursor(db=self._db)
            keys = [key for key, value in cursor if doomed(value)]
            for key in keys:
                txn.delete(key, db=self._db)
            return len(keys)

        return self.store.write(write)

    def close(self) -> None:
        self.store.close()
