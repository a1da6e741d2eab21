"""Durable and derived writes: which commits flush LMDB's meta page before they return.

The environment is opened with ``MDB_NOMETASYNC``: LMDB still flushes a transaction's pages
before the meta page that makes them current, and a durable write (anything answered to a
client) flushes the meta page itself before ``Store.write`` returns. The aggregation step's
writes, derived from events still listed in ``pending``, skip that second flush.
"""

from __future__ import annotations

import lmdb
import pytest

from storage import StorageFullError, Store


class _CountedEnvironment:
    """A store's LMDB environment, its explicit flushes recorded with what the file held."""

    def __init__(self, env, check=None) -> None:
        self._env = env
        self._check = check
        self.flushes: list[object] = []

    def sync(self, force: bool = False) -> None:
        self._env.sync(force)
        self.flushes.append(self._check() if self._check else force)

    def __getattr__(self, name):
        return getattr(self._env, name)


@pytest.fixture
def counted(tmp_path):
    store = Store(tmp_path / "lmdb")
    db = store.db(b"counters")
    real = store.env

    def committed_value():
        with real.begin() as txn:
            return txn.get(b"key", db=db)

    store.env = _CountedEnvironment(real, committed_value)
    yield store, db
    store.env = real
    store.close()


def test_the_meta_page_is_not_flushed_by_lmdb_itself(store):
    assert store.env.flags()["metasync"] is False
    assert store.env.flags()["sync"] is True  # a transaction's pages still are, before its meta page


def test_a_durable_write_flushes_after_its_commit(counted):
    store, db = counted
    store.write(lambda txn: txn.put(b"key", b"1", db=db))
    assert store.env.flushes == [b"1"]  # once, with the transaction already committed


def test_a_derived_write_leaves_the_flush_to_the_next_durable_one(counted):
    store, db = counted
    store.write(lambda txn: txn.put(b"key", b"2", db=db), durable=False)
    assert store.env.flushes == []
    store.write(lambda txn: txn.put(b"other", b"", db=db))
    assert store.env.flushes == [b"2"]  # the durable write's flush carries the one before it


def test_a_failed_write_flushes_nothing(counted):
    store, db = counted

    def failing(txn):
        txn.put(b"key", b"3", db=db)
        raise RuntimeError("refused")

    with pytest.raises(RuntimeError):
        store.write(failing)
    assert store.env.flushes == []


def test_a_failed_flush_stops_later_writes(counted):
    store, db = counted

    def failing_sync(force=False):
        raise lmdb.DiskError("mdb_env_sync: Input/output error")

    store.env.sync = failing_sync
    with pytest.raises(StorageFullError, match="flushing a commit"):
        store.write(lambda txn: txn.put(b"key", b"4", db=db))
    del store.env.sync
    with pytest.raises(StorageFullError, match="writes stopped"):
        store.write(lambda txn: txn.put(b"key", b"5", db=db), durable=False)
    with store.read() as txn:
        assert txn.get(b"key", db=db) == b"4"  # committed, perhaps not on disk: nothing built on it


def test_closing_twice_is_harmless(tmp_path):
    store = Store(tmp_path / "lmdb")
    store.write(lambda txn: txn.put(b"key", b"6", db=store.db(b"counters")), durable=False)
    store.close()
    store.close()
    reopened = Store(tmp_path / "lmdb")
    with reopened.read() as txn:
        assert txn.get(b"key", db=reopened.db(b"counters")) == b"6"
    reopened.close()
