"""The decoded column blocks kept in memory, bounded in bytes (39 % of ``[memory] budget_mb``).

Not least-recently-used: a period read again and again that is a little larger than the
cache would, under LRU, push out block by block exactly the block the next read needs first,
and nothing would ever be read from memory. The cache counts requests per ``(site, day)``,
cached or not, and halves every count after a few requests per entry, so old habits fade. It
drops the least requested block first, the least recently read among equals; a block just
built is admitted only if it was requested more often than the block it would push out. A
period that does not fit keeps the part that does, and only the rest is loaded each time.

A block nobody requested for ``[memory] release_unused_seconds`` is let go
(:meth:`BlockCache.let_go_unused`, polled by :class:`appliance.heap.UnusedCaches`): the cache
is kept in request order, so those are the first ones.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict

from appliance.events.blocks import Block

Key = tuple[int, int]  # (site, day)


class BlockCache:
    def __init__(self, limit_bytes: int, clock=time.monotonic) -> None:
        self.limit_bytes = limit_bytes
        self._clock = clock
        self.cached_bytes = 0  # what the budget bounds: each block's arrays, measured
        self.epoch = 0  # calls of forget() so far (appliance/query/memo.py keys on it)
        self.lock = threading.Lock()
        self._blocks: OrderedDict[Key, Block] = OrderedDict()
        self._seen: dict[Key, int] = {}  # requests per key, halved now and then
        self._requests = 0  # requests since the counts were last halved

    def __len__(self) -> int:
        return len(self._blocks)

    def blocks(self) -> list[Block]:
        with self.lock:
            return list(self._blocks.values())

    def holds(self, block: Block) -> bool:
        """Whether ``block`` itself is the one cached for its day."""
        with self.lock:
            return self._blocks.get((block.site, block.day)) is block

    def requested(self, key: Key) -> Block | None:
        """Count a request for ``key``'s block and return the cached one, if any."""
        with self.lock:
            self._seen[key] = self._seen.get(key, 0) + 1
            self._requests += 1
            if self._requests > 8 * max(len(self._blocks), 16):
                self._requests = 0
                self._seen = {k: n >> 1 for k, n in self._seen.items() if n > 1}
            found = self._blocks.get(key)
            if found is not None:
                self._blocks.move_to_end(key)
                found.used = self._clock()
            return found

    def peek(self, key: Key) -> Block | None:
        """The cached block of ``key``, if any, without counting a request (a background scan's)."""
        with self.lock:
            return self._blocks.get(key)

    def remember(self, block: Block) -> None:
        """Cache a block just built (in place of the key's older one), if it earns its room."""
        key = (block.site, block.day)
        with self.lock:
            replaced = self._blocks.pop(key, None)
            if replaced is not None:
                self.cached_bytes -= replaced.cached_size
            block.cached_size = block.nbytes() + (block.count * 8 if block.stored else 0)  # room for lazy columns
            block.on_grow = self.resize  # each column or result it loads later counts at once
            block.used = self._clock()
            self._blocks[key] = block
            self.cached_bytes += block.cached_size
            self._shrink(newcomer=key)

    def resize(self, block: Block) -> None:
        """Count the columns a cached block loaded lazily since it was last measured (called
        by the block as each one loads, so a scan that loads many columns of its period's
        blocks pushes blocks out as it goes, not at the next request)."""
        with self.lock:
            if self._blocks.get((block.site, block.day)) is not block:
                return
            size = block.nbytes()
            if size > block.cached_size:
                self.cached_bytes += size - block.cached_size
                block.cached_size = size
            self._shrink()

    def _shrink(self, newcomer: Key | None = None) -> None:
        seen = self._seen
        while self.cached_bytes > self.limit_bytes and len(self._blocks) > 1:
            victim = min((k for k in self._blocks if k != newcomer), key=lambda k: seen.get(k, 0))
            if newcomer in self._blocks and seen.get(newcomer, 0) <= seen.get(victim, 0):
                victim, newcomer = newcomer, None
            self.cached_bytes -= self._blocks.pop(victim).cached_size

    def let_go_unused(self, before: float) -> int:
        """Drop the blocks last requested before ``before`` (on this cache's clock); returns
        their bytes. Unlike :meth:`forget`, what is dropped is still current (no new epoch)."""
        freed = 0
        with self.lock:
            blocks = self._blocks
            while blocks:
                key, block = next(iter(blocks.items()))
                if block.used >= before:
                    break
                del blocks[key]
                self.cached_bytes -= block.cached_size
                freed += block.cached_size
        return freed

    def forget(self, site: int | None = None, day: int | None = None) -> None:
        """Drop the blocks of ``site`` (and ``day``), or all; bumps ``epoch``."""
        with self.lock:
            self.epoch += 1
            for key in [k for k in self._blocks if (site is None or k[0] == site) and (day is None or k[1] == day)]:
                self.cached_bytes -= self._blocks.pop(key).cached_size


class ScanBlocks:
    """The blocks one background scan reads, kept for that scan's next reads only, never in
    the shared :class:`BlockCache`.

    Re-deriving visits (:mod:`appliance.ingest.rederive`) reads each local day with hours of
    margin either side, so consecutive days share two of their three UTC days' blocks; kept
    here, each is built once per run. In the shared cache they pushed out what queries read
    and filled it to its bound while a bulk load was re-derived, for days nobody asked about.
    At most ``limit`` blocks and, with ``limit_bytes``, at most that many bytes of arrays
    (:meth:`Block.nbytes`, measured as the scan goes: a stored block decodes columns as they
    are read): on a miss the least recently requested go before the new one is built, and
    after it is built as many as its size needs, so the scan's peak is what it keeps plus one
    block. A block read from the log holds every column decoded (~140 bytes a row: ~50 MB
    for a day of the seed's month), three of them were most of the heap's peak while a bulk
    load was re-derived. A block let go here is still whole for the frame that reads it.
    Used by one thread at a time.
    """

    def __init__(self, limit: int = 3, limit_bytes: int | None = None) -> None:
        self.limit = limit
        self.limit_bytes = limit_bytes
        self._blocks: OrderedDict[Key, Block] = OrderedDict()

    def __len__(self) -> int:
        return len(self._blocks)

    def requested(self, key: Key) -> Block | None:
        found = self._blocks.get(key)
        if found is not None:
            self._blocks.move_to_end(key)
            return found
        self._shrink(self.limit - 1)
        return None

    def remember(self, block: Block) -> None:
        self._blocks[(block.site, block.day)] = block
        self._blocks.move_to_end((block.site, block.day))
        self._shrink(self.limit)

    def _shrink(self, count: int) -> None:
        """Let the least recently requested go until at most ``count`` blocks and
        ``limit_bytes`` remain (the newest too, if it alone is larger)."""
        while len(self._blocks) > count:
            self._blocks.popitem(last=False)
        if self.limit_bytes is not None:
            while self._blocks and sum(block.nbytes() for block in self._blocks.values()) > self.limit_bytes:
                self._blocks.popitem(last=False)

    def clear(self) -> None:
        self._blocks.clear()
