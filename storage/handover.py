"""A quick interpreter-lock hand-back for bulk write transactions.

py-lmdb lets go of the interpreter lock around every LMDB call (each ``get``, ``put``,
``delete`` and cursor step), and a thread that lets go waits, when another thread is running
Python, up to the interpreter's switch interval (:func:`sys.setswitchinterval`; 1 ms in
``footfall serve``) to get it back. A write transaction of one call per row is then slow
beside a busy thread, and every tracker commit waits for LMDB's write lock meanwhile: deleting
5,000 rows took 1 ms alone and ~190 ms beside a thread matching patterns (1 ms interval), so a
day's compaction of 20,000 rows held the lock 0.5-1 s while a filtered query ran.

:func:`bulk_handover` shortens the interval while such a transaction is open, so the writing
thread takes the lock back after each call almost at once; the other threads run in shorter
turns meanwhile. Only for bulk writes: for every write transaction (a commit's few rows, an
aggregation step's slice) it made the tracker's p99 while the dashboard was read 1.26x as long,
and for the commits' alone 1.35x (``scripts/bench_paced``, four rounds alternately).
"""

from __future__ import annotations

import contextlib
import sys
import threading
from collections.abc import Iterator

BULK_SWITCH_SECONDS = 50e-6  # 5,000 deletes beside a busy thread: ~26 ms, against ~190 at 1 ms

_lock = threading.Lock()
_depth = 0
_saved = 0.0  # the interval before the outermost use
_ours = 0.0  # the interval it set


@contextlib.contextmanager
def bulk_handover() -> Iterator[None]:
    """Run the block with the switch interval at most :data:`BULK_SWITCH_SECONDS`. The interval
    is process-wide: nested and concurrent uses (two stores written at once) share one change,
    undone when the last one ends, unless something else set another interval meanwhile."""
    global _depth, _saved, _ours
    with _lock:
        if _depth == 0:
            _saved = sys.getswitchinterval()
            if _saved > BULK_SWITCH_SECONDS:
                sys.setswitchinterval(BULK_SWITCH_SECONDS)
            _ours = sys.getswitchinterval()
        _depth += 1
    try:
        yield
    finally:
        with _lock:
            _depth -= 1
            if _depth == 0 and sys.getswitchinterval() == _ours:
                sys.setswitchinterval(_saved)
