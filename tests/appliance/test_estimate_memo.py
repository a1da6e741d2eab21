"""Sketch counts remembered by their registers (appliance/query/estimates.py, issue 17).

A kept estimate must be exactly what the registers give: the same registers hit, a sketch
whose registers rose is counted again, exact sets and mostly-zero sketches (linear counting,
cheaper than a digest) are counted directly, and the memo stays bounded.
The counted reports through it answer as the sketches themselves count.
"""

from __future__ import annotations

import numpy as np

from appliance.query.estimates import Estimates
from storage.sketches import DIMENSION_PRECISION, SITE_PRECISION, Sketch


def _members(seed: int, count: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 2**63, count, dtype=np.uint64)


def _sketch(precision: int, members: np.ndarray) -> Sketch:
    sketch = Sketch(precision)
    sketch.add_many(members)
    return sketch


def test_a_kept_estimate_is_the_registers_own_and_a_risen_register_is_counted_again():
    estimates = Estimates()
    sketch = _sketch(DIMENSION_PRECISION, _members(1, 5_000))
    assert not sketch.is_exact
    first = estimates.count(sketch)
    assert first == sketch.count() and (estimates.hits, estimates.misses) == (0, 1)
    same = Sketch.from_bytes(sketch.to_bytes())  # another object with the same registers
    assert estimates.count(same) == first and estimates.hits == 1
    grown = Sketch.from_bytes(sketch.to_bytes())
    assert grown.add_many(_members(2, 5_000))  # registers rose
    assert estimates.count(grown) == grown.count() > first
    assert estimates.misses == 2


def test_precisions_never_share_an_estimate():
    estimates = Estimates()
    members = _members(3, 30_000)  # most registers set at both precisions
    small, large = _sketch(DIMENSION_PRECISION, members), _sketch(SITE_PRECISION, members)
    assert estimates.count(small) == small.count()
    assert estimates.count(large) == large.count()
    assert estimates.misses == 2


def test_exact_sets_and_sparse_sketches_are_counted_not_kept_and_the_memo_is_bounded():
    estimates = Estimates(kept=3)
    exact = _sketch(DIMENSION_PRECISION, _members(4, 100))
    assert exact.is_exact and estimates.count(exact) == 100 and len(estimates) == 0
    sparse = _sketch(SITE_PRECISION, _members(5, 1_000))  # most registers zero: linear counting
    assert not sparse.is_exact and estimates.count(sparse) == sparse.count() and len(estimates) == 0
    sketches = [_sketch(DIMENSION_PRECISION, _members(10 + n, 5_000 + n)) for n in range(5)]
    assert [estimates.count(s) for s in sketches] == [s.count() for s in sketches]
    assert len(estimates) == 3
    assert estimates.count(sketches[0]) == sketches[0].count()  # dropped, counted again
    assert estimates.misses == 6
