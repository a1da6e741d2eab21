"""The string table's in-memory maps stay within their bound and still answer every id."""

from __future__ import annotations

from storage.strings import StringTable


def test_string_cache_is_bounded_and_forgotten_texts_come_back_from_lmdb(store):
    strings = StringTable(store, max_cached=100)
    ids = {}
    for batch in range(10):
        def write(txn, batch=batch):
            strings.rollback()
            return {f"/page/{batch}/{i}": strings.intern(txn, f"/page/{batch}/{i}") for i in range(100)}

        ids.update(store.write(write))
        strings.commit()
        assert len(strings.known_ids) <= 100
    assert len(set(ids.values())) == 1000
    for text, string_id in ids.items():
        assert strings.text(string_id) == text
        assert strings.lookup(text) == string_id
        assert len(strings.known_ids) <= 100
    assert strings.text(0) == "" and strings.known_ids[""] == 0
    # a forgotten text interned again keeps its id
    again = store.write(lambda txn: strings.intern(txn, "/page/0/0"))
    strings.commit()
    assert again == ids["/page/0/0"]
