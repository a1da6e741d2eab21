"""Giving the heap a large scan freed back to the system (glibc's ``malloc_trim``).

A filtered report over a long period builds hundreds of megabytes of short-lived numpy
arrays (a 30-day frame at the seed's month: about 600 MB at its peak). ``footfall serve``
sets ``MALLOC_MMAP_THRESHOLD_`` so the largest of them are mapped and unmapped on their own,
but the many medium ones (a day block's columns, a few hundred kilobytes each) come from the
heap, and glibc keeps what they freed: measured in-process at the seed's month, the heap
stayed 60–80 MB above what was still in use after the query suite. ``malloc_trim(0)``
returns every free page (about 8 ms for 60 MB there), so it runs after a report that read a
large frame, at most once per :data:`MIN_INTERVAL_S`. Elsewhere than glibc it does nothing.

The store's map is given back the same way once reads stop (:class:`MapReleaser`): the pages
queries mapped stay in the process's resident set until the kernel wants them back, though
they are clean page cache (after the seed month's query suite ~430 of the server's ~770 MB).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import threading
import time

SERVER_MMAP_THRESHOLD = "262144"  # ``footfall serve``'s MALLOC_MMAP_THRESHOLD_ (appliance/cli/serving.py)
LARGE_FRAME_ROWS = 500_000  # a frame this large leaves tens of megabytes freed behind it
MIN_INTERVAL_S = 1.0
MAP_QUIET_S = 5.0  # seconds with no read transaction begun before the store's map is released
MAP_POLL_S = 2.0  # how often the job thread asks (:meth:`MapReleaser.poll`)


def _malloc_trim():
    name = ctypes.util.find_library("c")
    try:
        trim = ctypes.CDLL(name).malloc_trim if name else None
    except (OSError, AttributeError):  # not glibc (musl, macOS): nothing to call
        return None
    if trim is not None:
        trim.argtypes = [ctypes.c_size_t]
        trim.restype = ctypes.c_int
    return trim


def helper_environment(environ) -> dict[str, str]:
    """The environment for a helper process started by the server: the server's own, less
    the fixed mmap threshold ``footfall serve`` set for the server (one an operator set is
    kept). A compaction build makes thousands of medium numpy arrays; mapped and unmapped
    one by one each, a seed day's build took ~1.3-1.45x as long. The helper trims its heap
    after each request instead (a :class:`HeapTrimmer`)."""
    environment = dict(environ)
    if environment.get("MALLOC_MMAP_THRESHOLD_") == SERVER_MMAP_THRESHOLD:
        del environment["MALLOC_MMAP_THRESHOLD_"]
    return environment


class HeapTrimmer:
    """Calls ``malloc_trim(0)`` after large work, at most once per ``min_interval_s``."""

    def __init__(self, min_interval_s: float = MIN_INTERVAL_S) -> None:
        self.min_interval_s = min_interval_s
        self.trims = 0  # times the heap was trimmed (tests, metrics)
        self._trim = _malloc_trim()
        self._lock = threading.Lock()
        self._last = float("-inf")

    @property
    def available(self) -> bool:
        return self._trim is not None

    def after_rows(self, rows: int) -> bool:
        """Trim if work over ``rows`` rows just ended and :data:`LARGE_FRAME_ROWS` or more were read."""
        return rows >= LARGE_FRAME_ROWS and self.trim()

    def trim(self) -> bool:
        """Return the heap's free pages to the system now, unless done within the interval."""
        if self._trim is None:
            return False
        now = time.monotonic()
        with self._lock:
            if now - self._last < self.min_interval_s:
                return False
            self._last = now
        self._trim(0)
        self.trims += 1
        return True


class MapReleaser:
    """Releases the store's map (:meth:`storage.environment.Store.release_map`) once no read
    transaction has begun for ``quiet_s`` seconds, once per quiet spell: what the dashboard's
    queries mapped leaves the resident set a few seconds after they stop, and while reads go
    on nothing is released. A release costs a few milliseconds, and the next reads a minor
    fault per page they touch again (docs/performance.md, twenty-third part). A bulk load
    begins reads only now and then (the seed month's: a few every 10-30 s), so its writer's
    map is released between them and mapped again within 2 s; releasing while reads go on,
    over a bound, held nothing either: the dashboard's readers map ~250 MB again as fast
    (twenty-eighth part). Writes map pages too (those they copy, and their neighbours): once
    the map was released, writes and then ``quiet_s`` with neither reads nor writes release it
    again (closing the visits a load of history left open maps ~220 MB at the seed's month,
    with no read after it; thirtieth part), while a server written every second keeps what
    its writes use. The job thread polls it every :data:`MAP_POLL_S` seconds."""

    def __init__(self, store, quiet_s: float = MAP_QUIET_S, clock=time.monotonic) -> None:
        self._store = store
        self.quiet_s = quiet_s
        self._clock = clock
        self._seen = store.reads_begun
        self._since = clock()
        self._writes_seen = store.writes_done
        self._written_at = float("-inf")  # the last poll that saw new writes
        self._written = False  # writes since the last release
        self._released = False  # what the start read is released after the first quiet spell
        self.releases = 0  # times the map was released (tests, the bench)

    def poll(self) -> bool:
        """Release the map if reads have stopped for ``quiet_s`` since the last release, or
        once it was, if writes came and then ``quiet_s`` of neither."""
        now, reads, writes = self._clock(), self._store.reads_begun, self._store.writes_done
        if writes != self._writes_seen:
            self._writes_seen, self._written_at, self._written = writes, now, True
        if reads != self._seen:
            self._seen, self._since, self._released = reads, now, False
            return False
        if now - self._since < self.quiet_s:
            return False
        if self._released and not (self._written and now - self._written_at >= self.quiet_s):
            return False
        self._released, self._written = True, False
        if not self._store.release_map():
            return False
        self.releases += 1
        return True


#: a write-back sketch no fold wrote for this long is let go (at most ``[memory]
#: release_unused_seconds``): the sketches serve only the folds, never a query, and after a
#: load of history every day's but the last is one no fold will write again
SKETCHES_UNUSED_S = 30.0
#: the heap is trimmed once the polls have let go of this much since its last trim (a load
#: lets go of a passed day's sketches a few hundred kilobytes a poll: a trim each time would
#: cost more than it gives back, and none at all would keep what they freed)
TRIM_FROM_BYTES = 4 << 20


class UnusedCaches:
    """Lets go of the cached column blocks nobody requested for ``unused_s`` seconds
    (``[memory] release_unused_seconds``; 0: never) and the write-back sketches no fold wrote
    for :data:`SKETCHES_UNUSED_S` (or ``unused_s``, if shorter), then trims the heap: the
    caches fill to their shares of the memory budget while the dashboard is read or a load is
    folded, and a server nobody looks at gives that memory back instead of holding it until
    the budget pushes it out. What is let go is read again on the next use (a filtered query
    after a pause: its blocks decoded again, as after a restart; a fold: the sketch read from
    the store). The job thread polls it every :data:`MAP_POLL_S` seconds; the sketches are the
    writer's, so they are let go only while the coordinator's ``mutex`` is free (the next poll
    tries again)."""

    def __init__(self, blocks, sketches, mutex, unused_s: float, trimmer: HeapTrimmer,
                 clock=time.monotonic, trim_from: int = TRIM_FROM_BYTES) -> None:
        self._blocks = blocks  # appliance.events.block_cache.BlockCache
        self._sketches = sketches  # storage.sketches.Sketches
        self._mutex = mutex
        self.unused_s = unused_s
        self._trimmer = trimmer
        self._clock = clock
        self._trim_from = trim_from
        self._untrimmed = 0  # let go since the last trim
        self.released_bytes = 0  # let go so far (tests)

    def poll(self) -> int:
        """Let go of what went unused; returns the (estimated) bytes let go now."""
        if self.unused_s <= 0:
            return 0
        now = self._clock()
        freed = self._blocks.let_go_unused(now - self.unused_s)
        if self._mutex.acquire(blocking=False):
            try:
                freed += self._sketches.let_go_unused(now - min(self.unused_s, SKETCHES_UNUSED_S))
            finally:
                self._mutex.release()
        self.released_bytes += freed
        self._untrimmed += freed
        if self._untrimmed >= max(1, self._trim_from) and self._trimmer.trim():  # else the next poll tries
            self._untrimmed = 0
        return freed
