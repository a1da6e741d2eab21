"""Column blocks of the event log: what a filtered query scans instead of decoding every event.

The event log (``storage.eventlog``) is the write-optimised tail: ingest appends MessagePack
rows and never touches a block. Queries read the log through *blocks*, one per site and UTC
day, holding numpy columns: ``seq`` (the log sequence), ``ts`` (milliseconds), ``visitor``,
``kind``, ``user`` (1 when the visitor id is a hashed user_id), ``session`` (the hashed
client session id), ``revenue``, ``engaged``, ``scroll``; each interned string field of
:data:`appliance.recorder.STRING_FIELDS` as a per-block dictionary of ids plus small codes
(``uint8``/``uint16``/``uint32``), so a filter is evaluated once per distinct value and becomes
a mask with one gather; and event properties as three parallel arrays (row, key id, value id).

Freshness without touching the ingest path: the number of events of a UTC day is the sum of
its 24 hourly ``EVENTS_TOTAL`` counters. Counters are folded in after the log rows are
committed (``Appliance.flush_aggregates``), so a block is read in a *settled snapshot*: under
the appliance's write mutex, pending events are aggregated and the read transaction opened,
so no commit falls between and the log and the counters agree in it. A block records the
day's count it was built from (``built_against``); when the count differs, it is stale. A closed
day's block (the day ended more than :data:`CLOSE_GRACE_SECONDS` ago) is compacted from the
log on first use and stored in LMDB, so later queries — after a restart too — read a few
arrays. Today's block lives only in memory and is extended incrementally with the rows
appended after the last key it read; when a late event lands before that key (the count grew
by more than the rows found after it), the block is rebuilt. A late event for a closed day
makes its stored block stale, and the next query recompacts it.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable
from contextlib import contextmanager
from dataclasses import dataclass, field

import msgspec
import numpy as np

from appliance import dimensions as dims
from appliance.recorder import STRING_FIELDS
from storage.columns import ColumnBlocks
from storage.keys import HOUR, pack_event_key, unpack_event_key

FORMAT_VERSION = 1
DAY_MS = 86_400_000
CLOSE_GRACE_SECONDS = 15 * 60  # a day is compacted this long after it ends (late batches)
CACHE_BYTES = 3 << 30  # decoded blocks kept in memory (least recently used dropped first)

SCALARS: dict[str, np.dtype] = {
    "seq": np.dtype(np.uint32),
    "ts": np.dtype(np.int64),
    "visitor": np.dtype(np.uint64),
    "kind": np.dtype(np.uint8),
    "user": np.dtype(np.uint8),
    "session": np.dtype(np.uint64),
    "revenue": np.dtype(np.int64),
    "engaged": np.dtype(np.int32),
    "scroll": np.dtype(np.int16),
}
PROPS = ("p.row", "p.key", "p.value")
FIELD_INDEX = {name: index for index, name in enumerate(STRING_FIELDS)}
_decoder = msgspec.msgpack.Decoder()


def _codes_dtype(size: int) -> np.dtype:
    if size <= 1 << 8:
        return np.dtype(np.uint8)
    if size <= 1 << 16:
        return np.dtype(np.uint16)
    return np.dtype(np.uint32)


@dataclass
class Block:
    """One site and UTC day of events as columns (rows in log-key order: time order)."""

    site: int
    day: int
    built_against: int  # the day's event count the block was built from
    count: int
    last_key: bytes  # the last log key read (tail blocks are extended after it)
    columns: dict[str, np.ndarray] = field(default_factory=dict)
    persisted: bool = False
    cached_size: int = 0  # bytes when it entered the cache (lazy columns may add a little)
    derived: dict = field(default_factory=dict)  # per-block results cached by their users (visits)
    _ids: dict[str, np.ndarray] = field(default_factory=dict)

    def nbytes(self) -> int:
        return sum(a.nbytes for a in self.columns.values()) + sum(a.nbytes for a in self._ids.values())

    def dictionary(self, name: str) -> tuple[np.ndarray, np.ndarray]:
        """``(distinct ids, codes)`` of a string field: ``ids == dictionary[codes]``."""
        found = self.columns.get("d." + name)
        if found is None:
            ids = self.columns["i." + name]
            dictionary, codes = np.unique(ids, return_inverse=True)
            self.columns["d." + name] = dictionary.astype(np.uint32)
            self.columns["c." + name] = codes.astype(_codes_dtype(len(dictionary)))
        return self.columns["d." + name], self.columns["c." + name]

    def ids(self, name: str) -> np.ndarray:
        """The interned ids of a string field, one per row."""
        plain = self.columns.get("i." + name)
        if plain is not None:
            return plain
        found = self._ids.get(name)
        if found is None:
            dictionary, codes = self.dictionary(name)
            found = self._ids[name] = dictionary[codes]
        return found


def _rows_to_columns(entries: list[tuple[bytes, bytes]]) -> dict[str, np.ndarray]:
    """Decode log rows into columns; string fields as plain id arrays (``i.<field>``)."""
    count = len(entries)
    columns: dict[str, np.ndarray] = {}
    if not count:
        for name, dtype in SCALARS.items():
            columns[name] = np.zeros(0, dtype)
        for name in STRING_FIELDS:
            columns["i." + name] = np.zeros(0, np.uint32)
        for name in PROPS:
            columns[name] = np.zeros(0, np.uint32)
        return columns
    unpack = unpack_event_key
    keys = [unpack(key) for key, _ in entries]
    rows = [_decoder.decode(value) for _, value in entries]
    columns["seq"] = np.fromiter((k[2] for k in keys), np.uint32, count)
    columns["ts"] = np.fromiter((k[1] for k in keys), np.int64, count)
    kind, visitor, user, session, ids, props, revenue, engaged, scroll = zip(*rows, strict=True)
    columns["kind"] = np.array(kind, np.uint8)
    columns["visitor"] = np.array(visitor, np.uint64)
    columns["user"] = np.array(user, np.uint8)
    columns["session"] = np.array(session, np.uint64)
    columns["revenue"] = np.array(revenue, np.int64)
    columns["engaged"] = np.array(engaged, np.int32)
    columns["scroll"] = np.array(scroll, np.int16)
    width = len(STRING_FIELDS)
    try:
        matrix = np.array(ids, np.uint32)
        if matrix.ndim != 2 or matrix.shape[1] != width:
            raise ValueError
    except ValueError:  # rows written before a field was added: pad with the empty string
        matrix = np.zeros((count, width), np.uint32)
        for index, row in enumerate(ids):
            matrix[index, : min(width, len(row))] = row[:width]
    for index, name in enumerate(STRING_FIELDS):
        columns["i." + name] = np.ascontiguousarray(matrix[:, index])
    lengths = np.fromiter((len(p) // 2 for p in props), np.int64, count)
    flat = np.fromiter((x for p in props for x in p), np.uint32, int(lengths.sum()) * 2)
    columns["p.row"] = np.repeat(np.arange(count, dtype=np.uint32), lengths)
    columns["p.key"] = flat[0::2].copy()
    columns["p.value"] = flat[1::2].copy()
    return columns


def _append_columns(old: dict[str, np.ndarray], new: dict[str, np.ndarray], offset: int) -> dict[str, np.ndarray]:
    out = {}
    for name in (*SCALARS, *("i." + f for f in STRING_FIELDS), *PROPS):
        addition = new[name] + np.uint32(offset) if name == "p.row" else new[name]
        out[name] = np.concatenate([old[name], addition])
    return out


def _persistable(columns: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Columns as stored: string fields dictionary-encoded."""
    out = {name: columns[name] for name in (*SCALARS, *PROPS)}
    for name in STRING_FIELDS:
        dictionary, codes = np.unique(columns["i." + name], return_inverse=True)
        out["d." + name] = dictionary.astype(np.uint32)
        out["c." + name] = codes.astype(_codes_dtype(len(dictionary)))
    return out


class ColumnStore:
    """Builds, stores, caches and serves column blocks (see the module docstring)."""

    def __init__(self, appliance, *, cache_bytes: int = CACHE_BYTES, clock: Callable[[], float] = time.time) -> None:
        self._appliance = appliance
        self._store = appliance.store
        self._eventlog = appliance.eventlog
        self._counters = appliance.counters
        self.blocks = ColumnBlocks(appliance.store)
        self._cache: OrderedDict[tuple[int, int], Block] = OrderedDict()
        self._cache_bytes = cache_bytes
        self._cached_bytes = 0
        self._lock = threading.Lock()
        self._day_locks = [threading.Lock() for _ in range(64)]  # striped by (site, day)
        self._clock = clock
        self.compactions = 0  # blocks built from the log and stored (for tests and the bench)

    # -- freshness ------------------------------------------------------------------------
    @contextmanager
    def settled(self):
        """A read transaction in which every committed event is also aggregated."""
        reader = self._store.read()
        appliance = self._appliance
        mutex = getattr(appliance, "_write_mutex", None)
        if mutex is not None:
            with mutex:  # no commit and no aggregation can start while the snapshot opens
                appliance.flush_aggregates()
                txn = reader.__enter__()
        else:
            txn = reader.__enter__()
        try:
            yield txn
        finally:
            reader.__exit__(None, None, None)

    def day_count(self, txn, site: int, day: int) -> int:
        """Events of ``site`` logged with a timestamp in UTC day ``day``."""
        return sum(
            value for _, _, value in self._counters.scan(txn, site, HOUR, dims.EVENTS_TOTAL, day * 24, day * 24 + 23)
        )

    def days_with_events(self, site: int, first_day: int, last_day: int) -> list[int]:
        """UTC days of the range on which ``site`` logged events (one counter scan)."""
        with self.settled() as txn:
            hours = self._counters.scan(txn, site, HOUR, dims.EVENTS_TOTAL, first_day * 24, last_day * 24 + 23)
            return sorted({hour // 24 for hour, _, value in hours if value})

    def is_closed(self, day: int) -> bool:
        return self._clock() * 1000 >= (day + 1) * DAY_MS + CLOSE_GRACE_SECONDS * 1000

    # -- blocks ---------------------------------------------------------------------------
    def block(self, site: int, day: int) -> Block:
        """The current block of ``(site, day)``: cached, stored, extended or compacted."""
        key = (site, day)
        with self._day_locks[hash(key) % len(self._day_locks)]:
            to_store = None
            with self.settled() as txn:
                total = self.day_count(txn, site, day)
                with self._lock:
                    cached = self._cache.get(key)
                    if cached is not None:
                        self._cache.move_to_end(key)
                if cached is not None and cached.built_against == total:
                    if not cached.persisted and cached.count and self.is_closed(day):
                        to_store = cached  # a tail block whose day has closed: compact it
                    else:
                        return cached
                block = self._stored(txn, site, day, total) if cached is None and total else None
                if to_store is not None:
                    block = to_store
                elif block is None:
                    block = self._from_log(txn, site, day, total, cached)
                    if self.is_closed(day) and block.count:
                        to_store = block
            if to_store is not None:
                self._persist(to_store)
            self._remember(block)
            return block

    def _stored(self, txn, site: int, day: int, total: int) -> Block | None:
        meta = self.blocks.get(txn, site, day, "meta")
        if meta is None or int(meta[0]) != FORMAT_VERSION or int(meta[1]) != total:
            return None
        columns = {}
        for name in (*SCALARS, *PROPS, *(f"{p}.{f}" for f in STRING_FIELDS for p in "dc")):
            array = self.blocks.get(txn, site, day, name)
            if array is None:
                return None
            columns[name] = array
        return Block(
            site=site, day=day, built_against=total, count=int(meta[2]), last_key=b"", columns=columns, persisted=True
        )

    def _from_log(self, txn, site: int, day: int, total: int, cached: Block | None) -> Block:
        start, end = day * DAY_MS, (day + 1) * DAY_MS
        if cached is not None and not cached.persisted and cached.last_key:
            # Extend a tail block with what was appended after its last key, if that is all.
            _, last_ms, _ = unpack_event_key(cached.last_key)
            entries = [
                (k, v) for k, v in self._eventlog.scan(txn, site, last_ms, end) if k > cached.last_key
            ]
            if cached.built_against + len(entries) == total:
                columns = _append_columns(cached.columns, _rows_to_columns(entries), cached.count)
                return Block(
                    site=site,
                    day=day,
                    built_against=total,
                    count=cached.count + len(entries),
                    last_key=entries[-1][0] if entries else cached.last_key,
                    columns=columns,
                )
        entries = list(self._eventlog.scan(txn, site, start, end))
        return Block(
            site=site,
            day=day,
            built_against=total,
            count=len(entries),
            last_key=entries[-1][0] if entries else pack_event_key(site, start, 0),
            columns=_rows_to_columns(entries),
        )

    def _persist(self, block: Block) -> None:
        stored = _persistable(block.columns)
        stored["meta"] = np.array([FORMAT_VERSION, block.built_against, block.count], np.int64)

        def write(txn):
            self.blocks.put(txn, block.site, block.day, stored)

        self._store.write(write)
        block.columns = {name: array for name, array in stored.items() if name != "meta"}
        block.persisted = True
        self.compactions += 1

    def _remember(self, block: Block) -> None:
        if not block.count:
            return  # an empty day costs one counter scan to find again
        key = (block.site, block.day)
        with self._lock:
            replaced = self._cache.pop(key, None)
            if replaced is not None:
                self._cached_bytes -= replaced.cached_size
            block.cached_size = block.nbytes()
            self._cache[key] = block
            self._cached_bytes += block.cached_size
            while self._cached_bytes > self._cache_bytes and len(self._cache) > 1:
                _, dropped = self._cache.popitem(last=False)
                self._cached_bytes -= dropped.cached_size

    def compact(self, site: int, first_day: int, last_day: int) -> int:
        """Build and store every closed day's block in the range; returns how many were built."""
        before = self.compactions
        for day in range(first_day, last_day + 1):
            if self.is_closed(day):
                self.block(site, day)
        return self.compactions - before

    def forget(self, site: int | None = None) -> None:
        with self._lock:
            for key in [k for k in self._cache if site is None or k[0] == site]:
                self._cached_bytes -= self._cache.pop(key).cached_size

    # -- frames ---------------------------------------------------------------------------
    def frame(self, site: int, start_ms: int, end_ms: int) -> Frame:
        """The site's events with ``start_ms <= ts < end_ms``, as a :class:`Frame`."""
        parts = []
        for day in self.days_with_events(site, start_ms // DAY_MS, (end_ms - 1) // DAY_MS):
            block = self.block(site, day)
            if not block.count:
                continue
            ts = block.columns["ts"]
            lo = 0 if start_ms <= day * DAY_MS else int(np.searchsorted(ts, start_ms, "left"))
            hi = block.count if end_ms >= (day + 1) * DAY_MS else int(np.searchsorted(ts, end_ms, "left"))
            if hi > lo:
                parts.append((block, lo, hi))
        return Frame(parts)


class Frame:
    """Events of a period: slices of day blocks, read column by column and concatenated."""

    def __init__(self, parts: list[tuple[Block, int, int]]) -> None:
        self.parts = parts
        self.size = sum(hi - lo for _, lo, hi in parts)
        self._cache: dict[str, np.ndarray] = {}

    def column(self, name: str) -> np.ndarray:
        """A scalar column (``ts``, ``visitor``, ``kind``...) or a string field's ids."""
        found = self._cache.get(name)
        if found is None:
            if name in SCALARS:
                pieces = [block.columns[name][lo:hi] for block, lo, hi in self.parts]
                dtype = SCALARS[name]
            else:
                pieces = [block.ids(name)[lo:hi] for block, lo, hi in self.parts]
                dtype = np.dtype(np.uint32)
            found = np.concatenate(pieces) if pieces else np.zeros(0, dtype)
            self._cache[name] = found
        return found

    def mask(self, name: str, accept: Callable[[np.ndarray], np.ndarray]) -> np.ndarray:
        """Rows whose string field ``name`` is accepted; ``accept(distinct ids) -> bool array``
        is called once per block on that block's dictionary, never per row."""
        pieces = []
        for block, lo, hi in self.parts:
            dictionary, codes = block.dictionary(name)
            pieces.append(accept(dictionary)[codes[lo:hi]])
        return np.concatenate(pieces) if pieces else np.zeros(0, bool)

    def prop_mask(self, key_ids: Iterable[int], accept: Callable[[np.ndarray], np.ndarray] | None) -> np.ndarray:
        """Rows with a property whose key is in ``key_ids`` and whose value is accepted
        (any value when ``accept`` is None)."""
        keys = np.fromiter(key_ids, np.uint32)
        pieces = []
        for block, lo, hi in self.parts:
            out = np.zeros(hi - lo, bool)
            rows = block.columns["p.row"]
            if len(rows) and len(keys):
                chosen = np.isin(block.columns["p.key"], keys)
                if accept is not None and chosen.any():
                    values = block.columns["p.value"][chosen]
                    distinct, inverse = np.unique(values, return_inverse=True)
                    chosen[chosen] = accept(distinct)[inverse]
                hit = rows[chosen].astype(np.int64)
                hit = hit[(hit >= lo) & (hit < hi)] - lo
                out[hit] = True
            pieces.append(out)
        return np.concatenate(pieces) if pieces else np.zeros(0, bool)

    def props_of(self, key_id: int) -> np.ndarray:
        """Per row, the value id of property ``key_id`` (0 when absent)."""
        pieces = []
        for block, lo, hi in self.parts:
            out = np.zeros(hi - lo, np.uint32)
            chosen = block.columns["p.key"] == key_id
            rows = block.columns["p.row"][chosen].astype(np.int64)
            values = block.columns["p.value"][chosen]
            inside = (rows >= lo) & (rows < hi)
            out[rows[inside] - lo] = values[inside]
            pieces.append(out)
        return np.concatenate(pieces) if pieces else np.zeros(0, np.uint32)
