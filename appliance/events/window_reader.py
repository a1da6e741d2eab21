"""A window of a site's events read in one read transaction, without the serving process's
caches: what the build helper (:mod:`appliance.events.compaction_build`) reads to re-derive a
day's visits (:mod:`appliance.events.rederive_window`).

:meth:`ColumnStore.frame <appliance.events.columns.ColumnStore.frame>` reads a window through
the block cache and settled reads; :class:`WindowReader` reads the same events from the store
alone: a day with a stored block, that block plus the log rows that came for it since (as
``ColumnStore.block`` merges them); a day without one, its log rows. :func:`frame_key_in` is
what both key a window on (each day's rows and count), so the serving process can tell, under
its write mutex, whether the window a helper read is still what the store holds.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from appliance import dimensions as dims
from appliance.events.blocks import DAY_MS, Block, StaleBlock
from appliance.events.encoding import (
    CHUNK_ROWS,
    concatenate,
    in_key_order,
    log_columns,
    rows_to_columns,
)
from appliance.events.frames import Frame
from storage.columns import ColumnBlocks
from storage.counters import Counters
from storage.eventlog import EventLog
from storage.keys import HOUR


def content_of(pointer) -> int:
    """Which rows a day holds (0: no block, the log's); a compaction stores the same rows and
    keeps it, a rewrite without some (erasure, purge) or with new visit figures changes it."""
    return 0 if pointer is None else int(pointer.info.get("content", pointer.generation))


def frame_key_in(txn, counters: Counters, blocks: ColumnBlocks, site: int, start_ms: int, end_ms: int) -> tuple:
    """What a frame of ``[start_ms, end_ms)`` holds as ``txn`` sees it, without reading it: per
    day with events, which rows (:func:`content_of`) and how many, and the part in range."""
    first_day, last_day = start_ms // DAY_MS, (end_ms - 1) // DAY_MS
    totals: dict[int, int] = {}
    for hour, _, value in counters.scan(txn, site, HOUR, dims.EVENTS_TOTAL, first_day * 24, last_day * 24 + 23):
        totals[hour // 24] = totals.get(hour // 24, 0) + value
    days = {day for day, total in totals.items() if total} | set(blocks.days(txn, site, first_day, last_day))
    key = []
    for day in sorted(days):
        content = content_of(blocks.pointer(txn, site, day))
        key.append((day, content, totals.get(day, 0), max(start_ms, day * DAY_MS), min(end_ms, (day + 1) * DAY_MS)))
    return (site, *key)


class WindowReader:
    """Frames and their keys from a store alone (a read-only one, in the helper process)."""

    def __init__(self, store) -> None:
        self.counters = Counters(store)
        self.blocks = ColumnBlocks(store, migrate=False)
        self.eventlog = EventLog(store)

    def frame_key(self, txn, site: int, start_ms: int, end_ms: int) -> tuple:
        return frame_key_in(txn, self.counters, self.blocks, site, start_ms, end_ms)

    def frame(self, txn, site: int, start_ms: int, end_ms: int, key: tuple | None = None) -> Frame:
        """The site's events with ``start_ms <= ts < end_ms``, as ``txn`` sees them (``key``:
        :meth:`frame_key` of the same, when already read in ``txn``)."""
        key = key or self.frame_key(txn, site, start_ms, end_ms)
        parts = []
        for day, _, total, lo_ms, hi_ms in key[1:]:
            block = self._block(txn, site, day, total, lo_ms, hi_ms)
            if not block.count:
                continue
            ts = block.scalar("ts")
            lo = int(ts.searchsorted(lo_ms, "left")) if lo_ms > day * DAY_MS else 0
            hi = int(ts.searchsorted(hi_ms, "left")) if hi_ms < (day + 1) * DAY_MS else block.count
            if hi > lo:
                parts.append((block, lo, hi))
        frame = Frame(parts)
        frame.span = (start_ms, end_ms)
        return frame

    def _block(self, txn, site: int, day: int, total: int, lo_ms: int, hi_ms: int) -> Block:
        start, end = day * DAY_MS, (day + 1) * DAY_MS
        pointer = self.blocks.pointer(txn, site, day)
        if pointer is None:
            # the log rows in range only (nothing here caches the day): a window's edge days
            # decode their part, and the pages of the rest are never mapped (a UTC day's
            # window, 36 hours, read three whole days: the helper's peak 410 -> ~290 MB)
            whole = lo_ms <= start and hi_ms >= end
            chunks = self.eventlog.chunks(txn, site, lo_ms, hi_ms, CHUNK_ROWS, expected=total if whole else 0)
            columns, _ = log_columns(chunks)
            return Block(site, day, len(columns["ts"]), columns)
        block = stored_block(site, day, pointer, lambda name: self.blocks.get(txn, site, day, pointer.generation, name))
        tail = list(self.eventlog.scan(txn, site, start, end))
        if tail:
            merged = in_key_order(concatenate([block.plain(), rows_to_columns(tail)]))
            block = Block(site, day, len(merged["ts"]), merged, generation=pointer.generation)
        return block


def stored_block(site: int, day: int, pointer, read: Callable[[str], np.ndarray | None]) -> Block:
    """The day's stored block as ``pointer`` describes it, each column loaded on first use by
    ``read(name)``, which gives None once that generation was replaced (:class:`StaleBlock`)."""
    def load(name: str) -> np.ndarray:
        array = read(name)
        if array is None:
            raise StaleBlock(f"block generation {pointer.generation} of site {site} day {day} was replaced")
        return array

    info = pointer.info
    block = Block(site, day, int(info.get("count", 0)), {}, generation=pointer.generation, loader=load,
                  timeout_ms=int(info.get("timeout_ms", 0)))
    block.format = int(info.get("format", 0))
    return block
