"""A closed day's new block, built from its log rows, in this process or in a helper process.

Compaction (:meth:`ColumnStore.compact_day <appliance.events.columns.ColumnStore.compact_day>`)
has two parts. :func:`build_day` reads the day's log rows and its stored block in one read
transaction, lays them out as columns, encodes and compresses them and checks that the
encoding decodes to the same rows; the caller then writes the result in one write transaction
(the rows out of the log, the block in). The build is nearly all of it (a day of 40,000 rows:
~0.24 of 0.27 s, the write the rest), and it is Python and numpy that hold the interpreter
lock: in the serving process every request's hand-overs between threads waited behind it, so
the dashboard answered in twice its usual time while the days a bulk load passed were
compacted (docs/performance.md, nineteenth part).

So a large day is built in a helper process (:class:`BuildHelper`: ``python -m
appliance.events.compaction_build``, started for a run of compactions and ended after it),
which opens the store read-only (:class:`storage.environment.ReadOnlyStore`) and returns the
keys of the rows it read and the encoded columns. It reads a snapshot no older than the
caller's (it starts after the caller waited for the folds), and the write checks that the
day's block generation is still the one the build read, as ever. Anything that goes wrong
with the helper (it cannot start, dies, answers an error) is logged and the day is built in
process instead: the helper only moves the work, it never decides what is stored.

The same helper re-derives a visits-dirty day's figures for the job runner
(:meth:`BuildHelper.derive`, :mod:`appliance.ingest.rederive`): it reads the day's window
(:class:`appliance.events.window_reader.WindowReader`) and sessionises it
(:func:`appliance.events.rederive_window.derive_window`, the code the process runs too), in one
snapshot, and answers the figures, the window's key and its visitors' last visits; the caller
matches them against its open visits and writes them under its write mutex only if the
window's key is still the store's (docs/performance.md, twentieth part).
"""

from __future__ import annotations

import contextlib
import logging
import os
import pickle
import struct
import subprocess
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from appliance.events.blocks import DAY_MS, DELTA_COLUMNS, FORMAT_VERSION, Block, StaleBlock
from appliance.events.encoding import (
    CodedColumns,
    check_round_trip,
    chunked_columns,
    concatenate,
    in_key_order,
    stored_columns,
)
from appliance.events.rederive_window import derive_window
from appliance.events.window_reader import WindowReader, stored_block
from appliance.heap import HeapTrimmer, helper_environment
from appliance.pipes import end_helper, helper_pipes, read_exactly, read_message, send_message
from storage.columns import ColumnBlocks, decode_array, encode_array
from storage.eventlog import EventLog
from storage.keys import EVENT_KEY_SIZE, pack_event_key

log = logging.getLogger(__name__)

#: a day with at least this many events is built in the helper process (fewer build in
#: process faster than a helper starts: ~0.3 s)
HELPER_EVENTS = 20_000
_ROOT = Path(__file__).resolve().parents[2]  # the directory holding the appliance package


@dataclass
class Built:
    """A day's new block: the block generation it was built over (None: none), the log
    rows it holds (their keys, ascending, as one string of fixed-size keys), its encoded
    columns and its number of events."""

    generation: int | None
    keys: bytes
    encoded: dict[str, bytes]
    count: int

    def key_list(self) -> list[bytes]:
        return [self.keys[at:at + EVENT_KEY_SIZE] for at in range(0, len(self.keys), EVENT_KEY_SIZE)]


def outdated(pointer, timeout_ms: int) -> bool:
    """Whether a stored block is of an older format or visit timeout (rebuilt even without rows)."""
    info = pointer.info
    return info.get("format") != FORMAT_VERSION or info.get("timeout_ms") != timeout_ms


def build_day(store, blocks: ColumnBlocks, eventlog: EventLog, site: int, day: int, timeout_ms: int,
              snapshot, read: Callable[[], None] | None = None,
              decoded: Callable[[], None] | None = None) -> Built | None:
    """The day's new block from its log rows (rows still pending aggregation left out) and its
    stored block, read in ``snapshot`` (a read transaction's context manager, held for the
    reads only); None when there is nothing to do. ``read()`` is called once the store is no
    longer read, before the columns are merged, ordered and encoded (the helper closes its map
    there: the heap's peak comes after it); ``decoded()`` after each chunk of log rows is
    decoded (the helper drops the pages its read mapped)."""
    pending_db = store.db(b"pending")
    with snapshot as txn:
        pointer = blocks.pointer(txn, site, day)
        waiting = set()
        cursor = txn.cursor(db=pending_db)
        if cursor.set_range(pack_event_key(site, day * DAY_MS, 0)):
            end = pack_event_key(site, (day + 1) * DAY_MS, 0)
            for key in cursor.iternext(keys=True, values=False):
                if key >= end:
                    break
                waiting.add(key)
        rows = eventlog.scan(txn, site, day * DAY_MS, (day + 1) * DAY_MS)
        keys, parts = chunked_columns(((key, value) for key, value in rows if key not in waiting), decoded)
        if not keys and (pointer is None or not outdated(pointer, timeout_ms)):
            return None
        if pointer is not None:
            old = stored_block(site, day, pointer, lambda name: blocks.get(txn, site, day, pointer.generation, name))
            try:
                parts.insert(0, old.plain())
            except StaleBlock:
                return None
            old.release()  # its codes and dictionaries: the plain columns are all it needs
    if read is not None:
        read()
    columns = CodedColumns(in_key_order(concatenate(parts, release=True), release=True))
    arrays = stored_columns(columns, day, timeout_ms)  # lets the string fields' ids go as it codes them
    encoded = {name: encode_array(array, delta=name in DELTA_COLUMNS) for name, array in arrays.items()}
    del arrays  # encoded now; the round-trip check below decodes a copy of its own
    count = len(columns["ts"])
    check = Block(site, day, count, {}, loader=lambda name: decode_array(encoded[name]), timeout_ms=timeout_ms)
    check_round_trip(check, columns, timeout_ms)
    return Built(pointer.generation if pointer is not None else None, keys, encoded, count)


class HelperFailed(RuntimeError):
    """The helper process could not build the day (the caller builds it in process)."""


class BuildHelper:
    """The helper process, started on the first :meth:`build` (or :meth:`derive`) of a
    :meth:`session` and ended with the last session open (nothing of it stays between runs of
    compactions). Requests and the helper's end take turns (one lock), so no thread ends it
    under another's request."""

    def __init__(self, store_path: str | os.PathLike[str]) -> None:
        self._path = str(store_path)
        self._process: subprocess.Popen | None = None
        self._sessions = 0
        self._lock = threading.Lock()
        self.builds = 0  # days built in the helper (tests, the bench)
        self.derives = 0  # days' visits re-derived in the helper

    @contextlib.contextmanager
    def session(self):
        """A run of compactions: the helper, once started, serves all of them."""
        with self._lock:
            self._sessions += 1
        try:
            yield self
        finally:
            with self._lock:
                self._sessions -= 1
                if not self._sessions:
                    self._end()

    @property
    def in_session(self) -> bool:
        return self._sessions > 0

    def build(self, site: int, day: int, timeout_ms: int) -> Built | None:
        with self._lock:
            built = self._ask(("build", site, day, timeout_ms), _read_built)
            self.builds += 1
            return built

    def derive(self, site: int, first_ms: int, end_ms: int, timeout_ms: int):
        """The re-derived :class:`~appliance.events.rederive_window.Window` of the local day
        ``[first_ms, end_ms)``, read and sessionised in the helper."""
        with self._lock:
            window = self._ask(("derive", site, first_ms, end_ms, timeout_ms))
            self.derives += 1
        return window.restored()

    def _ask(self, request: tuple, more: Callable | None = None):
        """Send ``request``; the answer's value (``more(stream, value)`` reads what follows an
        ok answer). Under the lock."""
        try:
            process = self._started()
            _send(process.stdin, request)
            status, value = _receive(process.stdout)
            if status == "ok" and more is not None:
                value = more(process.stdout, value)
        except (OSError, EOFError, pickle.PickleError, struct.error) as error:
            self._end()
            raise HelperFailed(f"the build helper stopped: {error!r}") from error
        if status != "ok":
            raise HelperFailed(f"the build helper failed: {value}")
        return value

    def _started(self) -> subprocess.Popen:
        if self._process is None or self._process.poll() is not None:
            environment = helper_environment(os.environ)
            environment["PYTHONPATH"] = os.pathsep.join(filter(None, [str(_ROOT), environment.get("PYTHONPATH")]))
            self._process = subprocess.Popen(
                [sys.executable, "-m", "appliance.events.compaction_build", self._path],
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=environment, cwd=str(_ROOT),
            )
        return self._process

    def _end(self) -> None:
        process, self._process = self._process, None
        if process is not None:
            end_helper(process)  # end of input: the helper leaves


def _send(stream, value) -> None:
    send_message(stream, pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL))


def _receive(stream):
    return pickle.loads(read_message(stream))  # noqa: S301 - our own child's, over its pipe


def _read_built(stream, header) -> Built | None:
    """:func:`_send_built`'s answer: after its header, the keys and columns as they are."""
    if header is None:
        return None
    generation, count, key_bytes, sizes = header
    keys = read_exactly(stream, key_bytes)
    return Built(generation, keys, {name: read_exactly(stream, size) for name, size in sizes}, count)


def _send_built(stream, built: Built | None) -> None:
    """An answer: a small header, then the keys and each encoded column as they are (one
    pickle of them all would copy the day's block once more in the helper's memory)."""
    if built is None:
        _send(stream, ("ok", None))
        return
    sizes = [(name, len(data)) for name, data in built.encoded.items()]
    _send(stream, ("ok", (built.generation, built.count, len(built.keys), sizes)))
    stream.write(built.keys)
    for data in built.encoded.values():
        stream.write(data)
    stream.flush()


def main(path: str) -> int:
    """The helper: builds (or re-derives) the days asked on stdin until it ends, answering on stdout."""
    from storage.environment import ReadOnlyStore

    requests, answers = helper_pipes()
    trimmer = HeapTrimmer(min_interval_s=0)
    while True:
        try:
            kind, *request = _receive(requests)
        except EOFError:
            return 0
        # the store opened for each request and closed after it: every page of the map the
        # request read leaves this process's resident set with the map, not at the end of the
        # run (the kernel keeps them cached; the year's bench: the helper's peak 262 -> 172 MB).
        # A build closes it as soon as the day is read, before the heap's peak: a
        # fault maps the pages around the one read too (64 KB, or a whole large folio), so a
        # seed day's ~400,000 log rows map ~250 MB (docs/performance.md, twenty-second part);
        # while it reads, it drops them after each chunk of rows (twenty-third part)
        store = ReadOnlyStore(path)
        reader = WindowReader(store)
        try:
            if kind == "derive":
                send, answer = _send, ("ok", _derive(store, reader, *request))
            else:
                send, answer = _send_built, build_day(store, reader.blocks, reader.eventlog, *request, store.read(),
                                                      read=store.close, decoded=store.release_pages)
        except Exception as error:  # noqa: BLE001 - reported to the caller, which builds in process
            send, answer = _send, ("error", f"{type(error).__name__}: {error}")
        finally:
            store.close()
        send(answers, answer)
        answer = None  # the day's columns are not kept while the next request waits
        trimmer.trim()  # nor the heap they freed (a seed day's build: 67-86 -> 28-35 MB resident after it)


def _derive(store, reader: WindowReader, site: int, first_ms: int, end_ms: int, timeout_ms: int):
    """A re-derived window, read in one snapshot (its key and its events alike)."""
    keys: dict[tuple[int, int], tuple] = {}

    def key_of(lo: int, hi: int) -> tuple:
        keys[lo, hi] = reader.frame_key(txn, site, lo, hi)
        return keys[lo, hi]

    with store.read() as txn:
        window = derive_window(lambda lo, hi: reader.frame(txn, site, lo, hi, keys.get((lo, hi))), key_of,
                               first_ms, end_ms, timeout_ms)
    return window.portable()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
