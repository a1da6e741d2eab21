"""Closing the store while another thread writes: the close waits for that write to end.

py-lmdb's close marks every transaction closed and then waits for the thread owning the write
transaction to abort it; an abort of a transaction already marked closed does nothing, so a
close under a write whose failure is kept (an exception's traceback holds the transaction)
never returned. ``Store.close`` takes the write lock first.
"""

from __future__ import annotations

import threading

from storage import Store


def test_a_close_during_another_threads_write_waits_for_it_and_the_write_commits(tmp_path):
    store = Store(tmp_path / "lmdb")
    db = store.db(b"records")
    inside, go_on = threading.Event(), threading.Event()
    failures: list[BaseException] = []  # kept, with their tracebacks, as a Future would keep them

    def fn(txn):
        txn.put(b"first", b"1", db=db)
        inside.set()
        go_on.wait(5)
        txn.put(b"second", b"2", db=db)

    def write():
        try:
            store.write(fn)
        except BaseException as error:  # noqa: BLE001 - kept to hold the transaction alive
            failures.append(error)

    writer = threading.Thread(target=write, daemon=True)
    writer.start()
    assert inside.wait(5)
    closer = threading.Thread(target=store.close, daemon=True)
    closer.start()
    closer.join(0.2)
    assert closer.is_alive()  # waiting for the write, which has not ended
    go_on.set()
    closer.join(10)
    assert not closer.is_alive(), "close hung under another thread's write transaction"
    writer.join(5)
    assert failures == []
    reopened = Store(tmp_path / "lmdb")
    try:
        with reopened.read() as txn:
            assert txn.get(b"first", db=reopened.db(b"records")) == b"1"
            assert txn.get(b"second", db=reopened.db(b"records")) == b"2"
    finally:
        reopened.close()
