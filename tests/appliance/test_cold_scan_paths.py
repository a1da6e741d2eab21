"""The cold filtered path's shortcuts give what the plain arrays give: a stored block's visitor
codes and session hashes read for some rows only, and the visitor numbering of several blocks
(returning visitors mapped to their first block's code) in one sort."""

from __future__ import annotations

import random
import time
from datetime import date

import msgspec
import numpy as np
import pytest

from appliance.events.blocks import DAY_MS, Block, StaleBlock
from appliance.events.codec import STRING_FIELDS
from appliance.events.encoding import rows_to_columns, stored_columns
from appliance.events.frames import VisitorSpace
from appliance.events.preload import preload
from appliance.filters import parse_filters
from appliance.models import Event, EventKind
from appliance.query.spec import Query
from storage.columns import decode_array, encode_array
from storage.keys import pack_event_key

TIMEOUT_MS = 30 * 60_000
DAY = 20_000


def _stored_block(rng: random.Random, count: int) -> Block:
    encode = msgspec.msgpack.Encoder().encode
    times = sorted(rng.randrange(DAY * DAY_MS, (DAY + 1) * DAY_MS) for _ in range(count))
    entries = []
    for index, ts in enumerate(times):
        kind = rng.choice((1, 1, 1, 2, 3, 4))  # 4: engagement pings, which belong to no visit
        row = (kind, rng.randrange(1, 60) * 7919, 0, rng.choice((0, 0, rng.randrange(1, 2**64))),
               [rng.randrange(0, 40) for _ in STRING_FIELDS], [], 0, 0, 0)
        entries.append((pack_event_key(1, ts, index), encode(row)))
    encoded = {name: encode_array(array) for name, array in stored_columns(rows_to_columns(entries), DAY, TIMEOUT_MS).items()}
    return Block(1, DAY, count, {}, generation=1, loader=lambda name: decode_array(encoded[name]), timeout_ms=TIMEOUT_MS)


def test_visitor_codes_and_sessions_of_some_rows_equal_the_whole_columns():
    rng = random.Random(5)
    block = _stored_block(rng, 3000)
    rows = np.array(sorted(rng.sample(range(3000), 700)), np.int64)
    codes = block.visitor_codes_at(rows)
    sessions = block.sessions_at(rows)
    assert "visitor_codes" not in block.derived and "session" not in block.derived  # nothing joined for all rows
    assert np.array_equal(codes, block.visitor_codes()[rows])
    assert np.array_equal(sessions, block.scalar("session")[rows])
    assert (block.column_visit_rows()[rows] < 0).any()  # pings among the rows: read from v.ping
    assert np.array_equal(block.visitor_codes_at(rows), codes)  # once joined, read from the join


def _reference_canonical(dictionaries: list[np.ndarray]) -> np.ndarray:
    first: dict[int, int] = {}
    out = []
    code = 0
    for dictionary in dictionaries:
        for value in dictionary.tolist():
            out.append(first.setdefault(value, code))
            code += 1
    return np.array(out, np.int64)


class _Blocks:
    def __init__(self, dictionary: np.ndarray) -> None:
        self.dictionary = dictionary

    def visitor_dictionary(self) -> np.ndarray:
        return self.dictionary


def test_visitors_who_come_back_on_other_days_get_their_first_days_code():
    rng = np.random.default_rng(3)
    pool = rng.integers(0, 2**64 - 1, 4000, dtype=np.uint64)
    dictionaries = [np.unique(rng.choice(pool, int(rng.integers(0, 1500)))) for _ in range(12)]
    space = VisitorSpace([_Blocks(d) for d in dictionaries])
    expected = _reference_canonical(dictionaries)
    every = np.arange(space.size)
    assert np.array_equal(every if space.canonical is None else space.canonical, expected)
    codes = np.concatenate([space.codes(i, np.arange(len(d))) for i, d in enumerate(dictionaries)])
    assert space.count(codes) == len(np.unique(np.concatenate(dictionaries)))
    local = np.arange(len(dictionaries[5]))
    assert np.array_equal(space.hashes(space.codes(5, local)), dictionaries[5])
    apart = VisitorSpace([_Blocks(np.array([1, 5], np.uint64)), _Blocks(np.array([2, 9], np.uint64))])
    assert apart.canonical is None and apart.count(np.arange(4)) == 4  # no visitor on both days


def test_a_query_that_reads_closed_days_from_the_log_has_them_compacted_soon(make_appliance):
    """After a bulk load the closed days are in the log until the hourly job: the first filtered
    query builds their blocks from it, and asks the job runner to compact them (the next cold
    query reads them stored). The answers do not change; today's rows stay in the log."""
    appliance = make_appliance()
    appliance.columns.compact_read_rows = 50  # the days below are small; a real day's log is costly from 20,000 rows
    site = appliance.sites.add("bulk.example")
    now = time.time()
    today = int(now // 86400)
    events = [
        Event(kind=EventKind.PAGEVIEW, site_id=site.id, timestamp=min((today - 3 + i % 4) * 86400 + 3600 + i, now - 1), name="pageview",
              visitor_id=1000 + i % 37, path=f"/p/{i % 5}", country=("DE", "FR")[i % 2])
        for i in range(400)
    ]
    appliance.record_sync(events)
    query = Query(site=site, date_from=date.fromordinal(date(1970, 1, 1).toordinal() + today - 3),
                  date_to=date.fromordinal(date(1970, 1, 1).toordinal() + today), filters=parse_filters("country==DE"))
    with appliance.store.read() as txn:
        assert appliance.columns.blocks.days(txn, site.id) == []
    first = appliance.stats.aggregate(query)
    assert first["pageviews"] == 200
    assert appliance.jobs.compactions.wait(timeout=60), "the job runner never compacted the days the query read"
    closed = [day for day in range(today - 3, today + 1) if appliance.columns.is_closed(day)]
    with appliance.store.read() as txn:
        assert appliance.columns.blocks.days(txn, site.id) == closed
        assert appliance.columns.log_days(txn, site.id, 0, today) == [d for d in range(today - 3, today + 1) if d not in closed]
    appliance.stats.scans.forget()
    assert appliance.stats.aggregate(query) == first
    assert appliance.jobs.last_run == {}  # the hourly run (a minute after start) has not happened


def test_preloaded_columns_equal_the_lazily_loaded_ones_and_a_failed_load_is_raised():
    rng = random.Random(8)
    blocks = [_stored_block(rng, 500) for _ in range(3)]
    plain = [_stored_block(random.Random(8), 500) for _ in range(1)]
    preload(blocks, ("ts", "c.session", "kind"))
    assert all({"ts", "c.session", "kind"} <= set(block.columns) for block in blocks)
    assert np.array_equal(blocks[0].column("ts"), plain[0].column("ts"))
    assert np.array_equal(blocks[0].scalar("session"), plain[0].scalar("session"))

    def gone(name):
        raise StaleBlock(name)

    broken = Block(1, DAY, 10, {}, generation=2, loader=gone, timeout_ms=TIMEOUT_MS)
    with pytest.raises(StaleBlock):
        preload([blocks[1], broken], ("p.row", "ts"))
