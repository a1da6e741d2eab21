"""The event log: time-ordered per site, half-open time ranges, a sequence that survives restarts."""

from __future__ import annotations

import pytest

from storage import Store
from storage.eventlog import EventLog, MissingRow
from storage.keys import pack_event_key

T0 = 1_772_380_800_000  # 2026-03-01T16:00:00Z in milliseconds


def append(store, log: EventLog, entries) -> list[bytes]:
    keys = store.write(lambda txn: log.append(txn, entries))
    log.committed()
    return keys


def scan(store, log: EventLog, site: int, start: int, end: int) -> list[tuple[int, int, bytes]]:
    with store.read() as txn:
        return [
            (*EventLog.split_key(key)[:2], value) for key, value in log.scan(txn, site, start, end)
        ]


def test_scan_returns_a_sites_events_in_the_half_open_time_range_in_time_order(store):
    log = EventLog(store)
    append(
        store,
        log,
        [
            (1, T0 + 30, b"c"),
            (1, T0 + 10, b"a"),
            (2, T0 + 20, b"other site"),
            (1, T0 + 20, b"b"),
            (1, T0 + 40, b"d"),
            (3, T0 + 15, b"third site"),
        ],
    )

    assert scan(store, log, 1, T0 + 10, T0 + 40) == [
        (1, T0 + 10, b"a"),
        (1, T0 + 20, b"b"),
        (1, T0 + 30, b"c"),
    ]
    assert scan(store, log, 1, 0, 2**63) == [
        (1, T0 + 10, b"a"),
        (1, T0 + 20, b"b"),
        (1, T0 + 30, b"c"),
        (1, T0 + 40, b"d"),
    ]
    assert scan(store, log, 2, 0, 2**63) == [(2, T0 + 20, b"other site")]
    assert scan(store, log, 1, T0 + 11, T0 + 20) == []
    assert scan(store, log, 4, 0, 2**63) == []


def test_append_returns_keys_that_find_each_value(store):
    log = EventLog(store)
    entries = [(1, T0, b"first"), (1, T0, b"same millisecond"), (2, T0, b"elsewhere")]

    keys = append(store, log, entries)

    assert len(set(keys)) == 3
    with store.read() as txn:
        assert [log.get(txn, key) for key in keys] == [value for _, _, value in entries]
    assert [EventLog.split_key(key)[:2] for key in keys] == [(1, T0), (1, T0), (2, T0)]


def test_the_sequence_persists_across_reopen_so_keys_never_collide(tmp_path):
    path = tmp_path / "lmdb"
    store = Store(path)
    first_keys = append(
        store, EventLog(store), [(1, T0, b"before restart %d" % i) for i in range(3)]
    )
    store.close()

    store = Store(path)
    log = EventLog(store)
    second_keys = append(store, log, [(1, T0, b"after restart %d" % i) for i in range(3)])

    assert not set(first_keys) & set(second_keys)
    assert store.entries(b"events") == 6
    values = [value for _, _, value in scan(store, log, 1, T0, T0 + 1)]
    assert sorted(values) == sorted(
        [b"before restart %d" % i for i in range(3)] + [b"after restart %d" % i for i in range(3)]
    )
    store.close()


def test_a_rolled_back_append_leaves_nothing_and_breaks_nothing(store):
    log = EventLog(store)
    append(store, log, [(1, T0, b"kept")])

    def fails(txn):
        log.append(txn, [(1, T0, b"lost 1"), (1, T0, b"lost 2")])
        raise RuntimeError("the commit failed")

    with pytest.raises(RuntimeError):
        store.write(fails)
    log.rolled_back()
    append(store, log, [(1, T0, b"next")])

    assert [value for _, _, value in scan(store, log, 1, T0, T0 + 1)] == [b"kept", b"next"]


def test_an_append_retried_after_growing_the_map_keeps_every_entry(tmp_path):
    store = Store(tmp_path / "lmdb", initial_map_bytes=1 << 20)
    log = EventLog(store)
    attempts = []
    entries = [(1, T0 + i, bytes([i % 256]) * 600) for i in range(3000)]

    def write(txn):
        attempts.append(1)
        return log.append(txn, entries)

    keys = store.write(write)
    log.committed()
    more = append(store, log, [(1, T0, b"after")])

    assert len(attempts) > 1, "the map should have had to grow"
    assert len(set(keys + more)) == 3001
    assert store.entries(b"events") == 3001
    store.close()


def test_delete_range_removes_only_the_sites_events_in_the_range(store):
    log = EventLog(store)
    append(
        store,
        log,
        [(site, T0 + offset, b"%d@%d" % (site, offset)) for site in (1, 2) for offset in range(10)],
    )

    removed = store.write(lambda txn: log.delete_range(txn, 1, T0 + 3, T0 + 7))

    assert removed == 4
    assert [timestamp - T0 for _, timestamp, _ in scan(store, log, 1, 0, 2**63)] == [
        0,
        1,
        2,
        7,
        8,
        9,
    ]
    assert len(scan(store, log, 2, 0, 2**63)) == 10
    assert store.write(lambda txn: log.delete_range(txn, 1, T0 + 3, T0 + 7)) == 0


def test_delete_range_of_a_whole_site_at_the_end_of_the_log(store):
    log = EventLog(store)
    append(store, log, [(1, T0, b"one"), (2, T0, b"two"), (2, T0 + 5, b"two again")])

    assert store.write(lambda txn: log.delete_range(txn, 2, 0, 2**63 - 1)) == 2
    assert store.write(lambda txn: log.delete_range(txn, 9, 0, 2**63 - 1)) == 0
    assert scan(store, log, 1, 0, 2**63) == [(1, T0, b"one")]
    assert scan(store, log, 2, 0, 2**63) == []


@pytest.mark.parametrize("expected", [0, 1, 3, 4, 5, 100])
@pytest.mark.parametrize("size", [1, 2, 3, 4, 5, 100])
def test_chunks_of_any_size_join_to_the_scan(store, size, expected):
    log = EventLog(store)
    append(store, log, [(1, T0 + t, b"x%d" % t) for t in (5, 10, 10, 20, 30)] + [(2, T0 + 15, b"y"), (1, T0 + 99, b"z")])
    with store.read() as txn:
        for site, start, end in (
            (1, T0, T0 + 31), (1, T0 + 10, T0 + 20), (1, T0, T0 + 1000), (1, T0 + 40, T0 + 50),
            (1, T0 + 1000, T0 + 2000), (2, T0, T0 + 1000), (3, T0, T0 + 1000),
        ):
            chunks = list(log.chunks(txn, site, start, end, size, expected))
            assert all(0 < len(chunk) <= size for chunk in chunks)
            assert [row for chunk in chunks for row in chunk] == list(log.scan(txn, site, start, end))


def test_delete_rows_deletes_exactly_its_keys_or_none(store):
    log = EventLog(store)
    keys = append(store, log, [(1, T0 + offset, b"%d" % offset) for offset in range(0, 100, 2)])
    between = append(store, log, [(1, T0 + offset, b"late") for offset in range(1, 100, 10)])  # later rows, interleaved
    append(store, log, [(2, T0, b"other site")])
    missing = keys[30]
    store.write(lambda txn: txn.delete(missing, db=store.db(b"events")))  # purged meanwhile
    with pytest.raises(MissingRow):
        store.write(lambda txn: log.delete_rows(txn, keys))  # raises past deleted rows: aborted
    assert len(scan(store, log, 1, 0, 2**63)) == 49 + 10
    store.write(lambda txn: log.delete_rows(txn, [key for key in keys if key != missing]))
    assert [value for _, _, value in scan(store, log, 1, 0, 2**63)] == [b"late"] * len(between)
    assert len(scan(store, log, 2, 0, 2**63)) == 1
    with pytest.raises(MissingRow):  # past the end of the log
        store.write(lambda txn: log.delete_rows(txn, [pack_event_key(3, T0, 1)]))
