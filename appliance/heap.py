"""Giving the heap a large scan freed back to the system (glibc's ``malloc_trim``).

A filtered report over a long period builds hundreds of megabytes of short-lived numpy
arrays (a 30-day frame at the seed's month: about 600 MB at its peak). ``footfall serve``
sets ``MALLOC_MMAP_THRESHOLD_`` so the largest of them are mapped and unmapped on their own,
but the many medium ones (a day block's columns, a few hundred kilobytes each) come from the
heap, and glibc keeps what they freed: measured in-process at the seed's month, the heap
stayed 60–80 MB above what was still in use after the query suite. ``malloc_trim(0)``
returns every free page (about 8 ms for 60 MB there), so it runs after a report that read a
large frame, at most once per :data:`MIN_INTERVAL_S`. Elsewhere than glibc it does nothing.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import threading
import time

LARGE_FRAME_ROWS = 500_000  # a frame this large leaves tens of megabytes freed behind it
MIN_INTERVAL_S = 1.0


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
