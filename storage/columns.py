"""Column blocks: compressed numpy arrays stored per site, UTC day, generation and column name.

A block is one site's events of one UTC day re-laid column by column, so that a filter is a
vectorised pass over a few arrays instead of decoding every log entry. What the columns mean
is the appliance's business (:mod:`appliance.events.columns`); this module stores and loads arrays.

Keys are ``site u32 | day u32 | generation u32 | column name``: a day's columns are
neighbours and a range of days is one cursor scan. Rewriting a day's block writes a new
*generation* beside the old one and moves the day's pointer record (generation 0, empty name)
to it in the same transaction; the old generation stays readable until :meth:`collect` removes
it, so a reader that loads a block's columns one by one, lazily, never sees half of one block
and half of another. The pointer's value is a MessagePack map: ``generation``, ``info``
(whatever the caller stores about the block) and ``retired`` (``[generation, at_ms]`` pairs
still on disk).

An array is stored as ``flags u8 | dtype | stored dtype | [base i64] | bytes``: flag 1 means
the bytes are zlib-compressed, flag 2 that they are deltas (in the narrowest signed dtype
that holds them) from ``base``, for sorted or nearly sorted columns such as timestamps
(compressed whenever that saves anything).
Arrays that do not compress to half their size are kept raw: they load without a copy
or a decompression, which matters more than the bytes for the columns every query reads.
"""

from __future__ import annotations

import struct
import time
import zlib

import msgspec
import numpy as np

from storage.retention import delete_prefix

_PREFIX = struct.Struct(">III")
_BASE = struct.Struct(">q")
ZLIB = 1
DELTA = 2
FORMAT = 2
_FORMAT_KEY = b"\xff\xff\xff\xff format"
_POINTER = 0


def _key(site: int, day: int, generation: int, name: str = "") -> bytes:
    return _PREFIX.pack(site, day, generation) + name.encode("ascii")


def _narrow_signed(low: int, high: int) -> np.dtype:
    for dtype in (np.int8, np.int16, np.int32):
        info = np.iinfo(dtype)
        if info.min <= low and high <= info.max:
            return np.dtype(dtype)
    return np.dtype(np.int64)


def encode_array(array: np.ndarray, *, delta: bool = False, level: int = 6, keep_below: float = 0.5) -> bytes:
    """``array`` (one-dimensional) as stored bytes; ``delta`` for (nearly) sorted integers."""
    array = np.ascontiguousarray(array)
    flags = 0
    stored = array
    base = b""
    if delta and array.dtype.kind in "iu" and len(array):
        wide = array.astype(np.int64)
        first = int(wide[0])
        steps = np.diff(wide, prepend=first)
        stored = steps.astype(_narrow_signed(int(steps.min()), int(steps.max())))
        flags |= DELTA
        base = _BASE.pack(first)
    payload = stored.tobytes()
    if len(payload) > 64:
        packed = zlib.compress(payload, level)
        # deltas are decoded anyway: compressing them costs little more
        if len(packed) < (1.0 if flags & DELTA else keep_below) * len(payload):
            payload = packed
            flags |= ZLIB
    dtype, stored_dtype = array.dtype.str.encode("ascii"), stored.dtype.str.encode("ascii")
    return bytes((flags, len(dtype))) + dtype + bytes((len(stored_dtype),)) + stored_dtype + base + payload


def decode_array(value: bytes) -> np.ndarray:
    """The array stored in ``value``: read-only and without a copy when it was kept raw."""
    flags, length = value[0], value[1]
    dtype = np.dtype(value[2 : 2 + length].decode("ascii"))
    offset = 2 + length
    stored_length = value[offset]
    stored_dtype = np.dtype(value[offset + 1 : offset + 1 + stored_length].decode("ascii"))
    offset += 1 + stored_length
    base = 0
    if flags & DELTA:
        base = _BASE.unpack_from(value, offset)[0]
        offset += _BASE.size
    if flags & ZLIB:
        array = np.frombuffer(zlib.decompress(memoryview(value)[offset:]), dtype=stored_dtype)
    else:
        array = np.frombuffer(value, dtype=stored_dtype, offset=offset)
    if flags & DELTA:
        steps = array.astype(np.int64)
        if len(steps):
            steps[0] += base
        return np.cumsum(steps, out=steps).astype(dtype, copy=False)
    return array


class Pointer(msgspec.Struct, kw_only=True):
    """A day's current generation, what the caller said about it, and retired generations."""

    generation: int
    info: dict = {}
    retired: list[tuple[int, int]] = []


_pointer_decoder = msgspec.msgpack.Decoder(Pointer)


class ColumnBlocks:
    def __init__(self, store, name: bytes = b"columns", *, migrate: bool = True) -> None:
        self._store = store
        self._db = store.db(name)  # "checkpoints": the open day's rows (appliance.events.openday)
        if migrate:  # (not by a reader of a store another process writes)
            store.write(self._migrate)

    def _migrate(self, txn) -> None:
        """Blocks of the first format (no generations; the event log still held every row)
        are a cache: they are dropped and rebuilt from the log."""
        found = txn.get(_FORMAT_KEY, db=self._db)
        if found is not None and int(found) == FORMAT:
            return
        txn.drop(self._db, delete=False)
        txn.put(_FORMAT_KEY, str(FORMAT).encode(), db=self._db)

    # -- the pointer ----------------------------------------------------------------------
    def pointer(self, txn, site: int, day: int) -> Pointer | None:
        raw = txn.get(_key(site, day, _POINTER), db=self._db)
        return _pointer_decoder.decode(raw) if raw is not None else None

    def put(self, txn, site: int, day: int, columns: dict[str, bytes | np.ndarray], info: dict) -> int:
        """Store ``columns`` (encoded bytes or arrays) as the day's new generation; returns it.
        The previous generation is retired, not deleted (see :meth:`collect`)."""
        old = self.pointer(txn, site, day)
        generation = (max([old.generation, *(g for g, _ in old.retired)]) if old else 0) + 1
        for name in sorted(columns):
            value = columns[name]
            txn.put(
                _key(site, day, generation, name),
                value if isinstance(value, bytes) else encode_array(value),
                db=self._db,
            )
        retired = list(old.retired) + [(old.generation, int(time.time() * 1000))] if old else []
        pointer = Pointer(generation=generation, info=info, retired=retired)
        txn.put(_key(site, day, _POINTER), msgspec.msgpack.encode(pointer), db=self._db)
        return generation

    def get(self, txn, site: int, day: int, generation: int, name: str) -> np.ndarray | None:
        value = txn.get(_key(site, day, generation, name), db=self._db)
        return decode_array(value) if value is not None else None

    def names(self, txn, site: int, day: int, generation: int) -> list[str]:
        prefix = _PREFIX.pack(site, day, generation)
        cursor = txn.cursor(db=self._db)
        found = []
        if cursor.set_range(prefix):
            for key in cursor.iternext(keys=True, values=False):
                if key[:12] != prefix:
                    break
                found.append(key[12:].decode("ascii"))
        return found

    def values(self, txn, site: int, day: int, generation: int) -> dict[str, bytes]:
        """The stored (encoded) value of each column of one generation, by name."""
        prefix = _PREFIX.pack(site, day, generation)
        cursor = txn.cursor(db=self._db)
        found = {}
        if cursor.set_range(prefix):
            for key, value in cursor:
                if key[:12] != prefix:
                    break
                found[key[12:].decode("ascii")] = value
        return found

    def stored_bytes(self, txn, site: int, day: int, generation: int) -> dict[str, int]:
        """Bytes of each stored column value of one generation (``scripts/bench_filters``'s breakdown)."""
        return {name: len(value) for name, value in self.values(txn, site, day, generation).items()}

    # -- removal --------------------------------------------------------------------------
    def _delete_generation(self, txn, site: int, day: int, generation: int) -> int:
        return delete_prefix(txn, self._db, _PREFIX.pack(site, day, generation))

    def collect(self, txn, site: int, day: int, retired_before_ms: int) -> int:
        """Delete the day's generations retired before ``retired_before_ms``; returns how many."""
        pointer = self.pointer(txn, site, day)
        if pointer is None or not pointer.retired:
            return 0
        keep = []
        removed = 0
        for generation, at_ms in pointer.retired:
            if at_ms < retired_before_ms:
                self._delete_generation(txn, site, day, generation)
                removed += 1
            else:
                keep.append((generation, at_ms))
        if removed:
            pointer = msgspec.structs.replace(pointer, retired=keep)
            txn.put(_key(site, day, _POINTER), msgspec.msgpack.encode(pointer), db=self._db)
        return removed

    def delete(self, txn, site: int, day: int) -> int:
        """Delete every generation of the day and its pointer."""
        return delete_prefix(txn, self._db, struct.pack(">II", site, day))

    def delete_site(self, txn, site: int) -> int:
        return delete_prefix(txn, self._db, struct.pack(">I", site))

    def days(self, txn, site: int, first_day: int = 0, last_day: int = 0xFFFFFFFF) -> list[int]:
        """The days of ``site`` in ``[first_day, last_day]`` that have a block."""
        cursor = txn.cursor(db=self._db)
        found: list[int] = []
        site_prefix = struct.pack(">I", site)
        if not cursor.set_range(struct.pack(">II", site, first_day)):
            return found
        while True:
            key = cursor.key()
            if key[:4] != site_prefix:
                break
            _, day, generation = _PREFIX.unpack(key[:12])
            if day > last_day:
                break
            if generation == _POINTER:
                found.append(day)
            # jump to the next day: every generation of this day sorts before it
            if day == 0xFFFFFFFF or not cursor.set_range(struct.pack(">II", site, day + 1)):
                break
        return found
