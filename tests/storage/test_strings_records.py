"""String interning (stable ids, rollback, the key-size limit) and metadata records with id sequences."""

from __future__ import annotations

import pytest

from storage import Store
from storage.records import Records
from storage.strings import StringTable

LMDB_MAX_KEY_BYTES = 511


def intern_all(store, strings: StringTable, texts: list[str]) -> list[int]:
    ids = store.write(lambda txn: [strings.intern(txn, text) for text in texts])
    strings.commit()
    return ids


# -- strings -----------------------------------------------------------------------------


def test_the_empty_string_is_id_zero_and_new_strings_get_new_ids(store):
    strings = StringTable(store)

    ids = intern_all(store, strings, ["", "/pricing", "Firefox", "/pricing"])

    assert ids[0] == 0
    assert ids[1] == ids[3] != ids[2]
    assert 0 not in ids[1:]
    assert strings.text(ids[1]) == "/pricing"
    assert strings.lookup("Firefox") == ids[2]
    assert strings.lookup("never interned") is None


def test_ids_are_stable_across_reopen(tmp_path):
    path = tmp_path / "lmdb"
    texts = ["/", "/blog/hello", "Safari", "Deutschland 🇩🇪"]
    store = Store(path)
    ids = intern_all(store, StringTable(store), texts)
    store.close()

    store = Store(path)
    strings = StringTable(store)

    assert [strings.lookup(text) for text in texts] == ids
    assert [strings.text(string_id) for string_id in ids] == texts
    again = intern_all(store, strings, [*texts, "new after restart"])
    assert again[:4] == ids
    assert again[4] not in ids
    assert store.entries(b"strings") == 5
    store.close()


def test_rollback_forgets_ids_of_an_aborted_transaction(store):
    strings = StringTable(store)
    [kept] = intern_all(store, strings, ["kept"])

    def fails(txn):
        pending = strings.intern(txn, "aborted")
        assert strings.intern(txn, "aborted") == pending  # same id within the transaction
        raise RuntimeError("the commit failed")

    with pytest.raises(RuntimeError):
        store.write(fails)
    strings.rollback()

    assert strings.lookup("aborted") is None
    [other, aborted] = intern_all(store, strings, ["other", "aborted"])
    assert len({kept, other, aborted}) == 3
    assert strings.text(other) == "other"
    assert strings.text(aborted) == "aborted"


def test_interning_in_a_transaction_retried_after_growing_the_map(tmp_path):
    # Store.write reruns the function after MapFullError: ids handed out by the aborted
    # attempt were never stored and must not be reused by the retry.
    path = tmp_path / "lmdb"
    store = Store(path, initial_map_bytes=1 << 20)
    strings = StringTable(store)
    texts = [f"/page/{number:05d}/" + "x" * 400 for number in range(4000)]
    attempts = []

    def write(txn):
        attempts.append(1)
        return [strings.intern(txn, text) for text in texts]

    ids = store.write(write)
    strings.commit()
    store.close()

    assert len(attempts) > 1, "the map should have had to grow"
    assert len(set(ids)) == len(texts)
    store = Store(path)
    reopened = StringTable(store)
    assert [reopened.text(string_id) for string_id in ids] == texts
    store.close()


def test_long_strings_are_truncated_under_the_lmdb_key_limit(tmp_path):
    path = tmp_path / "lmdb"
    texts = ["/" + "a" * 5000, "/" + "é" * 1000, "/" + "🦶" * 400]
    store = Store(path)
    strings = StringTable(store)
    ids = intern_all(store, strings, texts)
    before_restart = [strings.text(string_id) for string_id in ids]

    with store.read() as txn:
        stored_keys = [bytes(key) for key, _ in txn.cursor(db=store.db(b"strings"))]
    assert len(stored_keys) == 3
    assert all(len(key) < LMDB_MAX_KEY_BYTES for key in stored_keys)
    for key in stored_keys:
        key.decode("utf-8")  # cut on a character boundary
    for text, stored in zip(texts, before_restart, strict=True):
        assert text.startswith(stored)
        assert len(stored.encode()) < LMDB_MAX_KEY_BYTES
    assert [strings.lookup(text) for text in texts] == ids
    store.close()

    store = Store(path)
    reopened = StringTable(store)
    assert [reopened.text(string_id) for string_id in ids] == before_restart
    assert [reopened.lookup(text) for text in texts] == ids
    store.close()


# -- records -----------------------------------------------------------------------------


def test_next_id_counts_up_per_name_and_survives_reopen(tmp_path):
    path = tmp_path / "lmdb"
    store = Store(path)
    records = Records(store)

    assert [store.write(lambda txn: records.next_id(txn, "site")) for _ in range(3)] == [1, 2, 3]
    assert store.write(lambda txn: records.next_id(txn, "user")) == 1
    store.close()

    store = Store(path)
    records = Records(store)
    assert store.write(lambda txn: records.next_id(txn, "site")) == 4
    assert store.write(lambda txn: records.next_id(txn, "user")) == 2
    store.close()


def test_next_id_of_an_aborted_transaction_is_handed_out_again(store):
    records = Records(store)
    assert store.write(lambda txn: records.next_id(txn, "site")) == 1

    def fails(txn):
        records.next_id(txn, "site")
        raise RuntimeError

    with pytest.raises(RuntimeError):
        store.write(fails)

    assert store.write(lambda txn: records.next_id(txn, "site")) == 2


def test_records_by_kind(store):
    records = Records(store)

    def fill(txn):
        records.put(txn, "site", "example.com", b"1")
        records.put(txn, "site", "example.org", b"2")
        records.put(txn, "sites", "not-a-site", b"x")
        records.put(txn, "salt", "20513", b"s")

    store.write(fill)

    assert records.get("site", "example.org") == b"2"
    assert records.get("site", "missing") is None
    assert list(records.scan("site")) == [("example.com", b"1"), ("example.org", b"2")]
    assert store.write(lambda txn: records.delete(txn, "site", "example.com"))
    assert not store.write(lambda txn: records.delete(txn, "site", "example.com"))
    assert list(records.scan("site")) == [("example.org", b"2")]
    with store.read() as txn:
        assert list(records.scan("salt", txn)) == [("20513", b"s")]
