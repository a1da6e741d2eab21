"""The open day's block: read from the event log, resumed from a stored checkpoint.

A day without a compacted block (today, and a closed day not compacted yet) is read from the
event log into an in-memory :class:`~appliance.events.blocks.Block` (``generation`` 0), which
a process then extends with the rows appended after its last key. At the seed's month today
holds ~270 k log rows: decoding them all is a large part of the first filtered query after a
restart. So the job runner stores a *checkpoint* of the open day (:meth:`OpenDays.checkpoint`):
the day's log rows up to a log key, as column arrays in the block codec
(:func:`storage.columns.encode_array`), in a database of their own (``checkpoints``, keyed
like ``columns``), with the key (``last_key``) and the day's event count when it was taken
(``built_against``). A cold process decodes the checkpoint and only the log rows after its
key, each column on first use (:class:`LazyColumns`: a query reads a few of them), and numbers
the day's visitors from the checkpoint's sorted visitor hashes (:func:`visitor_coding`).

A checkpoint is taken (again) when at least :data:`CHECKPOINT_ROWS` of the day's rows, and
:data:`EXTEND_SHARE` of the rows it already holds, are not in one: by the job runner's sweep
every two minutes, once a load or an import that wrote many of today's rows goes quiet
(:mod:`appliance.runtime.passed_days`), and when the appliance closes, so the first filtered
query of the next process, or right after a load, decodes few log rows.

Only rows are stored, never visits: the open day's visits still change as rows arrive, so
they are derived at read time from checkpoint and tail rows together, exactly as from log
rows alone. The block a checkpoint gives is therefore the very block the log gives: the same
columns, in the same (log key) order. It is used only when the day's event count is the
checkpoint's count plus the rows after its key (the check an in-memory block's extension
makes), so a late event before the key, or a row deleted since, sends the read to the log.

A checkpoint never outlives what it copies: compaction deletes the day's checkpoint in the
transaction that writes its block; an erasure deletes the checkpoint of each day it touches
before it deletes log rows, and a checkpoint taken from a snapshot before an erasure is not
written after it (:meth:`OpenDays.erasing`); the retention purge deletes those of the days it
cuts; deleting a site deletes its checkpoints. A checkpoint of another format is ignored and
taken again. Backups copy it with the store (it is consistent with the log beside it); a
standby takes its own.
"""

from __future__ import annotations

import logging
import threading
import time
import weakref
from collections.abc import Callable

import numpy as np

from appliance.events.blocks import DAY_MS, SCALARS, Block, dictionary_of, narrow
from appliance.events.codec import STRING_FIELDS
from appliance.events.encoding import CHUNK_ROWS, concatenate, log_columns, rows_to_columns
from storage.columns import ColumnBlocks, decode_array, encode_array
from storage.keys import pack_event_key, unpack_event_key

log = logging.getLogger(__name__)

CHECKPOINT_FORMAT = 1
CHECKPOINT_ROWS = 20_000  # a checkpoint is taken (again) when this many log rows are not in one
#: ... and, to extend one, at least this share of the rows it holds: an extension decodes and
#: encodes the whole day again (1.8 s for 20,000 rows on the seed's 374,000), so the days'
#: extensions cost a few times the day in all, and a read decodes at most this share from the log
EXTEND_SHARE = 0.25
_DELTA = frozenset({"seq", "ts", "p.row"})
_PLAIN = ("seq", "ts", "kind", "user", "revenue", "engaged", "scroll", "p.row", "p.key", "p.value")
_CODED = ("visitor", "session")  # 64-bit hashes: a sorted dictionary and codes


def checkpoint_arrays(columns: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """In-memory columns (:func:`~appliance.events.encoding.rows_to_columns`) as the arrays
    a checkpoint stores: hashes and string ids dictionary-coded, the rest as they are."""
    arrays = {name: columns[name] for name in _PLAIN}
    for name in _CODED:
        dictionary, codes = np.unique(columns[name], return_inverse=True)
        arrays["d." + name], arrays["c." + name] = dictionary, narrow(codes.reshape(-1))
    for name in STRING_FIELDS:
        arrays["d." + name], arrays["c." + name] = dictionary_of(columns["i." + name])
    return arrays


def _decoder(encoded: dict[str, bytes], name: str) -> Callable[[], np.ndarray]:
    """A function decoding the in-memory column ``name`` from a checkpoint's stored values."""

    def value(stored: str) -> np.ndarray:
        return decode_array(encoded.pop(stored))  # each stored value serves one column

    if name in _PLAIN:
        dtype = SCALARS.get(name)
        return _once(lambda: value(name) if dtype is None else value(name).astype(dtype, copy=False))
    stored = name[2:] if name.startswith("i.") else name
    dtype = SCALARS.get(name, np.dtype(np.uint32))
    return _once(lambda: value("d." + stored)[value("c." + stored)].astype(dtype, copy=False))


def _once(make: Callable[[], np.ndarray]) -> Callable[[], np.ndarray]:
    """``make``, run once: a block and the block extending it may both ask for the column."""
    lock, made = threading.Lock(), []

    def run() -> np.ndarray:
        with lock:
            if not made:
                made.append(make())
            return made[0]

    return run


def column_names() -> tuple[str, ...]:
    """The in-memory columns a block built from log rows holds."""
    return (*SCALARS, *("i." + name for name in STRING_FIELDS), "p.row", "p.key", "p.value")


def visitor_coding(dictionary: np.ndarray, codes: np.ndarray, tail: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``np.unique(visitors, return_inverse=True)`` of a block's visitor hashes (as
    :meth:`Block._visitor_coding <appliance.events.blocks.Block>` holds it), from the sorted
    distinct hashes and codes of its first rows and the hashes of the rows after them:
    without sorting every row's hash again."""
    if not len(tail):
        return dictionary, codes.astype(np.int64)
    merged = np.union1d(dictionary, tail)
    head = np.searchsorted(merged, dictionary)[codes]
    return merged, np.concatenate([head, np.searchsorted(merged, tail)]).astype(np.int64)


def _joined(head: np.ndarray, tail: np.ndarray, name: str, offset: int) -> np.ndarray:
    """Two row sets' column one after the other, as :func:`~appliance.events.encoding.concatenate` joins them."""
    if name == "p.row":
        return np.concatenate([head.astype(np.uint32), tail.astype(np.uint32) + np.uint32(offset)])
    return np.concatenate([head, tail])


class LazyColumns(dict):
    """A block's in-memory columns, each made on first use (a query reads a few of them): from
    a checkpoint's stored values, joined with the log rows after it. As a column is made, the
    block it belongs to (:attr:`owner`) is told, so the block cache counts it at once."""

    def __init__(self, makers: dict[str, Callable[[], np.ndarray]]) -> None:
        super().__init__()
        self._makers = makers
        self._lock = threading.Lock()
        self.owner: Callable[[], Block | None] = lambda: None  # a weak reference to the block
        self.encoded: dict[str, bytes] = {}  # the checkpoint's stored values not decoded yet

    @classmethod
    def of_checkpoint(cls, encoded: dict[str, bytes]) -> LazyColumns:
        columns = cls({name: _decoder(encoded, name) for name in column_names()})
        columns.encoded = encoded
        return columns

    @property
    def pending_bytes(self) -> int:
        """Bytes of stored values held until their columns are made (the block cache counts them)."""
        return sum(len(value) for value in list(self.encoded.values()))

    def __missing__(self, name: str) -> np.ndarray:
        with self._lock:
            if dict.__contains__(self, name):
                return dict.__getitem__(self, name)
            make = self._makers.get(name)
            if make is None:
                raise KeyError(name)
            value = self._makers.pop(name)()
            dict.__setitem__(self, name, value)
        block = self.owner()
        if block is not None:
            block.grew()
        return value

    def get(self, name, default=None):
        try:
            return self[name]
        except KeyError:
            return default

    def extended(self, tail: dict[str, np.ndarray], offset: int) -> LazyColumns:
        """These columns (``offset`` rows) followed by ``tail``'s: the columns made already are
        joined now, the others when first used (no chain of older blocks is kept alive)."""
        with self._lock:
            made, makers = dict(self.items()), dict(self._makers)
        joined = LazyColumns({
            name: _once(lambda name=name, make=make: _joined(make(), tail[name], name, offset)) for name, make in makers.items()
        })
        for name, value in made.items():
            dict.__setitem__(joined, name, _joined(value, tail[name], name, offset))
        joined.encoded = self.encoded
        return joined

    def adopt(self, block: Block) -> Block:
        self.owner = weakref.ref(block)
        return block


class OpenDays:
    """Builds the in-memory blocks of days without a compacted block, and keeps their checkpoints."""

    def __init__(self, store, eventlog, columns) -> None:
        self._store = store
        self._eventlog = eventlog
        self._columns = columns  # the ColumnStore: its settled reads, counts, pointers
        self.checkpoints = ColumnBlocks(store, b"checkpoints")
        self.checkpoint_rows = CHECKPOINT_ROWS
        self.resumed = 0  # blocks built from a checkpoint (tests, the bench)
        self.refused = 0  # checkpoints found but not current (late rows before the key, deletions)
        self.erasures = 0  # erasures begun (a checkpoint's snapshot from before one is not written)

    # -- reading --------------------------------------------------------------------------
    def block(self, txn, site: int, day: int, total: int, cached: Block | None) -> Block:
        """The day's block from the log: ``cached`` extended, the checkpoint plus the log
        rows after it, or every log row of the day. ``total`` is the day's event count."""
        start, end = day * DAY_MS, (day + 1) * DAY_MS
        if cached is not None and cached.generation == 0 and not cached.stored and cached.last_key:
            # Extend a tail block with what was appended after its last key, if that is all.
            entries = self._after(txn, site, day, cached.last_key)
            if cached.built_against + len(entries) == total:
                if isinstance(cached.columns, LazyColumns):
                    lazy = cached.columns.extended(rows_to_columns(entries), cached.count)
                    block = Block(site, day, cached.count + len(entries), lazy, built_against=total)
                    block.last_key = entries[-1][0] if entries else cached.last_key
                    return lazy.adopt(block)
                columns = concatenate([cached.columns, rows_to_columns(entries)])
                last_key = entries[-1][0] if entries else cached.last_key
                return Block(site, day, cached.count + len(entries), columns, last_key=last_key, built_against=total)
        resumed = self._resume(txn, site, day, total)
        if resumed is not None:
            return resumed
        columns, last_key = log_columns(self._eventlog.chunks(txn, site, start, end, CHUNK_ROWS, expected=total))
        last_key = last_key or pack_event_key(site, start, 0)
        return Block(site, day, len(columns["ts"]), columns, last_key=last_key, built_against=total)

    def _after(self, txn, site: int, day: int, last_key: bytes) -> list[tuple[bytes, bytes]]:
        _, last_ms, _ = unpack_event_key(last_key)
        return [(k, v) for k, v in self._eventlog.scan(txn, site, last_ms, (day + 1) * DAY_MS) if k > last_key]

    def _current(self, txn, site: int, day: int, total: int):
        """``(pointer, columns, log rows after it)`` of the day's checkpoint if it is current."""
        pointer = self.checkpoints.pointer(txn, site, day)
        if pointer is None or pointer.info.get("format") != CHECKPOINT_FORMAT or "count" not in pointer.info:
            return None
        last_key = bytes(pointer.info["last_key"])
        entries = self._after(txn, site, day, last_key)
        if int(pointer.info["built_against"]) + len(entries) != total:
            self.refused += 1
            return None
        encoded = self.checkpoints.values(txn, site, day, pointer.generation)  # decoded when used
        coded = decode_array(encoded["d.visitor"]), decode_array(encoded["c.visitor"])
        return pointer, LazyColumns.of_checkpoint(encoded), entries, coded

    def _resume(self, txn, site: int, day: int, total: int) -> Block | None:
        found = self._current(txn, site, day, total)
        if found is None:
            return None
        pointer, columns, entries, (dictionary, codes) = found
        last_key, count = bytes(pointer.info["last_key"]), int(pointer.info["count"])
        tail = rows_to_columns(entries)
        if entries:
            columns = columns.extended(tail, count)
            last_key = entries[-1][0]
        self.resumed += 1
        block = Block(site, day, count + len(entries), columns, built_against=total)
        block.last_key = last_key
        # visits number visitors by their place among the day's sorted hashes: no sort of every row's
        block.derived["visitor_coding"] = visitor_coding(dictionary, codes, tail["visitor"])
        return columns.adopt(block)

    # -- writing (the job runner's thread) --------------------------------------------------
    def checkpoint(self, site: int, day: int) -> bool:
        """Store the day's log rows as its checkpoint when at least :attr:`checkpoint_rows`
        of them are not in the current one (none for a day with a compacted block); returns
        whether one was written. An existing checkpoint is extended, not read again from the log."""
        columns_store = self._columns
        started = time.monotonic()
        erasures = self.erasures  # read before the snapshot (see erasing)
        with columns_store.settled() as txn:
            if columns_store.blocks.pointer(txn, site, day) is not None:
                return False
            total = columns_store.day_count(txn, site, day)
            if total < self.checkpoint_rows:
                return False  # not enough rows, in a checkpoint or not (no read of the log)
            previous = self.checkpoints.pointer(txn, site, day)
            found = self._current(txn, site, day, total)
            if found is not None:
                if len(found[2]) < max(self.checkpoint_rows, EXTEND_SHARE * int(found[0].info["count"])):
                    return False
                lazy = found[1].extended(rows_to_columns(found[2]), int(found[0].info["count"]))
                columns, last_key = {name: lazy[name] for name in column_names()}, found[2][-1][0]
            else:
                chunks = self._eventlog.chunks(txn, site, day * DAY_MS, (day + 1) * DAY_MS, CHUNK_ROWS, expected=total)
                columns, last_key = log_columns(chunks)
                if len(columns["ts"]) < self.checkpoint_rows:
                    return False
        encoded = {
            name: encode_array(array, delta=name in _DELTA) for name, array in checkpoint_arrays(columns).items()
        }
        again = LazyColumns.of_checkpoint(dict(encoded))
        for name, array in columns.items():
            if not np.array_equal(again[name], array) or again[name].dtype != array.dtype:
                raise RuntimeError(f"checkpoint of site {site} day {day}: column {name} does not decode again")
        info = {"format": CHECKPOINT_FORMAT, "last_key": last_key, "built_against": total, "count": len(columns["ts"])}
        expected = previous.generation if previous is not None else None

        def write(txn):
            current = self.checkpoints.pointer(txn, site, day)
            if (current.generation if current is not None else None) != expected:
                return False
            if columns_store.blocks.pointer(txn, site, day) is not None:
                return False  # compacted meanwhile
            if self.erasures != erasures:
                return False  # the snapshot may hold erased rows: taken again next time
            self.checkpoints.delete(txn, site, day)  # readers decode a checkpoint in one transaction
            self.checkpoints.put(txn, site, day, encoded, info)
            return True

        written = self._store.write(write)
        if written:
            log.info("checkpointed day %s of site %s: %d rows in %.2f s", day, site, info["count"], time.monotonic() - started)
        return written

    def stored_bytes(self, site: int, day: int) -> int:
        """Bytes the day's checkpoint takes (its arrays as stored)."""
        with self._store.read() as txn:
            pointer = self.checkpoints.pointer(txn, site, day)
            if pointer is None:
                return 0
            return sum(self.checkpoints.stored_bytes(txn, site, day, pointer.generation).values())

    # -- removal --------------------------------------------------------------------------
    def erasing(self, site: int, day: int) -> None:
        """An erasure is about to delete rows of the day: its checkpoint goes first, and a
        checkpoint being taken is not written. The erasure holds the write coordinator's mutex
        from before this call until its rows are gone, so a settled snapshot is taken either
        before it (and its checkpoint sees :attr:`erasures` changed, in its write transaction,
        or is deleted here if written first) or after it (without the rows)."""
        self.erasures += 1
        self._store.write(lambda txn: self.drop(txn, site, day))

    def drop(self, txn, site: int, day: int) -> int:
        return self.checkpoints.delete(txn, site, day)

    def drop_site(self, txn, site: int) -> int:
        return self.checkpoints.delete_site(txn, site)

    def drop_before(self, txn, site: int, last_day: int) -> int:
        """Delete the site's checkpoints of days up to ``last_day`` (the retention purge)."""
        removed = 0
        for day in self.checkpoints.days(txn, site, 0, last_day):
            removed += self.checkpoints.delete(txn, site, day)
        return removed

    def days(self, site: int) -> list[int]:
        with self._store.read() as txn:
            return self.checkpoints.days(txn, site)


__all__ = ["CHECKPOINT_FORMAT", "CHECKPOINT_ROWS", "EXTEND_SHARE", "OpenDays", "LazyColumns", "checkpoint_arrays"]
