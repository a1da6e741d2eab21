"""A cached sketch's kept encoding (exact members, sparse registers) is the encoding its set or
registers give: batch after batch, through the exact set's growth into a HyperLogLog and a
sparse HyperLogLog's growth into a raw one, and after an aborted transaction."""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from storage import Store
from storage.keys import DAY, pack_bucket_key
from storage.sketches import (
    DIMENSION_PRECISION,
    ExactMembers,
    Sketch,
    Sketches,
    SparseRegisters,
    sketch_bytes,
)

SITE = 1


def encoded_afresh(sketch: Sketch) -> bytes:
    """``sketch``'s bytes from its set or registers, whatever encoding it keeps."""
    kept, sketch.encoding = sketch.encoding, None
    try:
        return sketch.to_bytes()
    finally:
        sketch.encoding = kept


#: (register, rank bits): hashes that often meet in a few registers, raising them again
few_registers = st.tuples(st.integers(0, 15), st.integers(0, 49))


@settings(max_examples=80, deadline=None)
@given(st.lists(st.lists(st.integers(0, 2**64 - 1) | few_registers, max_size=40), min_size=1, max_size=40),
       st.sampled_from([12, 14]))
def test_a_kept_encoding_is_the_sketch_encoded_afresh(batches, precision):
    sketch = Sketch(precision, exact_limit=64)
    sketch.keep_encoding()
    for drawn in batches:
        hashes = [value if isinstance(value, int) else (1 << value[1]) << precision | value[0] for value in drawn]
        if sketch.exact is not None:
            sketch.add_many(hashes)
        else:
            sketch.hll_add_few_changing(hashes)
        sketch.keep_encoding()
        assert sketch.to_bytes() == encoded_afresh(sketch)
        assert Sketch.from_bytes(sketch.to_bytes()).count() == sketch.count()


def test_cached_sketches_keep_their_encoding_and_store_what_a_fresh_store_stores(tmp_path):
    """Two stores take the same batches, one through a warm cache (the kept encodings), the
    other with its cache dropped before every batch (each sketch read and encoded afresh)."""
    stores = [Store(tmp_path / "warm"), Store(tmp_path / "cold")]
    try:
        warm, cold = (Sketches(store, rolled_up={3: DIMENSION_PRECISION}) for store in stores)
        rng = random.Random(7)
        visitors = [rng.getrandbits(64) for _ in range(3000)]
        keys = [pack_bucket_key(SITE, DAY, metric, 20_000, value) for metric in (3, 5) for value in range(1, 6)]
        for number in range(120):
            additions = {  # the first values' few visitors stay an exact set; the rest grow
                key: (DIMENSION_PRECISION, rng.sample(visitors[:200] if index < 4 else visitors, rng.randrange(1, 20)))
                for index, key in enumerate(keys)
            }
            cold.forget()
            for sketches, store in ((warm, stores[0]), (cold, stores[1])):
                with store.env.begin(write=True) as txn:
                    sketches.add(txn, additions)
                sketches.committed()
            if number == 60:  # an aborted transaction: the warm cache's objects are dirty
                with stores[0].env.begin(write=True) as txn:
                    warm.add(txn, additions | {keys[0]: (DIMENSION_PRECISION, visitors[:40])})
                    txn.abort()
        contents = []
        for store in stores:
            with store.read() as txn:
                contents.append(list(txn.cursor(db=store.db(b"sketches"))))
        assert contents[0] == contents[1]
        kinds = {type(sketch.encoding) for sketch in warm._cache.values()}
        assert {ExactMembers, SparseRegisters} <= kinds  # both kept, not encoded afresh
        assert warm.cached_bytes == sum(map(sketch_bytes, warm._cache.values()))
    finally:
        for store in stores:
            store.close()


@pytest.mark.parametrize("precision", [12, 14])
def test_a_sparse_sketch_turning_raw_drops_its_kept_encoding(precision):
    sketch = Sketch(precision, exact_limit=0)
    sketch.add_many([1])  # a HyperLogLog at once
    sketch.keep_encoding()
    rng = random.Random(precision)
    kinds = set()
    while True:  # a few hashes a batch, encoded after each as the cache's batches are
        sketch.hll_add_few_changing([rng.getrandbits(64) for _ in range(8)])
        kinds.add(type(sketch.encoding))
        data = sketch.to_bytes()
        assert data == encoded_afresh(sketch)
        if data[:1] == b"R":
            break
    assert SparseRegisters in kinds
    assert sketch.encoding is None
