"""Decoding the columns of a period's blocks on two threads.

A stored block loads each column on first use (:mod:`appliance.events.blocks`): an LMDB read,
a zlib decompression, for delta-coded columns a cumulative sum. zlib and numpy release the
GIL while they work, so when a report is about to read the same columns of every block of a
period, :func:`preload` has them decoded two at a time on a small pool: on both cores of a
small server. The pool's threads only decode; they never touch the event loop.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor

_LOADERS = ThreadPoolExecutor(max_workers=2, thread_name_prefix="footfall-columns")


def preload(blocks: Iterable, names: tuple[str, ...]) -> None:
    """Load the columns ``names`` of the stored ``blocks`` (``Block``) not loaded yet, and
    return when all are: an error (a block rewritten meanwhile) is raised here, as the
    lazy load would have raised it."""
    wanted = [(block, name) for block in blocks if block.stored for name in names if name not in block.columns]
    if len(wanted) > 1:
        for _ in _LOADERS.map(lambda job: job[0].column(job[1]), wanted):
            pass


def preload_later(blocks: Iterable, names: tuple[str, ...]) -> Callable[[], None]:
    """Start loading the columns ``names`` of the stored ``blocks`` on the pool and return at
    once; the returned function waits for them (and raises a failed load). A scan that walks
    a period day by day decodes the next day's columns while it reduces the current one's."""
    wanted = [(block, name) for block in blocks if block.stored for name in names if name not in block.columns]
    futures = [_LOADERS.submit(block.column, name) for block, name in wanted]

    def wait() -> None:
        for future in futures:
            future.result()

    return wait
