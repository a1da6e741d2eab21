"""Visitor counts of sketches, with a HyperLogLog's estimate remembered by its registers.

A sketch's count is a pure function of what it holds: an exact set's size, or the estimate a
HyperLogLog computes from its registers (linear counting or the bias-corrected raw estimate,
about 50–100 µs of numpy per call). The counted reports count the same unions again and
again — today's top pages, the site's visitors over a kept range — and a busy sketch's
registers rarely change (a new visitor raises a register only when its rank beats it), so
the estimate is kept under a digest of the precision and the registers: a hit is exactly
the estimate the registers give, whatever was written meanwhile, and needs no invalidation.
A sketch with most registers still zero is estimated by linear counting, a few µs — less
than the digest — and is counted directly.
"""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict

import numpy as np

from storage.sketches import Sketch

ESTIMATES_KEPT = 4096  # ~120 bytes each: a digest, an int and the dict's entry; [memory] sets it


class Estimates:
    """``count(sketch)``: ``sketch.count()``, a HyperLogLog's estimate looked up by its
    registers' digest first (at most :data:`ESTIMATES_KEPT`, least recently used dropped)."""

    def __init__(self, kept: int = ESTIMATES_KEPT) -> None:
        self.kept = kept
        self._estimates: OrderedDict[bytes, int] = OrderedDict()
        self._lock = threading.Lock()  # report threads share it
        self.hits = 0
        self.misses = 0

    def count(self, sketch: Sketch) -> int:
        if sketch.is_exact:
            return sketch.count()
        registers = sketch.hll.M
        if np.count_nonzero(registers) * 2 < len(registers):
            # Most registers still zero: the estimate is linear counting (a zero count and a
            # log, ~3 µs), cheaper than the digest; counted, not kept. Either way the count is
            # the sketch's own: this only chooses the cheaper way to it.
            return sketch.count()
        digest = hashlib.blake2b(np.ascontiguousarray(registers), digest_size=16,
                                 salt=bytes([sketch.precision])).digest()
        with self._lock:
            found = self._estimates.get(digest)
            if found is not None:
                self._estimates.move_to_end(digest)
                self.hits += 1
                return found
        estimate = sketch.count()
        with self._lock:
            self.misses += 1
            self._estimates[digest] = estimate
            if len(self._estimates) > self.kept:
                self._estimates.popitem(last=False)
        return estimate

    def __len__(self) -> int:
        return len(self._estimates)
