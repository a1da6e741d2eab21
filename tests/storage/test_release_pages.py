"""The pages a read mapped, taken out of the process's resident set (storage/environment.py
``release_pages``): the compaction helper drops them after each chunk of a day's log rows it
decodes, in the middle of its read transaction, which reads on as before."""

from __future__ import annotations

import os
import random
import re

from storage import Store
from storage.environment import ReadOnlyStore

_VMA = re.compile(r"^[0-9a-f]+-[0-9a-f]+ ")


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


def test_released_pages_leave_the_resident_set_and_the_transaction_reads_them_again(tmp_path):
    path = tmp_path / "lmdb"
    rng = random.Random(7)
    rows = {index.to_bytes(4, "big"): rng.randbytes(200) for index in range(50_000)}  # ~12 MB of pages
    writer = Store(path)
    db = writer.db(b"events")
    writer.write(lambda txn: [txn.put(key, value, db=db) for key, value in rows.items()])
    writer.close()  # one environment per path and process: the reader opens it alone

    reader = ReadOnlyStore(path)
    try:
        with reader.read() as txn:
            assert dict(txn.cursor(db=reader.db(b"events"))) == rows
            assert _mapped_kb(path) > 8_000
            reader.release_pages()
            assert _mapped_kb(path) < 1_000  # the meta pages and a tree's root a read touched since, at most
            assert dict(txn.cursor(db=reader.db(b"events"))) == rows  # the same snapshot, mapped again
            assert _mapped_kb(path) > 8_000
    finally:
        reader.close()

