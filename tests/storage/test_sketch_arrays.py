"""``Sketch.add_array`` (a uint64 array of visitor hashes) leaves a sketch exactly as
``add_many`` of the same hashes as a list does: members or registers, bytes, a kept encoding,
and the return value, from every kind of sketch and for every kind of array."""

from __future__ import annotations

import numpy as np
import pytest

from storage.sketches import (
    DIMENSION_PRECISION,
    EXACT_LIMIT,
    KEEP,
    SITE_PRECISION,
    ExactMembers,
    Sketch,
    SparseRegisters,
)

#: seeded uint64 visitor hashes; the sketches' members are drawn from its start
POOL = np.random.default_rng(20).integers(0, 2**64, 400_000, dtype=np.uint64)


def _exact(members: int, precision: int = DIMENSION_PRECISION, limit: int = EXACT_LIMIT) -> Sketch:
    sketch = Sketch(precision, limit)
    sketch.add_many(POOL[:members].tolist())
    return sketch


def _kept(members: int, encoded: bool) -> Sketch:
    """A sketch keeping its encoding: built (an exact set's members, a sparse sketch's
    registers) by a ``to_bytes``, or only asked for (``KEEP``)."""
    sketch = _exact(members)
    sketch.keep_encoding()
    if encoded:
        sketch.to_bytes()
    return sketch


STARTS = {
    "empty": lambda: _exact(0),
    "exact": lambda: _exact(100),
    "exact near the limit": lambda: _exact(EXACT_LIMIT - 6),
    "exact at the limit": lambda: _exact(EXACT_LIMIT),
    "exact, small limit": lambda: _exact(10, limit=16),
    "exact, encoding asked for": lambda: _kept(100, encoded=False),
    "exact, encoding kept": lambda: _kept(100, encoded=True),
    "hyperloglog": lambda: _exact(1_000, SITE_PRECISION),
    "hyperloglog, sparse encoding kept": lambda: _kept(1_000, encoded=True),
}


def _array(name: str) -> np.ndarray:
    rng = np.random.default_rng(7)
    new = POOL[200_000:]  # none of them a starting member
    if name == "empty":
        return np.empty(0, np.uint64)
    if name == "members again":
        return np.tile(POOL[:40], 3)
    if name == "a few new, repeated":
        return rng.permutation(np.concatenate([np.tile(new[:12], 4), POOL[:20]]))
    if name == "one past a kept encoding's steps":
        return np.concatenate([new[:13], new[:13]])
    if name == "within the limit, duplicated":
        return new[rng.integers(0, 150, 200)]
    if name == "past the limit":
        return new[:EXACT_LIMIT + 1]
    if name == "many views of few visitors":
        return new[rng.integers(0, 150, 5_000)]
    if name == "few visitors first, many after":
        return np.concatenate([new[rng.integers(0, 3, 2_000)], new[3:2_003]])
    if name == "a busy source":  # ~300,000 page views of ~100,000 visitors: more than a slice
        return new[rng.integers(0, 100_000, 300_000)]
    raise AssertionError(name)


ARRAYS = [
    "empty",
    "members again",
    "a few new, repeated",
    "one past a kept encoding's steps",
    "within the limit, duplicated",
    "past the limit",
    "many views of few visitors",
    "few visitors first, many after",
    "a busy source",
]


def _state(sketch: Sketch):
    """Everything a sketch holds, its kept encoding's contents included."""
    kept = sketch.encoding
    if isinstance(kept, ExactMembers):
        kept = ("members", list(kept.members), bytes(kept.body))
    elif isinstance(kept, SparseRegisters):
        kept = ("sparse", kept.indices.tobytes(), bytes(kept.ranks))
    elif kept is KEEP:
        kept = "keep"
    registers = None if sketch.hll is None else (sketch.hll.p, sketch.hll.M.tobytes())
    exact = None if sketch.exact is None else sorted(sketch.exact)
    return exact, registers, kept, sketch.precision, sketch.exact_limit


@pytest.mark.parametrize("array", ARRAYS)
@pytest.mark.parametrize("start", list(STARTS))
def test_adding_an_array_equals_adding_its_list(start, array):
    hashes = _array(array)
    by_list, by_array = STARTS[start](), STARTS[start]()

    changed = by_list.add_many(hashes.tolist())

    assert by_array.add_array(hashes) is changed
    assert _state(by_array) == _state(by_list)
    assert by_array.to_bytes() == by_list.to_bytes()
    assert _state(by_array) == _state(by_list)  # (an encoding asked for: built alike)
    assert by_array.count() == by_list.count()
    # and it goes on alike: a second add of the same hashes changes neither
    assert by_array.add_array(hashes) is by_list.add_many(hashes.tolist()) is False
    assert by_array.to_bytes() == by_list.to_bytes()


def test_the_cases_reach_every_path():
    """The arrays above do what their names say against the default limit."""
    sketch = _exact(100)
    assert sketch.add_array(_array("few visitors first, many after")) and not sketch.is_exact
    sketch = _exact(100)
    assert sketch.add_array(_array("many views of few visitors")) and sketch.count() == 100 + 150
    kept = _kept(100, encoded=True)
    kept.add_array(_array("a few new, repeated"))
    assert isinstance(kept.encoding, ExactMembers)  # updated member by member
    kept = _kept(100, encoded=True)
    kept.add_array(_array("one past a kept encoding's steps"))
    assert kept.encoding is KEEP
    sparse = _kept(1_000, encoded=True)
    assert isinstance(sparse.encoding, SparseRegisters)


def test_an_array_of_another_type_is_refused():
    with pytest.raises(TypeError):
        Sketch(DIMENSION_PRECISION).add_array(np.arange(10, dtype=np.int64))
