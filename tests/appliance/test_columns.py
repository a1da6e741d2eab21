"""Column blocks: the stored format, background compaction, and blocks as the closed days'
copy of record (the log rows leave; every reader gets the same events back)."""

from __future__ import annotations

import random
import threading
import time
import tracemalloc
from datetime import timedelta

import numpy as np
import pytest

from appliance.definitions.goals import GoalInput
from appliance.events import compaction_build, encoding
from appliance.events.blocks import StaleBlock, decode_visit_rows, encode_visit_rows
from appliance.filters import parse_filters
from appliance.models import Event, EventKind
from appliance.periods import local_today
from appliance.query.spec import Query
from appliance.runtime.jobs import compact_closed_days, purge_expired
from storage.columns import decode_array, encode_array


@pytest.mark.parametrize(
    ("array", "delta"),
    [
        (np.arange(1000, dtype=np.int64) * 37 + 1_700_000_000_000, True),
        (np.array([5, 3, 9, 9, 2**31], np.uint32), True),
        (np.random.default_rng(1).integers(0, 2**63, 500, dtype=np.int64).astype(np.uint64), False),
        (np.zeros(10_000, np.uint8), False),
        (np.zeros(0, np.int16), True),
        (np.array([-5, 7, -300], np.int32), True),
    ],
)
def test_arrays_round_trip(array, delta):
    decoded = decode_array(encode_array(array, delta=delta))
    assert decoded.dtype == array.dtype
    assert np.array_equal(decoded, array)


def test_compressible_columns_are_stored_compressed():
    codes = np.random.default_rng(2).choice(4, 100_000, p=[0.7, 0.2, 0.05, 0.05]).astype(np.uint8)
    assert len(encode_array(codes)) < 0.5 * codes.nbytes
    noise = np.random.default_rng(5).integers(0, 2**32, 10_000, dtype=np.uint64).astype(np.uint32)
    assert len(encode_array(noise)) > noise.nbytes  # kept raw: loads without a copy
    times = np.sort(np.random.default_rng(3).integers(0, 86_400_000, 100_000)).astype(np.int64)
    assert len(encode_array(times, delta=True)) < 0.3 * times.nbytes


def test_visit_rows_round_trip():
    rng = np.random.default_rng(4)
    for _ in range(50):
        visits = rng.integers(1, 40)
        rows = np.concatenate([np.full(rng.integers(1, 6), v) for v in range(visits)])
        first = {}
        order = rng.permutation(len(rows))
        shuffled = rows[order]
        # number visits by first appearance, as blocks do, and sprinkle pings (-1)
        numbering = {v: first.setdefault(v, len(first)) for v in shuffled.tolist()}
        visit_of = np.array([numbering[v] for v in shuffled.tolist()], np.int32)
        pings = rng.integers(0, len(visit_of) + 1, rng.integers(0, 5))
        visit_of = np.insert(visit_of, pings, -1)
        assert np.array_equal(decode_visit_rows(encode_visit_rows(visit_of)), visit_of)


def _events(site, rng, count, start, span):
    names = {EventKind.PAGEVIEW: "pageview", EventKind.CUSTOM: "Signup", EventKind.CONVERSION: "purchase"}
    out = []
    for _ in range(count):
        kind = rng.choice([EventKind.PAGEVIEW] * 5 + [EventKind.CUSTOM, EventKind.CONVERSION, EventKind.ENGAGEMENT])
        out.append(
            Event(
                kind=kind,
                site_id=site.id,
                timestamp=start + rng.random() * span,
                name=names.get(kind, "engagement"),
                visitor_id=rng.randint(1, 2**63),  # hashes: any 64-bit value
                user_hashed=rng.random() < 0.1,
                session_hint=rng.choice(["", "", "0123456789abcdef"]),
                path=rng.choice(["/", "/a", "/b/c", "/pricing"]),
                country=rng.choice(["DE", "FR", ""]),
                source=rng.choice(["", "Google"]),
                props={"plan": rng.choice(["pro", "free"])} if kind is EventKind.CUSTOM else {},
                revenue=1999 if kind is EventKind.CONVERSION else 0,
                currency="EUR" if kind is EventKind.CONVERSION else "",
                engaged_ms=1500 if kind is EventKind.ENGAGEMENT else 0,
                scroll_depth=40 if kind is EventKind.ENGAGEMENT else 0,
            )
        )
    # a few visitors that come back on later days (user ids: the same hash every day)
    for day in range(3):
        out.append(Event(kind=EventKind.PAGEVIEW, site_id=site.id, timestamp=start + day * 86400 + 60, name="pageview", visitor_id=77, path="/"))
    return sorted(out, key=lambda e: e.timestamp)


def _reports(appliance, site):
    today = local_today(site.timezone)
    out = []
    for text in ("country==DE", "page==/b/*;source!=Google", "event==purchase", "entry_page==/a"):
        query = Query(site=site, date_from=today - timedelta(days=7), date_to=today, filters=parse_filters(text))
        out.append(appliance.stats.aggregate(query))
        out.append(appliance.stats.timeseries(query))
        out.append(appliance.stats.breakdown(query, "page", 10))
        out.append(appliance.stats.conversions(query))
        out.append(appliance.stats.entry_pages(query, 10))
    return out


@pytest.fixture
def filled(appliance):
    site = appliance.sites.add("blocks.test", timezone="Europe/Berlin")
    rng = random.Random(5)
    appliance.record_sync(_events(site, rng, 4000, time.time() - 5 * 86400, 4 * 86400))
    return appliance, site


def test_compaction_moves_closed_days_out_of_the_log_and_changes_no_answer(filled):
    appliance, site = filled
    events_before = list(appliance.events(site, 0, time.time() + 10))
    reports_before = _reports(appliance, site)
    done = compact_closed_days(appliance)
    assert done["days"] >= 4
    # only rows of days not yet closed remain in the log
    today_start = (int(time.time() // 86400) - 1) * 86400
    with appliance.store.read() as txn:
        left = list(appliance.eventlog.scan(txn, site.id, 0, today_start * 1000))
    assert left == []
    appliance.stats.scans.forget()
    assert list(appliance.events(site, 0, time.time() + 10)) == events_before
    assert _reports(appliance, site) == reports_before
    assert compact_closed_days(appliance)["days"] == 0  # nothing left to do


def test_compaction_decodes_a_day_in_bounded_chunks_with_the_same_result(filled, monkeypatch):
    """A day's log rows are decoded a chunk at a time (a day of the seed's scale is ~437,000
    rows: never all its raw rows in memory at once), and the blocks answer as the log did."""
    appliance, site = filled
    events_before = list(appliance.events(site, 0, time.time() + 10))
    reports_before = _reports(appliance, site)
    decoded = []
    whole = encoding.rows_to_columns

    def counted(rows):
        decoded.append(len(rows))
        return whole(rows)

    monkeypatch.setattr(encoding, "CHUNK_ROWS", 97)
    monkeypatch.setattr(encoding, "rows_to_columns", counted)
    assert compact_closed_days(appliance)["days"] >= 4
    assert max(decoded) == 97 and sum(decoded) > 4 * 97  # several chunks a day
    appliance.stats.scans.forget()
    assert list(appliance.events(site, 0, time.time() + 10)) == events_before
    assert _reports(appliance, site) == reports_before


def test_late_events_join_a_compacted_day_and_are_folded_in_later(filled):
    appliance, site = filled
    compact_closed_days(appliance)
    today = local_today(site.timezone)
    query = Query(site=site, date_from=today - timedelta(days=7), date_to=today, filters=parse_filters("page==/late"))
    late = Event(kind=EventKind.PAGEVIEW, site_id=site.id, timestamp=time.time() - 3 * 86400, name="pageview", visitor_id=5, path="/late")
    appliance.record_sync([late])
    assert appliance.stats.aggregate(query)["pageviews"] == 1  # block + the late log row
    events = list(appliance.events(site, 0, time.time() + 10))
    assert compact_closed_days(appliance)["days"] == 1
    appliance.stats.scans.forget()
    assert appliance.stats.aggregate(query)["pageviews"] == 1
    assert list(appliance.events(site, 0, time.time() + 10)) == events


def test_pending_rows_are_never_compacted(make_appliance):
    appliance = make_appliance(ingest_intake="false")  # committed to the store's log and `pending`
    site = appliance.sites.add("pending.test")
    when = time.time() - 3 * 86400
    views = [Event(kind=EventKind.PAGEVIEW, site_id=site.id, timestamp=when + i, name="pageview", visitor_id=i + 1) for i in range(5)]
    appliance.writer.write_sync(views)  # durable, not aggregated yet
    columns = appliance.columns
    day = int(when // 86400)
    pending_db = appliance.store.db(b"pending")
    with appliance.store.read() as txn:
        waiting = [key for key, _ in txn.cursor(db=pending_db)]
    assert len(waiting) == 5
    # compaction settles first (aggregating), so these rows are no longer pending
    assert columns.compact_day(site.id, day)
    with appliance.store.read() as txn:
        assert all(appliance.eventlog.get(txn, key) is None for key in waiting)
    assert len(appliance.read_events(site, 0, time.time())) == 5


def _day_of_views(appliance, site, day, count):
    """``count`` aggregated pageviews a minute apart on UTC day ``day`` (closed)."""
    views = [
        Event(kind=EventKind.PAGEVIEW, site_id=site.id, timestamp=day * 86400 + 10 + i * 60, name="pageview", visitor_id=i + 1, path=f"/{i % 7}")
        for i in range(count)
    ]
    appliance.record_sync(views)
    return views


def _log_keys(appliance, site, day):
    with appliance.store.read() as txn:
        return [key for key, _ in appliance.eventlog.scan(txn, site.id, day * 86_400_000, (day + 1) * 86_400_000)]


def test_rows_purged_between_compactions_read_and_write_abort_the_write(appliance, monkeypatch):
    """The retention purge deletes log rows in a transaction of its own (an erasure cannot fall
    there: it holds the write mutex, which compaction's settled read needs, and the compaction
    lock): the compaction that read them must store nothing and delete nothing."""
    site = appliance.sites.add("purged.test")
    day = int(time.time() // 86400) - 3
    _day_of_views(appliance, site, day, 300)
    cutoff = day * 86400 + 9000  # mid-day: half the rows compaction read go
    expected = [e for e in appliance.read_events(site, 0, time.time()) if e.timestamp >= cutoff]
    assert len(expected) == 150
    columns = appliance.columns
    purge_before, check = columns.purge_before, compaction_build.check_round_trip
    log_purged = threading.Event()

    def blocks_next(*args):  # the purge's log transaction has committed
        log_purged.set()
        return purge_before(*args)  # waits for the compaction lock

    def purge_meanwhile(*args):  # after compaction's read, before its write transaction
        purge.start()
        assert log_purged.wait(60)
        return check(*args)

    purge = threading.Thread(target=purge_expired, args=(appliance, cutoff + site.retention_days * 86400))
    monkeypatch.setattr(columns, "purge_before", blocks_next)
    monkeypatch.setattr(compaction_build, "check_round_trip", purge_meanwhile)
    assert columns.compact_day(site.id, day) is False
    purge.join()
    monkeypatch.undo()
    with appliance.store.read() as txn:
        assert columns.blocks.days(txn, site.id) == []  # no block stored...
    assert len(_log_keys(appliance, site, day)) == 150  # ...and no row deleted but the purged
    assert appliance.read_events(site, 0, time.time()) == expected
    assert columns.compact_day(site.id, day)  # the next run reads the log again
    assert _log_keys(appliance, site, day) == []
    columns.forget()
    assert appliance.read_events(site, 0, time.time()) == expected


def test_a_row_gone_from_the_middle_of_the_day_aborts_the_whole_write(appliance, monkeypatch):
    """Whatever deletes a row compaction read (here a bare delete of one mid-day row), the rows
    its write had deleted before reaching that one come back: the transaction is aborted."""
    site = appliance.sites.add("gone.test")
    day = int(time.time() // 86400) - 3
    _day_of_views(appliance, site, day, 300)
    gone = _log_keys(appliance, site, day)[200]
    check = compaction_build.check_round_trip

    def delete_meanwhile(*args):
        appliance.store.write(lambda txn: txn.delete(gone, db=appliance.store.db(b"events")))
        return check(*args)

    monkeypatch.setattr(compaction_build, "check_round_trip", delete_meanwhile)
    assert appliance.columns.compact_day(site.id, day) is False
    monkeypatch.undo()
    with appliance.store.read() as txn:
        assert appliance.columns.blocks.days(txn, site.id) == []
    assert len(_log_keys(appliance, site, day)) == 299


def test_late_rows_between_a_compacted_days_rows_stay_in_the_log(make_appliance, monkeypatch):
    appliance = make_appliance(ingest_intake="false")  # with the intake late rows reach the log as they fold
    site = appliance.sites.add("late.test")
    day = int(time.time() // 86400) - 3
    _day_of_views(appliance, site, day, 300)
    # arriving after compaction's read, between its rows in key order, not aggregated yet
    late = [
        Event(kind=EventKind.PAGEVIEW, site_id=site.id, timestamp=day * 86400 + 40 + i * 600, name="pageview", visitor_id=1000 + i, path="/late")
        for i in range(30)
    ]
    check = compaction_build.check_round_trip

    def arrive_meanwhile(*args):
        appliance.writer.write_sync(late)  # durable, pending
        return check(*args)

    monkeypatch.setattr(compaction_build, "check_round_trip", arrive_meanwhile)
    assert appliance.columns.compact_day(site.id, day)
    monkeypatch.undo()
    with appliance.store.read() as txn:
        left = [appliance.eventlog.get(txn, key) for key in _log_keys(appliance, site, day)]
        pointer = appliance.columns.blocks.pointer(txn, site.id, day)
    assert len(left) == 30 and pointer.info["count"] == 300  # the late rows beside the block
    expected = sorted([(e.timestamp, e.visitor_id) for e in appliance.read_events(site, 0, time.time())])
    assert len(expected) == 330 and sum(1 for e in appliance.read_events(site, 0, time.time()) if e.path == "/late") == 30
    assert appliance.columns.compact_day(site.id, day)  # aggregated now, and folded in
    assert _log_keys(appliance, site, day) == []
    appliance.columns.forget()
    assert sorted([(e.timestamp, e.visitor_id) for e in appliance.read_events(site, 0, time.time())]) == expected


def test_a_goal_created_after_compaction_is_back_filled_from_blocks(filled):
    appliance, site = filled
    goal_input = GoalInput(name="Pro signup", kind="event", event="Signup", prop_key="plan", prop_value="pro")
    first = appliance.goals.create(site.id, goal_input)
    appliance.goals.wait()
    today = local_today(site.timezone)
    query = Query(site=site, date_from=today - timedelta(days=7), date_to=today)
    expected = appliance.goal_reports.report(query)
    appliance.goals.delete(site.id, first.id)
    compact_closed_days(appliance)
    appliance.goals.create(site.id, goal_input)
    appliance.goals.wait()
    got = appliance.goal_reports.report(query)
    assert [(r["conversions"], r["visitors"]) for r in got] == [(r["conversions"], r["visitors"]) for r in expected]
    assert got[0]["conversions"] > 0


def test_retention_trims_blocks_and_deleting_a_site_removes_them(filled):
    appliance, site = filled
    compact_closed_days(appliance)
    every = appliance.read_events(site, 0, time.time() + 10)
    cutoff = time.time() - 3.5 * 86400
    now = cutoff + site.retention_days * 86400
    removed = purge_expired(appliance, now)
    kept = appliance.read_events(site, 0, time.time() + 10)
    assert removed["events"] == len(every) - len(kept)
    assert kept == [e for e in every if e.timestamp >= int(cutoff * 1000) / 1000]
    columns = appliance.columns
    with appliance.store.read() as txn:
        assert columns.blocks.days(txn, site.id)
    appliance.delete_site(site.domain)
    with appliance.store.read() as txn:
        assert columns.blocks.days(txn, site.id) == []


def test_a_query_loads_only_the_columns_it_needs(filled):
    appliance, site = filled
    compact_closed_days(appliance)
    appliance.stats.scans.forget()
    today = local_today(site.timezone)
    query = Query(site=site, date_from=today - timedelta(days=7), date_to=today, filters=parse_filters("country==DE"))
    appliance.stats.aggregate(query)
    columns = appliance.columns
    loaded = set()
    for block in columns.cache.blocks():
        if block.stored:
            loaded |= set(block.columns)
    assert {"kind", "c.country", "d.country", "s.row"} <= loaded
    assert not loaded & {"c.browser", "revenue", "d.session", "c.session", "p.key", "seq"}


def test_old_generations_stay_readable_until_collected(filled):
    appliance, site = filled
    columns = appliance.columns
    compact_closed_days(appliance)
    day = int((time.time() - 3 * 86400) // 86400)
    block = columns.block(site.id, day)
    late = Event(kind=EventKind.PAGEVIEW, site_id=site.id, timestamp=day * 86400 + 100, name="pageview", visitor_id=5, path="/late")
    appliance.record_sync([late])
    assert columns.compact_day(site.id, day)
    assert len(block.column("c.browser")) == block.count  # the old generation, still readable
    assert columns.collect(site.id, now_ms=int(time.time() * 1000)) == 0  # too recent
    assert columns.collect(site.id, now_ms=int(time.time() * 1000) + 3600_000) >= 1
    with pytest.raises(StaleBlock):  # a reader that outlived the grace period is told so
        block.column("c.os")
    assert columns.block(site.id, day).generation != block.generation  # the next query reads the new one


def test_blocks_of_an_older_format_are_read_and_re_encoded(filled, monkeypatch):
    appliance, site = filled
    events = list(appliance.events(site, 0, time.time() + 10))
    reports = _reports(appliance, site)
    import appliance.events.columns as columnar

    monkeypatch.setattr(columnar, "FORMAT_VERSION", 2)  # as written before s.late / s.early
    compact_closed_days(appliance)
    monkeypatch.undo()
    columns = appliance.columns
    columns.forget()
    assert _reports(appliance, site) == reports  # visits rebuilt from the rows meanwhile
    assert compact_closed_days(appliance)["days"] >= 4  # re-encoded in the current format
    columns.forget()
    assert list(appliance.events(site, 0, time.time() + 10)) == events
    assert _reports(appliance, site) == reports


def test_a_mask_by_comparing_codes_equals_the_gather():
    from appliance.events.frames import _codes_in

    rng = np.random.default_rng(11)
    for dtype, size in ((np.uint8, 200), (np.uint16, 3000), (np.uint32, 70_000)):
        codes = rng.integers(0, size, 20_000).astype(dtype)
        for accepted_count in (0, 1, 2, 4, 5, 40, size):
            accepted = np.zeros(size, bool)
            accepted[rng.choice(size, accepted_count, replace=False)] = True
            assert np.array_equal(_codes_in(accepted, codes), accepted[codes])


def test_recompacting_a_day_holds_its_columns_about_once(appliance):
    """Compacting a day that has a block (late rows came for it; a bulk load's day is compacted
    again as its stragglers land) does not hold the stored block's codes, the merged columns,
    their sorted copy and the check's decoded copy all at once: the memory traced during it
    stays under 3x the day's columns (2.5x; it was 4.6x, and a 200,000-row day's took 127 MB:
    the heap's peak while the seed's month loads), and the day reads the same events after."""
    appliance.jobs.stop()  # this test's compactions are the only ones
    site = appliance.sites.add("recompact.test")
    day = int(time.time() // 86400) - 3
    rng = random.Random(5)

    def views(count, paths):
        return sorted(
            (Event(kind=EventKind.PAGEVIEW, site_id=site.id, timestamp=day * 86400 + rng.random() * 86400, name="pageview",
                   visitor_id=rng.randint(1, 2**62), path=f"/{rng.randrange(paths)}", country=rng.choice(["DE", "FR", ""]))
             for _ in range(count)),
            key=lambda event: event.timestamp,
        )

    appliance.record_sync(views(30_000, 300))
    assert appliance.columns.compact_day(site.id, day)
    appliance.record_sync(views(300, 20))  # late, between the block's rows
    expected = list(appliance.events(site, day * 86400, (day + 1) * 86400))
    appliance.columns.forget()
    tracemalloc.start()
    try:
        assert appliance.columns.compact_day(site.id, day)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    block = appliance.columns.block(site.id, day)
    columns = sum(array.nbytes for array in block.plain().values())
    assert block.count == 30_300 and list(appliance.events(site, day * 86400, (day + 1) * 86400)) == expected
    assert peak < 3 * columns, (peak, columns)
