"""Unique-visitor sketches: exact small sets that turn into HyperLogLog sketches as they grow.

A sketch is stored under a bucket key (see :mod:`storage.keys`). While it holds at most
``exact_limit`` distinct 64-bit visitor hashes it is an exact sorted set; past that it becomes
a ``hyperloglog.HyperLogLog`` of the requested precision, whose int8 registers are stored
zlib-compressed. Unions over any range merge exact sets exactly and sketches register-wise
(``max``), so visitors over a month are a union of daily sketches, never a sum.

Error bound: with precision ``p`` the relative standard error is ``1.04 / sqrt(2**p)``:
p=14 gives 0.81 % (site totals), p=12 gives 1.63 % (per-dimension breakdowns). Tests check
estimates within three standard errors. Exact sets are exact.

Encoding: ``b"E"`` + sorted 8-byte hashes (exact); ``b"S"`` + precision byte + the filled
registers as (u16 index, u8 rank) pairs (sparse: most daily and per-value sketches), or
``b"R"`` + precision byte + every register (raw). ``b"H"`` (zlib-compressed registers, the
first format) is still read.
Values are 64-bit visitor ids, which are keyed BLAKE2b digests: already uniform hashes, so
they update the registers directly (vectorised) instead of going through the package's
per-value SHA-1; the package's estimator (with its bias correction) and merge are used as is.
"""

from __future__ import annotations

import hashlib
import itertools
import struct
import sys
import threading
import time
import zlib
from array import array
from bisect import bisect_left
from collections import OrderedDict
from collections.abc import Iterable, Iterator

import numpy as np
from hyperloglog import HyperLogLog
from hyperloglog.hll import get_alpha, get_rho_vec

from storage import rollups
from storage.arrays import distinct_values
from storage.counters import stored_metrics
from storage.keys import DAY, HOUR, bucket_prefix, pack_bucket_key, unpack_bucket_key
from storage.range_sums import RangeSums
from storage.retention import delete_prefix

SITE_PRECISION = 14
DIMENSION_PRECISION = 12
EXACT_LIMIT = 256
COUNTS_KEPT = 4096  # counts of stored sketches remembered by Sketches.count_stored
_SMALL_ADD = 48  # up to this many hashes are added to registers in plain Python
_POINT_READS = 64  # up to this many chosen dimension values are read key by key in a union
_PEEK = 4  # Sketch.add_array: an array's first PEEK * exact_limit hashes are looked at first
_SLICE = 1 << 16  # Sketch.add_array: hashes raised per numpy pass (~2 MB of temporaries)


def exact_bytes(members: set[int]) -> bytes:
    """An exact set's members as sorted big-endian 8-byte hashes (the ``b"E"`` body): numpy
    sorts and packs them at once; the bytes equal ``b"".join(pack(h) for h in sorted(members))``."""
    values = np.fromiter(members, dtype=np.uint64, count=len(members))
    values.sort()
    return values.astype(">u8").tobytes()


def register_ranks(values: np.ndarray, precision: int) -> tuple[np.ndarray, np.ndarray]:
    """The register index and rank of each 64-bit hash (uint64 array) at ``precision``: the low
    ``p`` bits pick the register, the rest give the rank (``get_rho_vec``)."""
    registers = (values & np.uint64((1 << precision) - 1)).astype(np.intp)
    ranks = get_rho_vec(values >> np.uint64(precision), 64 - precision).astype(np.int8)
    return registers, ranks


#: what a sketch object costs beyond its set (exact) or its registers (the HyperLogLog object,
#: its attributes and numpy's array header), measured with tracemalloc
_EXACT_OVERHEAD, _HLL_OVERHEAD = 64, 300
#: a member of an exact set: a 64-bit int object (three 30-bit digits)
_MEMBER_BYTES = 36


def sketch_bytes(sketch: Sketch) -> int:
    """The heap a decoded sketch takes, estimated (within a few percent of tracemalloc's count
    for a decoded one; sketches updated from one batch share their members' int objects, so
    this is an upper bound): an exact set grows to ~17.6 KB at 256 visitors, four times a
    precision-12 HyperLogLog (4.4 KB), so a cache bounded by entries is not bounded in bytes.
    A kept encoding (:meth:`Sketch.keep_encoding`) adds three bytes per filled register, or
    48 per member (a list slot, the member's own int object, eight bytes of encoding)."""
    kept = sketch.encoding
    kept = kept is not None and kept is not KEEP
    if sketch.exact is not None:
        size = _EXACT_OVERHEAD + sys.getsizeof(sketch.exact) + _MEMBER_BYTES * len(sketch.exact)
        return size + _KEPT_OVERHEAD + 48 * len(sketch.exact) if kept else size
    size = _HLL_OVERHEAD + sketch.hll.M.nbytes
    return size + _KEPT_OVERHEAD + 3 * len(sketch.encoding.indices) if kept else size


#: the two containers of a kept encoding, empty (measured with sys.getsizeof)
_KEPT_OVERHEAD = 200
#: up to this many new members (risen registers) a kept encoding is updated one by one; past
#: it, encoded afresh (numpy), which then costs less (in ``timeit``: ~0.35 µs a step, ~5 µs
#: to encode a 200-member set)
_STEPWISE = 12
#: :attr:`Sketch.encoding` of a sketch whose encoding is to be kept from its next full one
KEEP = object()


class ExactMembers:
    """An exact set's ``b"E"`` encoding kept up to date member by member: the members in
    order and their big-endian bytes. Encoding the set again (numpy: read, sort, convert) cost
    ~7 µs per sketch; most of a batch's sketches are exact sets taking a few new members."""

    __slots__ = ("members", "body")

    def __init__(self, members: list[int], body: bytes) -> None:
        self.members = members  # sorted
        self.body = bytearray(body)

    def add_all(self, fresh: list[int]) -> None:
        """Take new members (distinct, none already held), each a binary search and two
        short inserts (~0.35 µs)."""
        members, body = self.members, self.body
        for member in fresh:
            position = bisect_left(members, member)
            members.insert(position, member)
            body[8 * position:8 * position] = member.to_bytes(8, "big")

    def encode(self) -> bytes:
        """The ``b"E"`` bytes, equal to :meth:`Sketch.to_bytes` of the same set."""
        return b"E" + self.body


class SparseRegisters:
    """A HyperLogLog's ``b"S"`` encoding kept up to date register by register: the filled
    registers' indices in order (native u16) and their ranks (u8).

    A busy day's per-value sketch has a few registers raised by a batch; encoding it again
    from its 4,096 registers (numpy: a scan, a gather, two conversions) cost ~7 µs per sketch,
    ~180 of them per batch of 500, a third of the sketches' step. Raising one register here is
    a binary search and, for a register filled for the first time, two short inserts."""

    __slots__ = ("indices", "ranks")

    def __init__(self, filled: np.ndarray, ranks: bytes) -> None:
        self.indices = array("H", filled.astype(np.uint16).tobytes())
        self.ranks = bytearray(ranks)

    def fits(self, precision: int) -> bool:
        """Whether the sketch is still stored sparse (under a third of its registers filled)."""
        return len(self.indices) * 3 < 1 << precision

    def encode(self, precision: int) -> bytes:
        """The ``b"S"`` bytes, equal to :meth:`Sketch.to_bytes` of the same registers."""
        indices = self.indices
        if _SWAP_TO_BIG_ENDIAN:
            indices = array("H", indices)
            indices.byteswap()
        return b"S" + bytes([precision]) + indices.tobytes() + self.ranks


_SWAP_TO_BIG_ENDIAN = sys.byteorder == "little"


def standard_error(precision: int) -> float:
    return 1.04 / (2**precision) ** 0.5


def new_hll(precision: int, registers: np.ndarray | None = None) -> HyperLogLog:
    sketch = HyperLogLog.__new__(HyperLogLog)
    m = 1 << precision
    sketch.__setstate__(
        {
            "alpha": get_alpha(precision),
            "p": precision,
            "m": m,
            "M": registers if registers is not None else np.zeros(m, np.int8),
        }
    )
    return sketch


class Sketch:
    """An exact set of visitor hashes or a HyperLogLog, with one interface."""

    __slots__ = ("exact", "hll", "precision", "exact_limit", "encoding")

    def __init__(self, precision: int, exact_limit: int = EXACT_LIMIT) -> None:
        self.precision = precision
        self.exact_limit = exact_limit
        self.exact: set[int] | None = set()
        self.hll: HyperLogLog | None = None
        #: the stored bytes kept up to date while a cached sketch takes a few hashes per batch
        #: (:meth:`keep_encoding`); :data:`KEEP`: kept from the next full encoding on; None:
        #: encoded from the set or the registers. A change other than :meth:`add_many` (or
        #: :meth:`add_array`, through it) to an exact set or :meth:`hll_add_few_changing`
        #: drops it.
        self.encoding: SparseRegisters | ExactMembers | object | None = None

    def keep_encoding(self) -> None:
        """Keep this sketch's encoding from its next :meth:`to_bytes` on (built from that
        encoding's own arrays, so at little more than its cost), for :meth:`add_many` (an exact
        set) and :meth:`hll_add_few_changing` (a sparse HyperLogLog, while it stays sparse)
        to update and :meth:`to_bytes` to return."""
        if self.encoding is None:
            self.encoding = KEEP

    # -- building ---------------------------------------------------------------------
    def add_many(self, hashes: Iterable[int]) -> bool:
        """Add visitor hashes; returns whether the sketch changed (a member or a register)."""
        if self.exact is not None:
            members = self.exact
            before = len(members)
            kept = self.encoding
            if kept is None or kept is KEEP:
                members.update(hashes)
            else:
                fresh = [value for value in dict.fromkeys(hashes) if value not in members]
                members.update(fresh)
                if len(fresh) > _STEPWISE:
                    self.encoding = KEEP  # many: encoded afresh, and kept from there
                else:
                    kept.add_all(fresh)
            if len(members) > self.exact_limit:
                self._to_hll()
                return True
            return len(self.exact) != before
        return self._hll_add(hashes)

    def add_array(self, hashes: np.ndarray) -> bool:
        """:meth:`add_many` of a uint64 array: the same members or registers, encoding kept
        or dropped alike, the same return, without a Python int per hash or a set of them.

        A day's visitor hashes of one value (a page view each: ~300,000 for a busy source)
        made a list and a set of Python ints (~20 MB) at a re-derived day's heap peak. An
        exact set takes the array's few distinct hashes through :meth:`add_many`; an array
        of more distinct hashes than an exact set holds (usually plain from its first
        thousand) turns the sketch into registers, raised from the array a slice at a time."""
        if hashes.dtype != np.uint64:
            raise TypeError(f"visitor hashes are uint64, not {hashes.dtype}")
        if self.exact is None:
            return self._raise_from(hashes)
        limit = self.exact_limit
        if len(hashes) <= limit:  # (no more distinct hashes than the set may hold: a short list)
            return self.add_many(hashes.tolist())
        distinct = distinct_values(hashes[:_PEEK * limit])
        if len(distinct) <= limit and len(hashes) > _PEEK * limit:
            distinct = distinct_values(hashes)
        if len(distinct) <= limit:
            return self.add_many(distinct.tolist())  # (a member's repeats change nothing)
        self._to_hll()  # the set's members, then the array's: the registers add_many raises
        self._raise_from(hashes)
        return True

    def _raise_from(self, hashes: np.ndarray) -> bool:
        """:meth:`_hll_add` of a uint64 array, :data:`_SLICE` hashes at a time (the same
        registers: each ends at its largest rank), so that its temporary arrays (~32 bytes a
        hash) stay small however long the array."""
        self.encoding = None
        changed = False
        for start in range(0, len(hashes), _SLICE):
            changed |= self.raise_registers(*register_ranks(hashes[start:start + _SLICE], self.precision))
        return changed

    def _hll_add(self, hashes: Iterable[int]) -> bool:
        """Update the registers from already-uniform 64-bit visitor hashes, vectorised.

        This is the package's ``add_bulk`` minus its per-value SHA-1 of a MessagePack
        encoding: visitor ids are keyed BLAKE2b digests already, so the low ``p`` bits pick
        the register and the rest give the rank, exactly as ``add_bulk`` does with its hash.
        """
        self.encoding = None
        if isinstance(hashes, (list, set, tuple)) and len(hashes) <= _SMALL_ADD:
            return self._hll_add_few(hashes)
        values = hashes if isinstance(hashes, np.ndarray) else np.fromiter(hashes, dtype=np.uint64)
        if not len(values):
            return False
        return self.raise_registers(*register_ranks(values, self.precision))

    def raise_registers(self, registers: np.ndarray, ranks: np.ndarray) -> bool:
        """Raise each register to at least its rank; returns whether any register rose."""
        if not (ranks > self.hll.M[registers]).any():
            return False
        self.encoding = None
        np.maximum.at(self.hll.M, registers, ranks)
        return True

    def _hll_add_few(self, hashes: Iterable[int]) -> bool:
        """:meth:`_hll_add` for a handful of hashes, in plain Python: the same registers
        (rank = ``64 - p - bit_length(hash >> p) + 1``, as ``get_rho_vec``) without numpy's
        per-call overhead, which dominates below :data:`_SMALL_ADD` values (most sketch keys
        of a batch get only a few visitors)."""
        self.encoding = None
        registers = memoryview(self.hll.M)  # (a Python int per read: several times numpy's scalar)
        precision = self.precision
        mask = (1 << precision) - 1
        top = 65 - precision
        changed = False
        for value in hashes:
            rank = top - (value >> precision).bit_length()
            index = value & mask
            if rank > registers[index]:
                registers[index] = rank
                changed = True
        return changed

    def hll_add_few_changing(self, hashes: Iterable[int]) -> list[int]:
        """:meth:`_hll_add_few` that returns the hashes whose rank raised a register when
        they came (in order; empty: the sketch did not change). Keeps a kept sparse encoding
        (:meth:`keep_encoding`) up to date, or drops it once the sketch is no longer sparse."""
        registers = memoryview(self.hll.M)  # (a Python int per read: several times numpy's scalar)
        precision = self.precision
        mask = (1 << precision) - 1
        top = 65 - precision
        sparse = self.encoding
        rising = []
        if sparse is None or sparse is KEEP:
            for value in hashes:
                rank = top - (value >> precision).bit_length()
                index = value & mask
                if rank > registers[index]:
                    registers[index] = rank
                    rising.append(value)
            return rising
        raised = []
        for value in hashes:
            rank = top - (value >> precision).bit_length()
            index = value & mask
            was = registers[index]
            if rank > was:
                registers[index] = rank
                rising.append(value)
                raised.append((index, rank, was))
        if len(raised) > _STEPWISE:  # many: encoded afresh, and kept from there
            self.encoding = KEEP
            return rising
        indices, ranks = sparse.indices, sparse.ranks
        for index, rank, was in raised:
            position = bisect_left(indices, index)
            if was:
                ranks[position] = rank
            else:
                indices.insert(position, index)
                ranks.insert(position, rank)
        if not sparse.fits(precision):
            self.encoding = None
        return rising

    def _to_hll(self) -> None:
        self.encoding = None
        members = self.exact or set()
        self.exact = None
        self.hll = new_hll(self.precision)
        self._hll_add(members)

    def merge(self, other: Sketch) -> None:
        if other.exact is not None:
            self.add_many(other.exact)
            return
        if self.exact is not None:
            self._to_hll()
        if other.hll.p != self.hll.p:
            raise ValueError("cannot merge sketches of different precision")
        self.encoding = None
        self.hll.update(other.hll)

    def count(self) -> int:
        if self.exact is not None:
            return len(self.exact)
        return round(self.hll.card())

    @property
    def is_exact(self) -> bool:
        return self.exact is not None

    # -- bytes ------------------------------------------------------------------------
    def to_bytes(self) -> bytes:
        kept = self.encoding
        if kept is not None and kept is not KEEP:
            return kept.encode() if self.exact is not None else kept.encode(self.precision)
        if self.exact is not None:
            if kept is None:
                return b"E" + exact_bytes(self.exact)
            # exact_bytes, with the sorted members kept
            values = np.fromiter(self.exact, dtype=np.uint64, count=len(self.exact))
            values.sort()
            body = values.astype(">u8").tobytes()
            self.encoding = ExactMembers(values.tolist(), body)
            return b"E" + body
        registers = self.hll.M
        if np.count_nonzero(registers) * 3 < len(registers):
            # (a boolean mask's nonzero: several times faster than int8's, the same indices)
            filled = (registers != 0).nonzero()[0]
            ranks = registers[filled].astype(np.uint8).tobytes()
            if kept is not None:
                self.encoding = SparseRegisters(filled, ranks)
            # Sparse: (u16 index, u8 rank) pairs; most daily and per-value sketches are.
            return b"S" + bytes([self.precision]) + filled.astype(">u2").tobytes() + ranks
        self.encoding = None  # raw: nothing kept
        return b"R" + bytes([self.precision]) + registers.tobytes()

    @classmethod
    def from_bytes(cls, data: bytes, exact_limit: int = EXACT_LIMIT) -> Sketch:
        if data[:1] == b"E":
            body = memoryview(data)[1:]
            sketch = cls(DIMENSION_PRECISION, exact_limit)
            sketch.exact = set(np.frombuffer(body, dtype=">u8").tolist())
            return sketch
        precision = data[1]
        sketch = cls(precision, exact_limit)
        sketch.exact = None
        sketch.hll = new_hll(precision, _registers(data))
        return sketch

    @classmethod
    def union_of(cls, raws: list[bytes], precision: int, exact_limit: int = EXACT_LIMIT) -> Sketch:
        """The union of stored sketches, equal to merging them one by one into
        ``Sketch(precision)`` (a union does not depend on order), decoded and merged in bulk:
        exact members gathered into one array, registers maxed at once, then the members
        added to the registers in one go if the union is (or exceeds) a HyperLogLog."""
        members: list[np.ndarray] = []
        registers = None
        for raw in raws:
            if raw[:1] == b"E":
                members.append(np.frombuffer(raw, dtype=">u8", offset=1))
                continue
            if raw[1] != precision:
                raise ValueError("cannot merge sketches of different precision")
            found = _registers(raw)
            registers = found if registers is None else np.maximum(registers, found, out=registers)
        union = np.unique(np.concatenate(members)).astype(np.uint64) if members else np.empty(0, np.uint64)
        sketch = cls(precision, exact_limit)
        if registers is None and len(union) <= exact_limit:
            sketch.exact = set(union.tolist())
            return sketch
        sketch.exact = None
        sketch.hll = new_hll(precision, registers if registers is not None else np.zeros(1 << precision, np.int8))
        sketch._hll_add(union)
        return sketch


def _registers(data: bytes) -> np.ndarray:
    """The (writable) register array of a stored HyperLogLog sketch."""
    kind, precision = data[:1], data[1]
    if kind == b"R":
        return np.frombuffer(data, dtype=np.int8, offset=2).copy()
    if kind == b"S":
        count = (len(data) - 2) // 3
        filled = np.frombuffer(data, dtype=">u2", count=count, offset=2).astype(np.intp)
        registers = np.zeros(1 << precision, np.int8)
        registers[filled] = np.frombuffer(data, dtype=np.uint8, offset=2 + 2 * count).astype(np.int8)
        return registers
    return np.frombuffer(zlib.decompress(data[2:]), dtype=np.int8).copy()  # b"H": zlib-compressed


class Sketches:
    """Sketch storage with a write-back cache of recently updated sketches.

    The cache saves decoding a sketch on every commit that touches it (today's sketches are
    touched by nearly every batch). Cached objects are mutated inside the write transaction,
    so after a transaction that did not commit the cache is dropped (:meth:`add` notices).
    It is bounded in bytes (:func:`sketch_bytes`, least recently used dropped first): by
    entries alone it grew with its exact sets, each up to four times a sketch's registers.
    A sketch no write touched for half a minute is let go (:meth:`let_go_unused`, polled by
    :class:`appliance.heap.UnusedCaches`: after a bulk load of history, every passed day's).

    A rolled-up metric's day sketches are also kept per week and month
    (:mod:`storage.rollups`): :meth:`add` adds a day's members to its week and month, and a
    replaced day has its week and month rebuilt as the union of their days.
    """

    def __init__(
        self, store, cache_bytes: int = 24 << 20, rolled_up: dict[int, int] | None = None, sums: RangeSums | None = None,
        sealed: rollups.Sealed | None = None, clock=time.monotonic,
    ) -> None:
        """``cache_bytes``: the write-back cache's bound; ``rolled_up``: ``{metric: precision}``
        of the metrics kept per week and month; ``sums``: kept unions of closed day ranges
        (:mod:`storage.range_sums`, shared with the counters), or None; ``sealed``: which
        periods have their rollups kept (:class:`storage.rollups.Sealed`; None: every period)."""
        self._db = store.db(b"sketches")
        self.rolled_up = rolled_up or {}
        self.sums = sums
        self.sealed = sealed
        self._cache: OrderedDict[bytes, Sketch] = OrderedDict()  # least recently written first
        self._written: dict[bytes, float] = {}  # when each cached sketch was last written (``clock``)
        self._clock = clock
        self._now = 0.0  # the clock when the current add() began
        self.cache_limit = cache_bytes
        self.cached_bytes = 0  # sketch_bytes() of every cached sketch (none changes while cached)
        self._uncommitted = False
        self._counts: OrderedDict[bytes, int] = OrderedDict()  # stored sketch's digest -> count
        self._counts_lock = threading.Lock()

    def count_stored(self, raw: bytes) -> int:
        """``Sketch.from_bytes(raw).count()``, remembered by the stored bytes' digest (a closed
        day's sketch of a time series is read again on every request, and a HyperLogLog's
        estimate is most of its cost); at most :data:`COUNTS_KEPT` counts (~100 bytes each)."""
        digest = hashlib.blake2b(raw, digest_size=16).digest()
        with self._counts_lock:
            count = self._counts.get(digest)
            if count is not None:
                self._counts.move_to_end(digest)
                return count
        count = Sketch.from_bytes(raw).count()
        with self._counts_lock:
            self._counts[digest] = count
            if len(self._counts) > COUNTS_KEPT:
                self._counts.popitem(last=False)
        return count

    @property
    def cached_entries(self) -> int:
        """Sketches in the write-back cache."""
        return len(self._cache)

    def _clear_cache(self) -> None:
        self._cache.clear()
        self._written.clear()
        self.cached_bytes = 0

    def _uncache(self, key: bytes) -> Sketch | None:
        sketch = self._cache.pop(key, None)
        if sketch is not None:
            self.cached_bytes -= sketch_bytes(sketch)
            self._written.pop(key, None)
        return sketch

    def let_go_unused(self, before: float) -> int:
        """Drop the cached sketches last written before ``before`` (on this object's clock);
        returns their estimated bytes. Call it where :meth:`add` may be called (under the
        coordinator's mutex): the cache is the writer's."""
        cache, written = self._cache, self._written
        freed = 0
        while cache:
            key = next(iter(cache))
            if written.get(key, 0.0) >= before:
                break
            freed += sketch_bytes(cache.pop(key))
            written.pop(key, None)
        self.cached_bytes -= freed
        return freed

    def delete_site(self, txn, site: int) -> int:
        """Delete every sketch of ``site`` (inside ``txn``), and forget cached copies."""
        self._clear_cache()
        return delete_prefix(txn, self._db, struct.pack(">I", site))

    def committed(self) -> None:
        self._uncommitted = False

    def sealed_through(self, txn, site: int) -> int | None:
        """The site's sealed-through day as ``txn`` sees it (None: every period kept)."""
        return self.sealed.through(txn, site) if self.sealed is not None else None

    def forget(self) -> None:
        self._clear_cache()
        self._uncommitted = False

    def add(self, txn, additions: dict[bytes, tuple[int, list[int]]]) -> None:
        """Add visitor hashes to sketches: ``{key: (precision, [hash, ...])}``, sorted key order.

        A rolled-up day's week and month get only the hashes that changed the day (a member
        it did not have, a register it raised): a week and a month always hold every member
        of each of their days (every write adds to all three, a replaced day has its week
        and month rebuilt, retention rebuilds the period it cuts), so a hash the day already
        counted changes neither; most of a busy day's batch changes nothing.

        Call :meth:`committed` once the transaction commits.
        """
        if self._uncommitted:  # the previous transaction aborted: cached objects are dirty
            self._clear_cache()
        self._uncommitted = True
        self._now = self._clock()
        cursor = txn.cursor(db=self._db)
        # A batch of one day hands its day, week and month sketches the same list of hashes:
        # their registers and ranks are computed once (keyed by the list, alive meanwhile).
        # A sketch the batch leaves as it was (its visitors already members, or no register
        # rising: most adds to a busy HyperLogLog) is not encoded and written again; an
        # aggregation step runs before every settled read, so this is most of its cost.
        prepared: dict[tuple[int, int], tuple[object, np.ndarray, np.ndarray, np.ndarray]] = {}
        rolled_up = self.rolled_up
        periods: dict[bytes, tuple[int, list[list[int]]]] = {}  # rollup key: (precision, new hashes of its days)
        days: set[tuple[int, int]] = set()  # (site, day) of every rolled-up day written to
        sealed: dict[int, int | None] = {}
        for key in sorted(additions):
            precision, hashes = additions[key]
            site, granularity, metric, bucket, dimension = unpack_bucket_key(key)
            if granularity != DAY or metric not in rolled_up:
                self._add_to(cursor, key, precision, hashes, prepared, False)
                continue
            days.add((site, bucket))
            changed_by = self._add_to(cursor, key, precision, hashes, prepared, True)
            if changed_by is None or not len(changed_by):
                continue
            if site not in sealed:
                sealed[site] = self.sealed_through(txn, site)
            for period, start, _, _ in rollups.periods_of(bucket, sealed[site]):
                rollup = pack_bucket_key(site, period, metric, start, dimension)
                present = periods.get(rollup)
                if present is None:
                    periods[rollup] = (precision, [changed_by])
                else:
                    present[1].append(changed_by)
        for key in sorted(periods):
            precision, lists = periods[key]
            # one day's list as it is: a day's week and month share it (and its ranks)
            if len(lists) == 1:
                hashes = lists[0]
            elif any(isinstance(listed, np.ndarray) for listed in lists):
                hashes = np.concatenate([np.asarray(listed, dtype=np.uint64) for listed in lists])
            else:
                hashes = list(itertools.chain.from_iterable(lists))
            self._add_to(cursor, key, precision, hashes, prepared, False)
        if self.sums is not None:
            for site in {site for site, _ in days}:
                self.sums.bump(txn, site, [day for day_site, day in days if day_site == site])

    def _add_to(self, cursor, key: bytes, precision: int, hashes, prepared: dict, changed_by: bool):
        """Add ``hashes`` (a list, or a uint64 array) to the sketch at ``key`` (cached, or read
        through ``cursor``), write it when it changed, and keep it in the cache. With
        ``changed_by``, returns the hashes that changed it (every hash for a new sketch;
        otherwise those it did not have as members, or whose rank raised a register when it
        came: a uint64 array when the registers were raised by numpy, so that the week and
        month reuse it and its ranks)."""
        cache = self._cache
        sketch = self._uncache(key)
        stored = True
        if sketch is None:
            current = cursor.get(key)
            stored = current is not None
            sketch = Sketch.from_bytes(current) if stored else Sketch(precision)
        if sketch.exact is None and sketch.precision != precision:
            raise ValueError("precision changed for an existing sketch")
        sketch.precision = precision
        changers = None
        if isinstance(hashes, np.ndarray) and (sketch.exact is not None or len(hashes) <= _SMALL_ADD):
            hashes = hashes.tolist()  # exact sets and the few-hash path hold Python ints
        if sketch.exact is None and len(hashes) > _SMALL_ADD:
            found = prepared.get((id(hashes), precision))
            if found is None:
                values = hashes if isinstance(hashes, np.ndarray) else np.fromiter(hashes, dtype=np.uint64, count=len(hashes))
                # (the list itself kept too: an id is only unique while its object lives)
                found = prepared[(id(hashes), precision)] = (hashes, values, *register_ranks(values, precision))
            _, values, registers, ranks = found
            rising = ranks > sketch.hll.M[registers]
            changed = bool(rising.any())
            if changed:
                sketch.encoding = None
                np.maximum.at(sketch.hll.M, registers, ranks)
                if changed_by:
                    changers = hashes if rising.all() else values[rising]
        elif sketch.exact is None:
            if stored:  # (a cached sketch is written again batch after batch: keep its encoding)
                sketch.keep_encoding()
            changers = sketch.hll_add_few_changing(hashes)
            changed = bool(changers)
        else:
            members = sketch.exact
            if changed_by and stored:
                changers = [value for value in hashes if value not in members]
            if stored and len(hashes) <= _SMALL_ADD:  # (many new members: encoded afresh anyway)
                sketch.keep_encoding()
            changed = sketch.add_many(hashes)
        if changed or not stored:
            cursor.put(key, sketch.to_bytes())
        cache[key] = sketch
        self._written[key] = self._now
        self.cached_bytes += sketch_bytes(sketch)
        while self.cached_bytes > self.cache_limit and cache:  # within the bound at every step
            dropped_key, dropped = cache.popitem(last=False)
            self._written.pop(dropped_key, None)
            self.cached_bytes -= sketch_bytes(dropped)
        if not changed_by:
            return None
        if not stored:
            return hashes
        return changers

    def _with_rollups(self, additions: dict[bytes, tuple[int, list[int]]]) -> dict[bytes, tuple[int, list[int]]]:
        rolled_up = self.rolled_up
        out = dict(additions)
        for key, (precision, hashes) in additions.items():
            site, granularity, metric, bucket, dimension = unpack_bucket_key(key)
            if granularity != DAY or metric not in rolled_up:
                continue
            for period, start, _, _ in rollups.periods_of(bucket):
                rollup = pack_bucket_key(site, period, metric, start, dimension)
                present = out.get(rollup)
                out[rollup] = (precision, hashes if present is None else present[1] + hashes)
        return out

    def replace_bucket(
        self, txn, site: int, granularity: int, metric: int, bucket: int, sketches: dict[int, Sketch]
    ) -> bool:
        """Set one bucket's sketches to ``{dimension: sketch}`` exactly (a sketch cannot lose
        a member, so a re-derived bucket is rewritten whole); others of the bucket are deleted.
        A rolled-up day's week and month are rebuilt from their days. Returns whether
        anything changed."""
        if not self._replace(txn, site, granularity, metric, bucket, sketches):
            return False
        if self.sums is not None and metric in self.rolled_up:
            if granularity == DAY:
                self.sums.bump(txn, site, (bucket,))
            elif granularity != HOUR:
                self.sums.bump_epoch(txn, site)
        if granularity == DAY and metric in self.rolled_up:
            for period, start, first, last in rollups.periods_of(bucket, self.sealed_through(txn, site)):
                self._rebuild(txn, site, metric, period, start, first, last)
        return True

    def rebuild_rollups(self, txn, site: int, first_day: int, last_day: int) -> int:
        """Set every week and month overlapping the day range to the union of its days;
        returns how many buckets changed."""
        if self.sums is not None:  # days were deleted, or rollups written: every kept union goes
            self.sums.bump_epoch(txn, site)
        return self.rebuild_periods(txn, site, rollups.periods_between(first_day, last_day))

    def rebuild_periods(self, txn, site: int, periods: list[tuple[int, int]]) -> int:
        """Set each ``(granularity, bucket)`` week or month to the union of its days (a period
        being sealed: no kept union changes); returns buckets changed."""
        return sum(
            self.write_periods(txn, site, metric, self.period_unions(txn, site, metric, periods))
            for metric in sorted(self.rolled_up)
        )

    def period_unions(self, txn, site: int, metric: int, periods: list[tuple[int, int]]) -> list:
        """``[((granularity, bucket), {dimension: union of its days})]`` of one metric."""
        return [
            ((granularity, start), self.union(txn, site, DAY, metric, *rollups.period_span(granularity, start),
                                              self.rolled_up[metric]))
            for granularity, start in periods
        ]

    def write_periods(self, txn, site: int, metric: int, built: list) -> int:
        """Store :meth:`period_unions`' sketches; returns buckets changed."""
        return sum(self._replace(txn, site, granularity, metric, start, merged) for (granularity, start), merged in built)

    def _rebuild(self, txn, site: int, metric: int, granularity: int, bucket: int, first: int, last: int) -> bool:
        merged = self.union(txn, site, DAY, metric, first, last, self.rolled_up[metric])
        return self._replace(txn, site, granularity, metric, bucket, merged)

    def union_days(
        self,
        txn,
        site: int,
        metric: int,
        first_day: int,
        last_day: int,
        precision: int,
        dimensions: set[int] | None = None,
        use_rollups: bool = True,
    ) -> dict[int, Sketch]:
        """Union of each dimension's sketches over the day range, through the rollups when
        the metric has them (equal to the union of the days: a union is order-free). A few
        chosen dimensions (a breakdown's candidates) have the union of the days before the
        last kept (:mod:`storage.range_sums`) and the last day's sketch added to it."""
        if self.sums is not None and use_rollups and metric in self.rolled_up and last_day > first_day:
            if dimensions is None:
                return self._union_kept_all(txn, site, metric, first_day, last_day, precision)
            if len(dimensions) <= _POINT_READS:
                return self._union_kept(txn, site, metric, first_day, last_day, precision, dimensions)
        pieces = (
            rollups.plan(first_day, last_day, self.sealed_through(txn, site))
            if use_rollups and metric in self.rolled_up
            else rollups.day_plan(first_day, last_day)
        )
        raws: dict[int, list[bytes]] = {}
        for granularity, first, last in pieces:
            self._collect(raws, txn, site, granularity, metric, first, last, dimensions)
        return {dimension: Sketch.union_of(found, precision) for dimension, found in raws.items()}

    def _union_kept_all(self, txn, site, metric, first_day, last_day, precision) -> dict[int, Sketch]:
        """:meth:`union_days` of every dimension: the closed days' unions kept together
        (``{dimension: bytes}``; a metric of many values is too big to keep and is read)."""
        sums = self.sums
        key = (b"all", site, metric, first_day, last_day - 1, precision)
        token = sums.token(txn, site, first_day, last_day - 1)
        kept = sums.get(key, token)
        if kept is None:
            closed: dict[int, list[bytes]] = {}
            for granularity, first, last in rollups.plan(first_day, last_day - 1, self.sealed_through(txn, site)):
                self._collect(closed, txn, site, granularity, metric, first, last, None)
            kept = {dimension: Sketch.union_of(found, precision).to_bytes() for dimension, found in closed.items()}
            sums.put(key, token, kept, sum(len(raw) + 64 for raw in kept.values()))
        raws: dict[int, list[bytes]] = {dimension: [raw] for dimension, raw in kept.items()}
        self._collect(raws, txn, site, DAY, metric, last_day, last_day, None)
        return {dimension: Sketch.union_of(raws[dimension], precision) for dimension in sorted(raws)}

    def _union_kept(self, txn, site, metric, first_day, last_day, precision, dimensions) -> dict[int, Sketch]:
        sums = self.sums
        token = sums.token(txn, site, first_day, last_day - 1)
        raws: dict[int, list[bytes]] = {}
        missing = set()
        for dimension in dimensions:
            kept = sums.get((b"union", site, metric, first_day, last_day - 1, precision, dimension), token)
            if kept is None:
                missing.add(dimension)
            elif kept:  # b"": no sketch in the range
                raws[dimension] = [kept]
        if missing:
            closed: dict[int, list[bytes]] = {}
            for granularity, first, last in rollups.plan(first_day, last_day - 1, self.sealed_through(txn, site)):
                self._collect(closed, txn, site, granularity, metric, first, last, missing)
            for dimension in missing:
                found = closed.get(dimension)
                union = Sketch.union_of(found, precision).to_bytes() if found else b""
                sums.put((b"union", site, metric, first_day, last_day - 1, precision, dimension), token, union, len(union))
                if union:
                    raws[dimension] = [union]
        self._collect(raws, txn, site, DAY, metric, last_day, last_day, dimensions)
        return {dimension: Sketch.union_of(raws[dimension], precision) for dimension in sorted(raws)}

    def _replace(self, txn, site: int, granularity: int, metric: int, bucket: int, sketches: dict[int, Sketch]) -> bool:
        cursor = txn.cursor(db=self._db)
        start = pack_bucket_key(site, granularity, metric, bucket, 0)
        prefix = start[:11]
        old: dict[bytes, bytes] = {}
        if cursor.set_range(start):
            for key, value in cursor:
                if key[:11] != prefix:
                    break
                old[bytes(key)] = bytes(value)
        new = {pack_bucket_key(site, granularity, metric, bucket, d): s.to_bytes() for d, s in sketches.items()}
        if new == old:
            return False
        for key in old.keys() | new.keys():
            self._uncache(key)  # never write back a cached copy of the old sketch
        for key in old.keys() - new.keys():
            txn.delete(key, db=self._db)
        for key in sorted(new):
            if old.get(key) != new[key]:
                cursor.put(key, new[key])
        return True

    def metrics(self, txn, site: int, granularity: int) -> list[int]:
        """The metrics the site has sketches of, at one granularity."""
        return stored_metrics(txn, self._db, site, granularity)

    def scan(
        self, txn, site: int, granularity: int, metric: int, first_bucket: int, last_bucket: int
    ) -> Iterator[tuple[int, int, bytes]]:
        """Yield ``(bucket, dimension, raw sketch)`` for buckets in the range."""
        prefix = bucket_prefix(site, granularity, metric)
        cursor = txn.cursor(db=self._db)
        if not cursor.set_range(pack_bucket_key(site, granularity, metric, first_bucket, 0)):
            return
        for key, value in cursor:
            if key[:7] != prefix:
                return
            _, _, _, bucket, dimension = unpack_bucket_key(key)
            if bucket > last_bucket:
                return
            yield bucket, dimension, value

    def union(
        self,
        txn,
        site: int,
        granularity: int,
        metric: int,
        first_bucket: int,
        last_bucket: int,
        precision: int,
        dimensions: set[int] | None = None,
    ) -> dict[int, Sketch]:
        """Union of each dimension's sketches over the bucket range."""
        raws: dict[int, list[bytes]] = {}
        self._collect(raws, txn, site, granularity, metric, first_bucket, last_bucket, dimensions)
        return {dimension: Sketch.union_of(found, precision) for dimension, found in raws.items()}

    def _collect(self, raws, txn, site, granularity, metric, first_bucket, last_bucket, dimensions) -> None:
        """Append each dimension's stored sketches over the bucket range to ``raws``."""
        if dimensions is not None and len(dimensions) <= _POINT_READS:
            # a few chosen values (a breakdown's top rows): read their keys, not every value's
            buckets = rollups.buckets_of_run(granularity, first_bucket, last_bucket)
            db = self._db
            for dimension in sorted(dimensions):
                for bucket in buckets:
                    raw = txn.get(pack_bucket_key(site, granularity, metric, bucket, dimension), db=db)
                    if raw is not None:
                        raws.setdefault(dimension, []).append(raw)
            return
        for _, dimension, raw in self.scan(txn, site, granularity, metric, first_bucket, last_bucket):
            if dimensions is None or dimension in dimensions:
                raws.setdefault(dimension, []).append(raw)
