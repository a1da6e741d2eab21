"""Column blocks: numpy arrays stored per site, UTC day and column name.

A block is the event log of one site and one UTC day re-laid column by column (timestamps,
visitor hashes, kinds, dictionary-encoded interned ids...), so that a filter becomes one
vectorised pass over a few arrays instead of decoding every log entry. Keys are
``site u32 | day u32 | column name`` so a day's columns are neighbours and a range of days is
one cursor scan; a value is ``dtype length u8 | dtype string | raw array bytes``. What the
columns mean is the appliance's business (:mod:`appliance.columnar`); this module only stores
and loads arrays.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable

import numpy as np

_PREFIX = struct.Struct(">II")


def _key(site: int, day: int, name: str) -> bytes:
    return _PREFIX.pack(site, day) + name.encode("ascii")


def encode_array(array: np.ndarray) -> bytes:
    dtype = array.dtype.str.encode("ascii")
    return bytes((len(dtype),)) + dtype + np.ascontiguousarray(array).tobytes()


def decode_array(value: bytes) -> np.ndarray:
    """A read-only array over ``value`` (no copy)."""
    length = value[0]
    dtype = np.dtype(value[1 : 1 + length].decode("ascii"))
    return np.frombuffer(value, dtype=dtype, offset=1 + length)


class ColumnBlocks:
    def __init__(self, store) -> None:
        self._db = store.db(b"columns")

    def put(self, txn, site: int, day: int, columns: dict[str, np.ndarray]) -> None:
        """Replace the block of ``(site, day)`` with ``columns`` (old columns are removed)."""
        self.delete(txn, site, day)
        for name in sorted(columns):
            txn.put(_key(site, day, name), encode_array(columns[name]), db=self._db)

    def get(self, txn, site: int, day: int, name: str) -> np.ndarray | None:
        value = txn.get(_key(site, day, name), db=self._db)
        return decode_array(value) if value is not None else None

    def get_many(self, txn, site: int, day: int, names: Iterable[str]) -> dict[str, np.ndarray] | None:
        """The named columns, or None when any is missing."""
        out = {}
        for name in names:
            array = self.get(txn, site, day, name)
            if array is None:
                return None
            out[name] = array
        return out

    def delete(self, txn, site: int, day: int) -> int:
        prefix = _PREFIX.pack(site, day)
        cursor = txn.cursor(db=self._db)
        removed = 0
        if not cursor.set_range(prefix):
            return 0
        while cursor.key()[:8] == prefix:
            if not cursor.delete():
                break
            removed += 1
            if not cursor.key():
                break
        return removed

    def days(self, txn, site: int) -> list[int]:
        """The days of ``site`` that have a block."""
        cursor = txn.cursor(db=self._db)
        found: list[int] = []
        prefix = struct.pack(">I", site)
        if not cursor.set_range(prefix):
            return found
        for key in cursor.iternext(keys=True, values=False):
            if key[:4] != prefix:
                break
            day = _PREFIX.unpack(key[:8])[1]
            if not found or found[-1] != day:
                found.append(day)
        return found
