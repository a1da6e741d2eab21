"""Open visits on disk: a row per visit, and a log of each transaction's changes to them.

The visit table (:mod:`appliance.ingest.visits`) keeps every open visit in memory and must
find them again after a restart. Writing each changed visit to its own row, in the batch's
transaction, was a random write per visit and batch: a batch of 1,000 events touches about
as many visits spread over the whole table, and its commit copied about as many LMDB pages
(``scripts/bench_batch.py``: 5-9 µs of an event's ~45). Instead a transaction appends its
changes to the ``visit_changes`` database under ``(sequence, part)`` keys, rows of up to
~1.8 KB of items (site, visitor, the length of the visit's encoding and the encoding, as its
row holds it; a closed visit has none), so they fill leaf pages at the end of the tree (one
large value would take a run of overflow pages from LMDB's free list).

The log is *folded* into the rows (``visits``) from its oldest transaction on while it holds
more than its bound in bytes: of a folded transaction's visits, those whose latest change it
holds are written to their rows as the table holds them (a closed one deleted); the others
changed again later and the log still has that change. Which visits a log transaction
changed is kept in memory (a list of keys each, and each visit's latest sequence: tens of
bytes a change), so a fold reads nothing back. A visit that changes again or closes within the log's span
(most do) is never written to its row. Folding happens in the aggregation step's transaction
(:meth:`VisitTable.close_in <appliance.ingest.visits.VisitTable.close_in>`), a few log
transactions at most each time.

On open, the rows are read, then the log is replayed in order: the visits the table held in
memory at the last commit.
"""

from __future__ import annotations

import itertools
import struct
from collections.abc import Callable, Iterable

import msgspec

from appliance.ingest.visit_state import Visit

VISIT_KEY = struct.Struct(">IQ")
_CHANGE_KEY = struct.Struct(">QI")
_ITEM = struct.Struct(">IQI")  # site, visitor, bytes of the visit's encoding (0: closed)
_ROW_BYTES = 1_800  # and the key: below LMDB's largest node in a 4 KiB page (~2 KB)
#: log transactions folded in one write transaction at most (each a few hundred KB)
MAX_FOLDS = 4

Key = tuple[int, int]


def _items(row: bytes):
    """A log row's ``(key, encoded visit)`` items (``b""``: closed)."""
    unpack, size, at = _ITEM.unpack_from, _ITEM.size, 0
    while at < len(row):
        site_id, visitor_id, length = unpack(row, at)
        at += size + length
        yield (site_id, visitor_id), row[at - length:at]


class VisitChanges:
    """The open visits' rows and the log of changes to them (see the module docstring)."""

    def __init__(self, store, limit_bytes: int) -> None:
        self._rows = store.db(b"visits")
        self._log = store.db(b"visit_changes")
        #: the log is folded down to this many bytes
        self.limit_bytes = limit_bytes
        self._encode = msgspec.msgpack.Encoder().encode
        #: the log's committed transactions, oldest first: sequence -> (keys, rows, bytes)
        self._entries: dict[int, tuple[list[Key], int, int]] = {}
        self._bytes = 0
        self._latest: dict[Key, int] = {}  # a visit's latest change's sequence, while the log holds it
        self._txn = None  # the write transaction the three below belong to
        self._written: list[tuple[int, tuple[list[Key], int, int]]] = []
        self._changed: set[Key] = set()
        self._folded: list[tuple[int, list[Key]]] = []

    def __len__(self) -> int:
        """Log transactions not folded yet."""
        return len(self._entries)

    @property
    def log_bytes(self) -> int:
        return self._bytes

    def load(self, txn) -> dict[Key, Visit]:
        """The open visits as of the last commit: the rows, then the log replayed in order."""
        encoded_visits = {VISIT_KEY.unpack(key): value for key, value in txn.cursor(db=self._rows)}
        latest, entries = self._latest, self._entries
        for key, value in txn.cursor(db=self._log):
            sequence = _CHANGE_KEY.unpack(key)[0]
            keys, rows, size = entries.get(sequence) or ([], 0, 0)
            for found, encoded in _items(value):
                encoded_visits.pop(found, None)  # moved to the end: the most recently touched
                if encoded:
                    encoded_visits[found] = encoded
                latest[found] = sequence
                keys.append(found)
            entries[sequence] = keys, rows + 1, size + len(value)
        self._bytes = sum(size for _, _, size in entries.values())
        decode = msgspec.msgpack.Decoder(Visit).decode  # each visit once, as its latest change left it
        return {key: decode(encoded) for key, encoded in encoded_visits.items()}

    def write(self, txn, changes: Iterable[tuple[Key, Visit | None]]) -> None:
        """Append ``changes`` (a visit, or None for a closed one; each key once) to the log in
        ``txn``: counted from :meth:`committed`."""
        self._begin(txn)
        encode, item = self._encode, _ITEM.pack
        keys: list[Key] = []
        values: list[bytes] = []
        items: list[bytes] = []
        size = 0
        for key, visit in changes:
            keys.append(key)
            encoded = b"" if visit is None else encode(visit)
            if items and size + len(encoded) > _ROW_BYTES:
                values.append(b"".join(items))
                items, size = [], 0
            items += item(key[0], key[1], len(encoded)), encoded
            size += _ITEM.size + len(encoded)
        if not items:
            return  # (most steps close nothing: no cursor, no row)
        values.append(b"".join(items))
        cursor = txn.cursor(db=self._log)
        sequence = _CHANGE_KEY.unpack(cursor.key())[0] + 1 if cursor.last() else 1
        cursor.putmulti([(_CHANGE_KEY.pack(sequence, part), value) for part, value in enumerate(values)], append=True)
        self._written.append((sequence, (keys, len(values), sum(map(len, values)))))
        self._changed.update(keys)

    def fold(self, txn, current: Callable[[Key], Visit | None]) -> int:
        """Fold the log's oldest committed transactions into the rows while it is over its
        bound (at most :data:`MAX_FOLDS`), each visit as ``current`` gives it (the table's
        committed visit, None once closed); returns how many."""
        self._begin(txn)
        entries, latest, changed = self._entries, self._latest, self._changed
        excess = self._bytes + sum(size for _, (_, _, size) in self._written) - self.limit_bytes
        excess -= sum(entries[sequence][2] for sequence, _ in self._folded)
        done = 0
        for sequence, (keys, rows, size) in itertools.islice(entries.items(), len(self._folded), MAX_FOLDS):
            if excess <= 0:
                break
            for part in range(rows):
                txn.delete(_CHANGE_KEY.pack(sequence, part), db=self._log)
            settled, puts = [], []
            for key in keys:
                if latest.get(key, 0) > sequence or key in changed:
                    continue  # a later change is in the log
                settled.append(key)
                visit = current(key)
                if visit is None:
                    txn.delete(VISIT_KEY.pack(*key), db=self._rows)
                else:
                    puts.append((VISIT_KEY.pack(*key), self._encode(visit)))
            if puts:
                puts.sort()
                txn.cursor(db=self._rows).putmulti(puts)
            self._folded.append((sequence, settled))
            excess -= size
            done += 1
        return done

    def delete_site(self, txn, site_id: int, open_keys: Iterable[Key]) -> None:
        """Close every visit of a deleted site in ``txn``: a last change closes those the log
        holds (the caller deletes the rows); counted at once (the table forgets them at once)."""
        self.write(txn, ((key, None) for key in {*open_keys, *(key for key in self._latest if key[0] == site_id)}))
        self.committed()

    def committed(self) -> None:
        latest, entries = self._latest, self._entries
        for sequence, settled in self._folded:
            self._bytes -= entries.pop(sequence)[2]
            for key in settled:
                if latest.get(key) == sequence:
                    del latest[key]
        for sequence, entry in self._written:
            latest.update(dict.fromkeys(entry[0], sequence))
            entries[sequence] = entry
            self._bytes += entry[2]
        self.rolled_back()

    def rolled_back(self) -> None:
        self._txn = None
        self._written, self._changed, self._folded = [], set(), []

    def _begin(self, txn) -> None:
        if txn is not self._txn:  # another transaction (or a retry's): what was noted is void
            self.rolled_back()
            self._txn = txn
