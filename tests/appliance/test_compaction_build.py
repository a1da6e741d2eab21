"""A closed day's block built in the helper process (appliance/events/compaction_build.py):
the same block as built in process, the helper started for a run of compactions and gone after
it, and a helper that fails leaving the day to be built in process."""

from __future__ import annotations

import contextlib
import io
import os
import pickle
import sys
import time

import numpy as np
import pytest

from appliance import heap
from appliance.events import compaction_build, encoding
from appliance.events.compaction_build import build_day
from appliance.models import Event, EventKind
from appliance.pipes import send_message


def _history(site_id: int, day: int, count: int, now: float, offset: int = 0) -> list[Event]:
    return [
        Event(kind=EventKind.PAGEVIEW, site_id=site_id, timestamp=min(day * 86400 + 3600 + offset + i * 7, now - 1),
              name="pageview", visitor_id=3000 + i % 53, path=f"/p/{i % 11}", referrer_host=f"r{i % 5}.example",
              session_hint=f"s{i % 97}", engaged_ms=i % 13)
        for i in range(count)
    ]


def _closed_day(make_appliance, host: str, events: int, helper_events: int = 1):
    """An appliance (its job runner stopped: the tests compact) with ``events`` on a closed
    day of a new site; days of ``helper_events`` or more go through the helper."""
    appliance = make_appliance()
    appliance.jobs.stop()
    appliance.columns.helper_events = helper_events  # 20,000 events by default
    site = appliance.sites.add(host)
    now = time.time()
    day = int(now // 86400) - 3
    appliance.record_sync(_history(site.id, day, events, now))
    return appliance, appliance.columns, site, day


def _built_in_process(appliance, site_id: int, day: int):
    columns = appliance.columns
    return build_day(appliance.store, columns.blocks, appliance.eventlog, site_id, day, columns.timeout_ms,
                     appliance.store.read())


def _block(appliance, site_id: int, day: int) -> dict[str, np.ndarray]:
    blocks = appliance.columns.blocks
    with appliance.store.read() as txn:
        pointer = blocks.pointer(txn, site_id, day)
        return {name: blocks.get(txn, site_id, day, pointer.generation, name)
                for name in blocks.names(txn, site_id, day, pointer.generation)}


def test_the_helper_builds_the_block_the_process_builds(make_appliance):
    appliance, columns, site, day = _closed_day(make_appliance, "helper.example", 700)

    with columns.compaction_session():
        first = columns.build_helper.build(site.id, day, columns.timeout_ms)
        process = columns.build_helper._process
        assert first == _built_in_process(appliance, site.id, day)  # keys, encoded columns, count, generation
        assert first.count == 700 and first.generation is None and len(first.key_list()) == 700
        assert columns.compact(site.id, day, day) == 1  # the session's helper, not a second one
        assert columns.build_helper._process is process and process.poll() is None
    assert columns.build_helper._process is None and process.poll() == 0  # ended with the session
    assert columns.build_helper.builds == 2
    stored = _block(appliance, site.id, day)

    # late rows for the compacted day: the helper folds them into the stored block as the process does
    appliance.record_sync(_history(site.id, day, 40, time.time(), offset=20_000))
    again = _built_in_process(appliance, site.id, day)
    assert again.count == 740 and again.generation is not None
    with columns.compaction_session():
        assert columns.build_helper.build(site.id, day, columns.timeout_ms) == again
    assert columns.compact(site.id, day, day) == 1  # a session of its own
    assert columns.build_helper.builds == 4 and columns.build_helper._process is None
    assert len(_block(appliance, site.id, day)["ts"]) == 740 > len(stored["ts"])
    with appliance.store.read() as txn:
        assert columns.log_days(txn, site.id, 0, day) == []
        assert columns.day_count(txn, site.id, day) == 740


def test_a_small_day_is_built_in_process(make_appliance):
    appliance, columns, site, day = _closed_day(make_appliance, "small.example", 50, helper_events=20_000)
    assert columns.compact(site.id, day, day) == 1
    assert columns.build_helper.builds == 0  # under helper_events: no process started for it


def test_a_helper_that_fails_leaves_the_day_to_the_process(make_appliance, monkeypatch, caplog):
    appliance, columns, site, day = _closed_day(make_appliance, "broken.example", 300)
    expected = _built_in_process(appliance, site.id, day)
    # a helper that exits at once, answering nothing
    original = compaction_build.subprocess.Popen
    monkeypatch.setattr(compaction_build.subprocess, "Popen",
                        lambda command, **kw: original([sys.executable, "-c", "pass"], **kw))

    assert columns.compact(site.id, day, day) == 1
    assert columns.build_helper.builds == 0
    assert "the build helper stopped" in caplog.text
    assert len(_block(appliance, site.id, day)["ts"]) == expected.count == 300
    with appliance.store.read() as txn:
        assert columns.log_days(txn, site.id, 0, day) == []


def test_a_helper_error_is_reported_and_the_helper_goes_on(make_appliance):
    _, columns, site, day = _closed_day(make_appliance, "error.example", 120)
    with columns.compaction_session():
        with pytest.raises(compaction_build.HelperFailed, match="TypeError|ValueError"):
            columns.build_helper.build(site.id, day, "not a number")  # the day's timeout: its build fails
        assert columns.build_helper._process.poll() is None  # an error answer leaves it serving
        assert columns.build_helper.build(site.id, day, columns.timeout_ms).count == 120


def _maps_the_store(pid: int, data_dir) -> bool:
    with open(f"/proc/{pid}/maps") as maps:
        return any(line.rstrip().endswith(f"{data_dir}/data.mdb") for line in maps)


def test_the_helper_keeps_no_map_of_the_store_between_requests(make_appliance):
    """Every page of the map a request read leaves the helper's resident set with the request:
    the helper opens the store for each request and closes it after (a run of compactions
    otherwise kept the pages of every day it built mapped until its end)."""
    appliance, columns, site, day = _closed_day(make_appliance, "unmapped.example", 400)
    data_dir = appliance.store.path
    with columns.compaction_session():
        assert columns.build_helper.build(site.id, day, columns.timeout_ms).count == 400
        process = columns.build_helper._process
        assert not _maps_the_store(process.pid, data_dir)
        with pytest.raises(compaction_build.HelperFailed):
            columns.build_helper.build(site.id, day, "not a number")
        assert not _maps_the_store(process.pid, data_dir)  # closed after a failed request too
        assert columns.build_helper.build(site.id, day, columns.timeout_ms).count == 400
        assert not _maps_the_store(process.pid, data_dir)
        assert _maps_the_store(os.getpid(), data_dir)  # the process's own store, for contrast


def _environ(pid: int) -> dict[str, str]:
    with open(f"/proc/{pid}/environ", "rb") as environ:
        return dict(entry.decode().split("=", 1) for entry in environ.read().split(b"\0") if entry)


@pytest.mark.parametrize(("threshold", "kept"), [(heap.SERVER_MMAP_THRESHOLD, False), ("131072", True)])
def test_the_helper_runs_without_the_servers_fixed_mmap_threshold(make_appliance, monkeypatch, threshold, kept):
    """``footfall serve`` fixes glibc's mmap threshold for the server; the helper, whose builds
    it slowed ~1.3-1.45x, is started without it (an operator's own value is kept)."""
    monkeypatch.setenv("MALLOC_MMAP_THRESHOLD_", threshold)
    _, columns, site, day = _closed_day(make_appliance, f"threshold{kept}.example", 100)
    with columns.compaction_session():
        assert columns.build_helper.build(site.id, day, columns.timeout_ms).count == 100
        helper = _environ(columns.build_helper._process.pid)
    assert ("MALLOC_MMAP_THRESHOLD_" in helper) is kept
    assert helper.get("MALLOC_MMAP_THRESHOLD_", threshold) == threshold


def test_the_helper_trims_its_heap_after_each_request(make_appliance, monkeypatch):
    """What a build freed is given back before the helper waits for the next request
    (``malloc_trim``): the helper's loop run in this process over a closed store, its pipes
    in memory."""
    appliance, columns, site, day = _closed_day(make_appliance, "trimmed.example", 150)
    path, timeout_ms = appliance.store.path, columns.timeout_ms
    appliance.close()  # the helper's loop opens the store itself; one open environment a process
    requests = io.BytesIO()
    for request in (("build", site.id, day, timeout_ms), ("build", site.id, day, "not a number")):
        send_message(requests, pickle.dumps(request))
    requests.seek(0)
    answers = io.BytesIO()
    trims = []
    monkeypatch.setattr(compaction_build, "helper_pipes", lambda: (requests, answers))
    monkeypatch.setattr(heap, "_malloc_trim", lambda: lambda pad: trims.append(len(answers.getvalue())))
    assert compaction_build.main(path) == 0
    answers.seek(0)
    built = compaction_build._read_built(answers, compaction_build._receive(answers)[1])
    assert built.count == 150
    assert compaction_build._receive(answers)[0] == "error"
    assert trims == [trims[0], len(answers.getvalue())] and 0 < trims[0] < trims[1]  # after each answer


class _Guarded:
    """A read transaction that refuses every use once ``done`` holds something."""

    def __init__(self, txn, done: list) -> None:
        self._txn, self._done = txn, done

    def __getattr__(self, name):
        assert not self._done, f"the store was read ({name}) after the build said it was done"
        return getattr(self._txn, name)


def test_a_build_reads_nothing_after_it_says_the_store_is_read(make_appliance):
    """The helper closes its map when ``build_day`` says the day is read (before encoding):
    a build from log rows, and from a stored block with late rows, reads nothing after it."""
    appliance, columns, site, day = _closed_day(make_appliance, "read.example", 700, helper_events=10**9)
    for late in (False, True):
        if late:  # a stored block, then rows for its day: the block's columns are read too
            assert columns.compact(site.id, day, day) == 1
            appliance.record_sync(_history(site.id, day, 40, time.time(), offset=20_000))
        expected = _built_in_process(appliance, site.id, day)
        done: list[bool] = []

        @contextlib.contextmanager
        def snapshot(done=done):
            with appliance.store.read() as txn:
                yield _Guarded(txn, done)

        built = build_day(appliance.store, columns.blocks, appliance.eventlog, site.id, day, columns.timeout_ms,
                          snapshot(), read=lambda done=done: done.append(True))
        assert done == [True] and built == expected and built.count == (740 if late else 700)


def test_a_build_that_drops_its_mapped_pages_after_each_chunk_builds_the_same_block(make_appliance, monkeypatch):
    """The helper takes the store's pages out of its resident set after each chunk of log rows
    a build decodes (a read maps ~16 times the pages it reads), in the middle of the build's
    read transaction: a day read in seven chunks, its pages dropped after each, builds the
    block read in one."""
    appliance, columns, site, day = _closed_day(make_appliance, "dropped.example", 700, helper_events=10**9)
    expected = _built_in_process(appliance, site.id, day)
    monkeypatch.setattr(encoding, "CHUNK_ROWS", 100)
    chunks: list[int] = []

    def decoded():
        chunks.append(1)
        assert appliance.store.release_map()

    built = build_day(appliance.store, columns.blocks, appliance.eventlog, site.id, day, columns.timeout_ms,
                      appliance.store.read(), decoded=decoded)
    assert len(chunks) == 7 and built == expected and built.count == 700


def _day_columns(appliance, site_id: int, day: int) -> tuple[bytes, dict[str, np.ndarray]]:
    with appliance.store.read() as txn:
        keys, parts = encoding.chunked_columns(appliance.eventlog.scan(txn, site_id, day * 86_400_000, (day + 1) * 86_400_000))
    return keys, encoding.in_key_order(encoding.concatenate(parts))


def test_a_build_lets_each_string_fields_ids_go_once_coded_and_stores_the_same_arrays(make_appliance, monkeypatch):
    """A build holds each string field's codes, not its ids, from the moment it has coded it
    (the ids were a seed day's largest columns through the visits' sessionisation, the build's
    peak): the arrays stored are the same, and the ids are given back from the codes, equal."""
    appliance, columns, site, day = _closed_day(make_appliance, "coded.example", 700, helper_events=10**9)
    monkeypatch.setattr(encoding, "CHUNK_ROWS", 100)
    keys, plain = _day_columns(appliance, site.id, day)
    with appliance.store.read() as txn:
        assert keys == b"".join(key for key, _ in appliance.eventlog.scan(txn, site.id, 0, (day + 1) * 86_400_000))
    ids = {name: array.copy() for name, array in plain.items() if name.startswith("i.")}
    coded = encoding.CodedColumns(plain)
    expected = encoding.stored_columns(dict(plain), day, columns.timeout_ms)
    arrays = encoding.stored_columns(coded, day, columns.timeout_ms)
    assert arrays.keys() == expected.keys()
    assert all(np.array_equal(arrays[name], expected[name]) and arrays[name].dtype == expected[name].dtype
               for name in expected)
    assert not [name for name in dict.keys(coded) if name.startswith("i.")]  # every field's ids let go
    assert len(ids) == 25 and all(np.array_equal(coded[name], array) for name, array in ids.items())


def test_codes_that_do_not_give_back_a_fields_ids_are_refused():
    columns = encoding.CodedColumns({"i.path": np.array([5, 7, 5], np.uint32)})
    with pytest.raises(AssertionError, match="path"):
        columns.let_go("path", np.array([5, 7], np.uint32), np.array([0, 1, 1], np.uint8))
    columns.let_go("path", np.array([5, 7], np.uint32), np.array([0, 1, 0], np.uint8))
    assert columns["i.path"].tolist() == [5, 7, 5] and "i.path" not in dict.keys(columns)
