"""The LMDB environment: opened once per path, named databases, a map that grows before it fills.

``Store.write(fn)`` runs ``fn(txn)`` in one write transaction. When the map is close to full
it is grown first; if LMDB still answers ``MapFullError`` the map is grown and the transaction
retried, so that error never reaches a caller. When the disk itself cannot hold a bigger map,
:class:`StorageFullError` is raised and nothing of the failed transaction is kept: what was
committed before stays intact.
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import logging
import os
import shutil
import threading
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import lmdb

from storage.handover import bulk_handover

T = TypeVar("T")
log = logging.getLogger(__name__)

DATABASES = (b"counters", b"sketches", b"events", b"strings", b"string_ids", b"records", b"sequences", b"visits", b"visit_changes", b"pending", b"columns", b"visits_dirty",
             b"journal", b"journal_meta", b"replication", b"imported",
             b"day_generations", b"checkpoints")
_GROWTH_STEP = 2  # multiply the map by this much each time it grows
_MAX_GROWTH_BYTES = 4 << 30  # never grow by more than 4 GiB at once
CLOSE_WAIT_SECONDS = 60.0  # how long close() waits for a write under way to end
_MADV_DONTNEED = 4  # Linux's madvise advice: drop the range's pages from the resident set


class StorageFullError(RuntimeError):
    """The disk has no room to grow the LMDB map: new writes are refused, old data is intact."""


class _ResizeGate:
    """Readers share it; growing the map takes it alone.

    LMDB allows ``mdb_env_set_mapsize`` only while no transaction is open in the process, so
    a resize waits for open read transactions to finish and holds new ones back meanwhile.
    """

    def __init__(self) -> None:
        self._condition = threading.Condition()
        self._readers = 0
        self._resizing = False
        self._local = threading.local()
        self.entered = 0  # read transactions begun (it moves while the store is read)

    def enter_read(self, count: bool = True) -> None:
        held = getattr(self._local, "held", 0)
        with self._condition:
            # A thread that already reads must not wait (the resize waits for it): no deadlock.
            while self._resizing and not held:
                self._condition.wait()
            self._readers += 1
            self.entered += count
        self._local.held = held + 1

    def leave_read(self) -> None:
        self._local.held -= 1
        with self._condition:
            self._readers -= 1
            if not self._readers:
                self._condition.notify_all()

    def resize(self, action: Callable[[], None]) -> None:
        with self._condition:
            self._resizing = True
            try:
                while self._readers:
                    self._condition.wait()
                action()
            finally:
                self._resizing = False
                self._condition.notify_all()


class _ReadTransaction:
    """``with store.read() as txn``: a read-only transaction that holds off map resizes."""

    __slots__ = ("_light", "_store", "_txn")

    def __init__(self, store: Store, light: bool = False) -> None:
        self._store = store
        self._light = light
        self._txn = None

    def __enter__(self) -> lmdb.Transaction:
        self._store._gate.enter_read(count=not self._light)
        try:
            self._txn = self._store.env.begin(write=False, buffers=False)
        except BaseException:
            self._store._gate.leave_read()
            raise
        return self._txn

    def __exit__(self, *exc) -> None:
        try:
            self._txn.abort()
        finally:
            self._store._gate.leave_read()


class Store:
    """One LMDB environment with Footfall's named databases.

    Thread model: any number of readers; writes are serialised by a lock (LMDB allows one
    writer), and in practice come from the group-commit writer thread.

    ``readahead`` (``[storage] readahead``, on by default, as LMDB's): off opens the map with
    ``MDB_NORDAHEAD`` (``madvise(MADV_RANDOM)``), so a read maps in only the page it touches.
    Measured alternately against on (a tenth of the seed's month, 3 pairs, load average 3-4):
    while the month loads, file-backed pages 0.90-0.95x, RSS at the peak 0.97x, heap the same;
    but the first filtered top line right after the load took 1.9-3.6x as long (0.22-0.36 s
    against 0.10-0.12 s) and the filtered 30-day page up to 2.1x; after a restart and the query
    suite, resident memory the same (the suite maps every page it reads either way). So it
    stays on; off suits a small server that loads much and reads little.

    Memory that is no cache's: LMDB keeps each single-page buffer a write transaction dirtied
    on its own free list, reused by later transactions and freed only when the environment
    closes, so the heap keeps ~4 KiB for every page the largest write transaction since start
    dirtied (a 23,000-page transaction left 91 MB; ``malloc_trim`` cannot return it; with
    ``MDB_WRITEMAP`` there are no such buffers, but a full disk can then kill the process with
    SIGBUS instead of failing the write). Small write transactions keep it small.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        initial_map_bytes: int = 64 << 20,
        grow_when_fraction: float = 0.75,
        min_free_disk_bytes: int = 64 << 20,
        readahead: bool = True,
        databases: tuple[bytes, ...] = DATABASES,
        metasync: bool = False,
    ) -> None:
        self.path = Path(path)
        self.path.mkdir(parents=True, exist_ok=True)
        self._grow_when = grow_when_fraction
        self._min_free_disk = min_free_disk_bytes
        self._write_lock = threading.Lock()
        self._gate = _ResizeGate()
        self._writes_done = 0  # write transactions run (:attr:`writes_done`)
        self.tight = False  # the map is past its growth threshold and the disk refused more
        self._flush_failed: BaseException | None = None
        self._map_lock = threading.Lock()  # release_map against close
        self._closed = False
        existing = self.path / "data.mdb"
        map_size = max(initial_map_bytes, existing.stat().st_size if existing.exists() else 0)
        self.env = lmdb.open(
            str(self.path),
            map_size=map_size,
            max_dbs=len(databases) + 8,
            max_readers=256,
            subdir=True,
            sync=True,
            metasync=metasync,  # off: a durable write syncs the meta page itself (``write``)
            readahead=readahead,
            lock=True,
        )
        self.dbs: dict[bytes, lmdb._Database] = {}
        with self.env.begin(write=True) as txn:
            for name in databases:
                self.dbs[name] = self.env.open_db(name, txn=txn)

    def db(self, name: bytes):
        return self.dbs[name]

    # -- map management ---------------------------------------------------------------
    def map_usage(self) -> tuple[int, int]:
        """(bytes in use, map size)."""
        info = self.env.info()
        stat = self.env.stat()
        return (info["last_pgno"] + 1) * stat["psize"], info["map_size"]

    def room(self) -> int:
        """Bytes the store can still take: the map's pages the file holds unused, and what
        the disk beyond ``min_free_disk_bytes`` lets it grow by."""
        used, _ = self.map_usage()
        current_file = (self.path / "data.mdb").stat().st_size
        spare_disk = max(0, shutil.disk_usage(self.path).free - self._min_free_disk)
        return max(0, current_file + spare_disk - used)

    def _grow(self, minimum_extra: int = 0) -> None:
        used, size = self.map_usage()
        new_size = max(size + minimum_extra, min(size * _GROWTH_STEP, size + _MAX_GROWTH_BYTES))
        free_disk = shutil.disk_usage(self.path).free
        current_file = (self.path / "data.mdb").stat().st_size
        # The file only grows as pages are written, but the map must fit on the disk.
        if new_size - current_file > free_disk - self._min_free_disk:
            new_size = current_file + free_disk - self._min_free_disk
            if new_size <= size:
                raise StorageFullError(
                    f"disk full: {free_disk} bytes free under {self.path}, cannot grow the store"
                )
        self._gate.resize(lambda: self.env.set_mapsize(new_size))
        self.tight = False

    def _ensure_headroom(self) -> None:
        used, size = self.map_usage()
        if used > size * self._grow_when:
            try:
                self._grow()
            except StorageFullError:
                # The map cannot grow, but its last quarter is still free: keep writing and
                # let callers know space is tight (``tight``), so they can spend it wisely.
                self.tight = True

    @property
    def reads_begun(self) -> int:
        """Read transactions begun since the store opened: while it stays the same, nothing reads."""
        return self._gate.entered

    @property
    def writes_done(self) -> int:
        """Write transactions run since the store opened (a write maps the pages it copies)."""
        return self._writes_done

    def release_map(self) -> bool:
        """Take the pages reads have mapped out of this process's resident set
        (:func:`release_pages`); False when nothing was advised. The map can neither grow (so
        move) nor close meanwhile: this holds the resize gate's read side and a lock
        :meth:`close` takes first, and only the one mapping of the data file of exactly the
        map's size is advised. The serving process calls it once reads have stopped for a few
        seconds (:class:`appliance.heap.MapReleaser`)."""
        with self._map_lock:
            if self._closed:
                return False
            self._gate.enter_read(count=False)
            try:
                return release_pages(self.path, self.env.info()["map_size"])
            finally:
                self._gate.leave_read()

    # -- transactions -----------------------------------------------------------------
    def write(self, fn: Callable[[lmdb.Transaction], T], *, durable: bool = True, bulk: bool = False) -> T:
        """Run ``fn`` in one write transaction, growing the map as needed.

        ``fn`` may run more than once (after a ``MapFullError``), so it must not have side
        effects outside the transaction.

        LMDB flushes a transaction's pages before it writes the meta page that makes them
        current, so a crash never finds half a transaction. The environment is opened without
        the meta page's own flush (``MDB_NOMETASYNC``): a ``durable`` write (the default:
        anything answered to a client) flushes it before it returns, as LMDB's default would;
        a write of what can be derived again (``durable=False``: the aggregation step, whose
        events stay in ``pending`` until it commits) saves that second flush. A system crash
        can then undo only such writes made after the last durable one, each whole, since a
        durable write's flush carries every transaction before it.

        ``bulk``: ``fn`` makes an LMDB call per row of thousands (a day's compaction, a purge);
        the writing thread then gets the interpreter lock back quickly after each one
        (:mod:`storage.handover`), so the write lock is not held long beside busy threads.
        """
        with self._write_lock, bulk_handover() if bulk else contextlib.nullcontext():
            if self._flush_failed is not None:
                raise StorageFullError(f"writes stopped after a failed flush to disk: {self._flush_failed}")
            result = self._write(fn)
            self._writes_done += 1
            if durable:
                try:
                    self.env.sync(True)
                except (lmdb.Error, OSError) as error:
                    # The transaction is committed but perhaps not on disk, and its caller
                    # will take it as failed: no write may build on that (as LMDB stops
                    # writes after a failed meta page write).
                    self._flush_failed = error
                    raise StorageFullError(f"flushing a commit to disk failed: {error}") from error
            return result

    def _write(self, fn: Callable[[lmdb.Transaction], T]) -> T:
        self._ensure_headroom()
        for _attempt in range(8):
            txn = self.env.begin(write=True)
            try:
                result = fn(txn)
                txn.commit()
                return result
            except lmdb.MapFullError:
                txn.abort()
                refused = None
                try:
                    self._grow()
                except StorageFullError as error:
                    refused = error
                if refused is not None:
                    raise refused from None  # the full map is the whole story
            except lmdb.DiskError as error:
                txn.abort()
                raise StorageFullError(f"disk error while writing: {error}") from error
            except OSError as error:
                txn.abort()
                if error.errno == 28:  # ENOSPC
                    raise StorageFullError("disk full while writing") from error
                raise
            except BaseException:
                txn.abort()
                raise
        raise StorageFullError("could not grow the store enough for one transaction")

    def read(self, light: bool = False) -> _ReadTransaction:
        """A read-only transaction, to be used as a context manager (``with store.read()``).
        ``light``: a read of a few pages, done often (the site registry's check, every second
        while the tracker is busy), which does not count in :attr:`reads_begun`, so it does not
        keep the map from being released."""
        return _ReadTransaction(self, light)

    def disk_bytes(self) -> int:
        return (self.path / "data.mdb").stat().st_size

    def database_bytes(self, name: bytes) -> int:
        """Pages used by one named database, in bytes."""
        with self.read() as txn:
            stat = txn.stat(self.dbs[name])
        pages = stat["branch_pages"] + stat["leaf_pages"] + stat["overflow_pages"]
        return pages * stat["psize"]

    def entries(self, name: bytes) -> int:
        with self.read() as txn:
            return txn.stat(self.dbs[name])["entries"]

    def sync(self) -> None:
        self.env.sync(True)

    def close(self) -> None:
        """Close the environment once a write under way on another thread has ended.

        Closing under it would not end it: py-lmdb marks every transaction closed at once and
        then waits for the thread that owns the write transaction to abort it, but an abort of
        a transaction already marked closed does nothing, so the close waits until the
        transaction object is freed, forever while an exception's traceback (kept, or in a
        cycle the collector has not reached) holds it. Seen once as a test's teardown that
        hung in ``Environment.close``."""
        with self._map_lock:  # no release of the map from here on
            self._closed = True
        locked = self._write_lock.acquire(timeout=CLOSE_WAIT_SECONDS)
        if not locked:
            log.warning("a write still under way after %.0f s; closing the store under it", CLOSE_WAIT_SECONDS)
        try:
            # A derived write's meta page was not flushed when it committed. Closed already, or
            # the disk refusing, loses nothing: every durable write was flushed by itself.
            with contextlib.suppress(lmdb.Error):
                self.env.sync(True)
            self.env.close()
        finally:
            if locked:
                self._write_lock.release()


class ReadOnlyStore:
    """The store's environment opened read-only, in a process that is not its writer (the
    compaction build helper, :mod:`appliance.events.compaction_build`): the named databases
    and read transactions (``with store.read() as txn``), nothing else. LMDB serves readers in
    any number of processes; when the writer has grown the map since, a transaction begins
    again on the larger map."""

    def __init__(self, path: str | os.PathLike[str], databases: tuple[bytes, ...] = DATABASES) -> None:
        self.path = Path(path)
        self.env = lmdb.open(str(self.path), readonly=True, lock=True, subdir=True, max_dbs=len(databases) + 8,
                             max_readers=256)
        # (each opened in a transaction of its own, committed: a handle opened in a read
        # transaction that ends without a commit is closed with it)
        self.dbs = {name: self.env.open_db(name, create=False) for name in databases}

    def db(self, name: bytes):
        return self.dbs[name]

    @contextlib.contextmanager
    def read(self):
        try:
            txn = self.env.begin(buffers=False)
        except lmdb.MapResizedError:
            self.env.set_mapsize(0)  # the map the writer grew to
            txn = self.env.begin(buffers=False)
        try:
            yield txn
        finally:
            txn.abort()

    def release_pages(self) -> bool:
        """:func:`release_pages` of this store's map (the helper: one thread, inside its read transaction)."""
        return release_pages(self.path, self.env.info()["map_size"])

    def close(self) -> None:
        self.env.close()


def release_pages(path: str | os.PathLike[str], size: int) -> bool:
    """Take every page of the store's map at ``path`` (``size`` bytes) out of this process's
    resident set; False when nothing was advised. The pages stay in the kernel's cache (the
    map is read-only and shared), and a later read, in a transaction open now or after, maps
    what it touches again with a minor fault. A read maps far more than it reads: on ext4 a
    fault maps the 64 KB around the page, or its whole large folio, so a build's read of a
    seed day's log rows, which lie among the pages the folds wrote, mapped ~250 MB, and the
    serving process keeps what its queries mapped (~430 MB after the seed month's query suite)
    until the kernel wants it back (docs/performance.md, twenty-third part).

    Only where nothing can unmap or move the map between the read of ``/proc/self/maps`` and
    the advice (:meth:`Store.release_map`; the helper: one thread, inside its read
    transaction): advised on anonymous memory that had taken the range's place, DONTNEED
    would zero it. So exactly one mapping must be the data file's with the map's size, or
    nothing is done. Nothing is done either where ``/proc/self/maps`` or ``madvise`` is
    missing."""
    data = os.path.realpath(Path(path) / "data.mdb")
    try:
        madvise = _libc().madvise
        with open("/proc/self/maps", encoding="utf-8", errors="replace") as maps:
            spans = [line.split(None, 1)[0] for line in maps if line.rstrip("\n").endswith(" " + data)]
    except (OSError, AttributeError):
        return False
    edges = [tuple(int(edge, 16) for edge in span.split("-")) for span in spans]
    matching = [(start, end) for start, end in edges if end - start == size]
    if len(matching) != 1:
        return False
    start, end = matching[0]
    return madvise(start, end - start, _MADV_DONTNEED) == 0


@functools.cache
def _libc():
    libc = ctypes.CDLL(None, use_errno=True)
    libc.madvise.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
    return libc
