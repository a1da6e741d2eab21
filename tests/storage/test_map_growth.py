"""The LMDB map grows before it fills; when the disk cannot hold more, writes fail cleanly.

``Store.write`` must never let ``lmdb.MapFullError`` reach a caller: it grows the map ahead of
time and retries a transaction that still ran out of room. When ``min_free_disk_bytes`` leaves
no room to grow, writes raise :class:`StorageFullError`, the failed transaction leaves nothing
behind, and everything committed before stays readable (also after reopening).
"""

from __future__ import annotations

import os

import pytest

from storage import StorageFullError, Store
from storage.strings import StringTable

INITIAL = 64 << 10  # 64 KiB
VALUE = 2000  # bytes per value


def value_for(number: int) -> bytes:
    return number.to_bytes(4, "big") * (VALUE // 4)


def key_for(number: int) -> bytes:
    return b"k" + number.to_bytes(8, "big")


def put_range(store: Store, numbers: range) -> None:
    def transaction(txn):
        for number in numbers:
            txn.put(key_for(number), value_for(number), db=store.db(b"records"))

    store.write(transaction)


def assert_readable(store: Store, numbers) -> None:
    with store.read() as txn:
        for number in numbers:
            assert txn.get(key_for(number), db=store.db(b"records")) == value_for(number), number


def test_writes_far_beyond_the_initial_map_grow_it(tmp_path):
    store = Store(tmp_path / "db", initial_map_bytes=INITIAL, min_free_disk_bytes=0)
    try:
        assert store.map_usage()[1] == INITIAL
        # many small transactions: the map grows ahead of time (grow_when_fraction)
        for start in range(0, 2000, 20):
            put_range(store, range(start, start + 20))
        # one transaction of ~4 MiB, far bigger than the map was: MapFullError, grow, retry
        put_range(store, range(2000, 4000))
        used, map_size = store.map_usage()
        assert used > 100 * INITIAL
        assert map_size >= used
        assert_readable(store, range(4000))
        assert store.entries(b"records") == 4000
    finally:
        store.close()

    # reopening with the small initial size keeps the grown map (the file is bigger)
    reopened = Store(tmp_path / "db", initial_map_bytes=INITIAL, min_free_disk_bytes=0)
    try:
        assert reopened.map_usage()[1] >= reopened.disk_bytes()
        assert_readable(reopened, range(4000))
        put_range(reopened, range(4000, 4100))
        assert_readable(reopened, range(4100))
    finally:
        reopened.close()


def test_no_room_to_grow_raises_storage_full_and_keeps_committed_data(tmp_path):
    huge = 1 << 62  # more than any disk has free: the map may never grow
    store = Store(tmp_path / "db", initial_map_bytes=INITIAL, min_free_disk_bytes=huge)
    committed: list[int] = []
    error = None
    try:
        for number in range(1000):  # 64 KiB hold a few dozen 2 kB values: bounded loop
            try:
                put_range(store, range(number, number + 1))
            except StorageFullError as raised:
                error = raised
                failed = number
                break
            committed.append(number)
        assert error is not None, "64 KiB never filled up"
        assert committed, "not even one write fitted"
        assert "disk full" in str(error)
        assert store.map_usage()[1] == INITIAL
        # the failed transaction left nothing behind; earlier ones are intact
        with store.read() as txn:
            assert txn.get(key_for(failed), db=store.db(b"records")) is None
        assert_readable(store, committed)
        assert store.entries(b"records") == len(committed)

        # a transaction bigger than the whole map fails the same way (never MapFullError)
        with pytest.raises(StorageFullError):
            put_range(store, range(5000, 5100))
        with pytest.raises(StorageFullError):
            put_range(store, range(6000, 6001))
        assert store.entries(b"records") == len(committed)
        assert_readable(store, committed)
    finally:
        store.close()

    reopened = Store(tmp_path / "db", initial_map_bytes=INITIAL, min_free_disk_bytes=0)
    try:
        assert_readable(reopened, committed)
        assert reopened.entries(b"records") == len(committed)
        # with room on the disk again, writing resumes
        put_range(reopened, range(7000, 7100))
        assert_readable(reopened, [*committed, *range(7000, 7100)])
    finally:
        reopened.close()


def test_interned_strings_survive_a_map_full_retry(tmp_path):
    """A transaction rerun after MapFullError must not reuse ids allocated by the aborted run."""
    store = Store(tmp_path / "db", initial_map_bytes=INITIAL, grow_when_fraction=0.99, min_free_disk_bytes=0)
    strings = StringTable(store)
    texts = [f"/page/{number}/{os.urandom(8).hex()}/" + "x" * 200 for number in range(1500)]
    try:
        ids = store.write(lambda txn: [strings.intern(txn, text) for text in texts])
        strings.commit()
        assert store.map_usage()[1] > INITIAL  # the map did grow mid-transaction
        assert len(set(ids)) == len(texts)
        next_text = "/after-the-retry"
        next_id = store.write(lambda txn: strings.intern(txn, next_text))
        strings.commit()
        assert next_id not in ids
    finally:
        store.close()

    reopened = Store(tmp_path / "db", initial_map_bytes=INITIAL, min_free_disk_bytes=0)
    try:
        fresh = StringTable(reopened)  # no cache: every text comes from LMDB
        wrong = [text for text, string_id in zip(texts, ids, strict=True) if fresh.text(string_id) != text]
        assert not wrong, f"{len(wrong)} of {len(texts)} ids do not name their text after reopening"
        assert fresh.text(next_id) == next_text
        assert fresh.lookup(texts[0]) == ids[0]
    finally:
        reopened.close()


def test_map_growth_while_readers_read(tmp_path):
    """Resizing waits for open read transactions; readers never see an invalid transaction."""
    import threading

    from storage import Store

    store = Store(tmp_path / "concurrent", initial_map_bytes=64 << 10)
    db = store.db(b"records")
    errors: list[BaseException] = []
    stop = threading.Event()

    def reader() -> None:
        while not stop.is_set():
            try:
                with store.read() as txn:
                    for _ in txn.cursor(db=db):
                        pass
            except BaseException as error:  # noqa: BLE001 - any failure is the finding
                errors.append(error)
                return

    threads = [threading.Thread(target=reader) for _ in range(3)]
    for thread in threads:
        thread.start()
    first_size = store.map_usage()[1]
    try:
        for batch in range(60):
            store.write(
                lambda txn, batch=batch: [
                    txn.put(f"k{batch}-{i}".encode(), b"x" * 200, db=db) for i in range(100)
                ]
            )
    finally:
        stop.set()
        for thread in threads:
            thread.join()
    assert store.map_usage()[1] > first_size, "the map never grew: the test proved nothing"
    assert errors == []
    store.close()
