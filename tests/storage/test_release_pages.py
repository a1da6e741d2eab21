"""The pages a read mapped, taken out of the process's resident set (storage/environment.py
``release_pages``): the compaction helper drops them after each chunk of a day's log rows it
decodes, inside its read transaction; the serving process releases its map once reads stop
(``Store.release_map``), while its writer may grow the map. The data read is the same
before and after, every time."""

from __future__ import annotations

import os
import random
import re
import threading

from storage import Store
from storage.environment import ReadOnlyStore

_VMA = re.compile(r"^[0-9a-f]+-[0-9a-f]+ ")
_RANDOM = random.Random(7)
_ROWS = {index.to_bytes(4, "big"): _RANDOM.randbytes(200) for index in range(50_000)}  # ~12 MB of pages


def _mapped_kb(path) -> int:
    """Resident kilobytes of this process's maps of the store's data file."""
    data, total, inside = os.path.realpath(path / "data.mdb"), 0, False
    with open("/proc/self/smaps") as smaps:
        for line in smaps:
            if _VMA.match(line):
                inside = line.rstrip("\n").endswith(" " + data)
            elif inside and line.startswith("Rss:"):
                total += int(line.split()[1])
    return total


def _filled(path) -> Store:
    store = Store(path)
    db = store.db(b"events")
    store.write(lambda txn: [txn.put(key, value, db=db) for key, value in _ROWS.items()])
    return store


def test_released_pages_leave_the_resident_set_and_the_transaction_reads_them_again(tmp_path):
    path = tmp_path / "lmdb"
    _filled(path).close()  # one environment per path and process: the reader opens it alone
    reader = ReadOnlyStore(path)
    try:
        with reader.read() as txn:
            assert dict(txn.cursor(db=reader.db(b"events"))) == _ROWS
            assert _mapped_kb(path) > 8_000
            assert reader.release_pages()
            assert _mapped_kb(path) < 1_000  # the meta pages and a tree's root a read touched since, at most
            assert dict(txn.cursor(db=reader.db(b"events"))) == _ROWS  # the same snapshot, mapped again
            assert _mapped_kb(path) > 8_000
    finally:
        reader.close()


def test_the_serving_store_releases_its_map_until_it_closes(tmp_path):
    path = tmp_path / "lmdb"
    store = _filled(path)
    db = store.db(b"events")
    with store.read() as txn:
        assert dict(txn.cursor(db=db)) == _ROWS
    assert _mapped_kb(path) > 8_000
    before = store.reads_begun
    assert store.release_map()
    assert _mapped_kb(path) < 1_000
    assert store.reads_begun == before  # a release is not a read
    with store.read() as txn:
        assert dict(txn.cursor(db=db)) == _ROWS
    assert store.reads_begun == before + 1
    store.close()
    assert not store.release_map()


def test_releases_while_the_writer_grows_the_map_lose_nothing(tmp_path):
    """The map moves when it grows: a release holds the resize off, so it never advises memory
    that took the old map's place. Releases on one thread, reads on another, while writes
    grow a 1 MB map past 16 MB: every read sees every row written before it."""
    store = Store(tmp_path / "lmdb", initial_map_bytes=1 << 20)
    db = store.db(b"events")
    done = threading.Event()
    problems: list[str] = []
    released = 0
    committed = [0]  # rows whose write has committed

    def release():
        nonlocal released
        while not done.is_set():
            released += store.release_map()

    def read():
        while not done.is_set():
            floor = committed[0]
            with store.read() as txn:
                rows = dict(txn.cursor(db=db))
            if len(rows) < floor or any(value != _ROWS[key] for key, value in rows.items()):
                problems.append(f"{len(rows)} rows read, {floor} committed before")

    threads = [threading.Thread(target=release), threading.Thread(target=read)]
    for thread in threads:
        thread.start()
    try:
        items = list(_ROWS.items())
        for at in range(0, len(items), 2_000):
            store.write(lambda txn, part=items[at:at + 2_000]: [txn.put(key, value, db=db) for key, value in part])
            committed[0] = at + 2_000
    finally:
        done.set()
        for thread in threads:
            thread.join()
    assert store.map_usage()[1] >= 16 << 20 and released > 0 and problems == []
    with store.read() as txn:
        assert dict(txn.cursor(db=db)) == _ROWS
    store.close()
