"""Checkpoints of the open day (appliance/events/openday.py): a cold process decodes the stored
checkpoint and only the log rows after its key, and gets exactly the block, and the answers,
that reading every log row gives. Late rows before the key, a restart, a day closing, an
erasure, the retention purge, deleting a site and an older checkpoint format are covered."""

from __future__ import annotations

import random
import time

import numpy as np
import pytest

from appliance.events import openday
from appliance.filters import parse_filters
from appliance.models import Event, EventKind
from appliance.periods import day_from_number
from appliance.query.spec import Query
from appliance.runtime.jobs import compact_closed_days, purge_expired

DAY = 86_400
FILTERS = ("", "source==Google;device==Mobile", "country==DE", "page==/blog/*", "entry_page==/a;source!=Google")


def _events(site_id: int, rng: random.Random, visitors: list[int], first: float, last: float, count: int) -> list[Event]:
    out = []
    for _ in range(count):
        kind = rng.choice([EventKind.PAGEVIEW] * 6 + [EventKind.CUSTOM, EventKind.CONVERSION, EventKind.ENGAGEMENT])
        custom = kind is EventKind.CUSTOM
        out.append(Event(
            kind=kind, site_id=site_id, timestamp=first + rng.random() * (last - first),
            name={EventKind.PAGEVIEW: "pageview", EventKind.CUSTOM: "Signup", EventKind.CONVERSION: "purchase"}.get(kind, "engagement"),
            visitor_id=rng.choice(visitors), user_hashed=rng.random() < 0.1, session_hint=rng.choice(["", "", "0123456789abcdef"]),
            path=rng.choice(["/", "/a", "/blog/x", "/blog/y", "/pricing"]), country=rng.choice(["DE", "FR", ""]),
            source=rng.choice(["", "Google", "news.example"]), device=rng.choice(["Mobile", "Desktop"]),
            props={"plan": rng.choice(["pro", "free"])} if custom else {},
            revenue=1999 if kind is EventKind.CONVERSION else 0, currency="EUR" if kind is EventKind.CONVERSION else "",
            engaged_ms=1500 if kind is EventKind.ENGAGEMENT else 0, scroll_depth=40 if kind is EventKind.ENGAGEMENT else 0,
        ))
    return sorted(out, key=lambda event: event.timestamp)


def _answers(appliance, site, today: int, *, forget: bool = True) -> list:
    stats = appliance.stats
    if forget:  # every block is built again: today's from the checkpoint or the log
        stats.scans.forget()
    out = []
    for text in FILTERS:
        query = Query(site=site, date_from=day_from_number(today - 1), date_to=day_from_number(today), filters=parse_filters(text))
        out += [stats.aggregate(query), stats.timeseries(query), stats.breakdown(query, "page", 10)]
        out += [stats.entry_pages(query, 10), stats.exit_pages(query, 10), stats.conversions(query)]
    out.append([(key, event) for key, event in appliance.columns.events(site.id, (today - 1) * DAY * 1000, (today + 1) * DAY * 1000, str)])
    return out


def _plain(appliance, site, day: int) -> dict[str, np.ndarray]:
    appliance.columns.forget()
    return appliance.columns.block(site.id, day).plain()


def _without_checkpoint(appliance, site, day: int):
    """(block columns, answers) read from the log alone: the checkpoint is set aside, then put back."""
    open_days = appliance.columns.open_days
    checkpoints = open_days.checkpoints
    with appliance.store.read() as txn:
        pointer = checkpoints.pointer(txn, site.id, day)
        names = checkpoints.names(txn, site.id, day, pointer.generation)
        saved = {name: checkpoints.get(txn, site.id, day, pointer.generation, name) for name in names}
    appliance.store.write(lambda txn: open_days.drop(txn, site.id, day))
    resumed = open_days.resumed
    plain, answers = _plain(appliance, site, day), _answers(appliance, site, day)
    assert open_days.resumed == resumed
    appliance.store.write(lambda txn: checkpoints.put(txn, site.id, day, saved, pointer.info))
    return plain, answers


def _same(left: dict[str, np.ndarray], right: dict[str, np.ndarray]) -> None:
    assert left.keys() == right.keys()
    for name in left:
        assert left[name].dtype == right[name].dtype, name
        assert np.array_equal(left[name], right[name]), name


@pytest.fixture
def opened(make_appliance):
    appliance = make_appliance()
    appliance.jobs.stop()
    site = appliance.sites.add("checkpoint.test")
    appliance.visits.horizon = 0.0
    appliance.columns.open_days.checkpoint_rows = 1
    now = time.time()
    today = int(now // DAY)
    start = today * DAY
    rng = random.Random(7)
    visitors = list(range(1, 120))
    # yesterday's last hour and today's first part: visits cross midnight
    appliance.record_sync(_events(site.id, rng, visitors, start - 3600, start + (now - start) * 0.4, 1200))
    return appliance, site, today, now, rng, visitors


def test_a_checkpoint_gives_exactly_the_block_and_answers_of_the_log(opened):
    appliance, site, today, now, rng, visitors = opened
    open_days = appliance.columns.open_days
    start = today * DAY
    assert open_days.checkpoint(site.id, today)
    assert open_days.days(site.id) == [today]
    assert not open_days.checkpoint(site.id, today)  # nothing new: not taken again
    # rows after the checkpoint's key, of visitors whose visits began before it
    appliance.record_sync(_events(site.id, rng, visitors, start + (now - start) * 0.4, now - 1, 600))
    resumed = open_days.resumed
    plain, answers = _plain(appliance, site, today), _answers(appliance, site, today)
    assert open_days.resumed >= resumed + 2
    block = appliance.columns.block(site.id, today)
    assert appliance.columns.cache.holds(block) and block.cached_size == block.nbytes()
    appliance.columns.forget()
    fresh = appliance.columns.block(site.id, today)  # nothing decoded yet: its stored values count
    assert fresh.columns.pending_bytes > 0 and fresh.cached_size >= fresh.columns.pending_bytes
    fresh.scalar("ts")
    assert appliance.columns.cache.cached_bytes >= fresh.columns.pending_bytes + fresh.scalar("ts").nbytes
    dictionary, codes = np.unique(plain["visitor"], return_inverse=True)
    _same({"d": block.visitor_dictionary(), "c": block.visitor_codes()}, {"d": dictionary, "c": codes.astype(np.int64)})
    log_plain, log_answers = _without_checkpoint(appliance, site, today)
    _same(plain, log_plain)
    assert answers == log_answers
    # the block resumed (some columns made, others not) is extended in place by newer rows
    appliance.stats.scans.forget()
    _answers(appliance, site, today, forget=False)
    appliance.record_sync(_events(site.id, rng, visitors, now - 0.9, now - 0.5, 40))
    answers = _answers(appliance, site, today, forget=False)
    extended = appliance.columns.block(site.id, today)
    assert isinstance(extended.columns, openday.LazyColumns) and extended.last_key > block.last_key
    plain = extended.plain()
    log_plain, log_answers = _without_checkpoint(appliance, site, today)
    _same(plain, log_plain)
    assert answers == log_answers
    # a late row before the key: the checkpoint is not current, the log answers; taken again
    late = _events(site.id, rng, visitors, start + 1, start + (now - start) * 0.2, 3)
    appliance.record_sync(late)
    refused = open_days.refused
    plain, answers = _plain(appliance, site, today), _answers(appliance, site, today)
    assert open_days.refused > refused
    log_plain, log_answers = _without_checkpoint(appliance, site, today)
    _same(plain, log_plain)
    assert answers == log_answers
    assert open_days.checkpoint(site.id, today)
    resumed = open_days.resumed
    _same(_plain(appliance, site, today), log_plain)
    assert open_days.resumed == resumed + 1


def test_a_restarted_process_resumes_from_the_checkpoint(opened, make_appliance):
    appliance, site, today, now, rng, visitors = opened
    assert appliance.columns.open_days.checkpoint(site.id, today)
    appliance.record_sync(_events(site.id, rng, visitors, now - 30, now - 1, 200))
    expected, data_dir = _answers(appliance, site, today), appliance.settings.data_dir
    appliance.close()
    again = make_appliance(data_dir=data_dir)
    again.jobs.stop()
    assert _answers(again, site, today) == expected
    assert again.columns.open_days.resumed >= 1


def test_a_checkpoint_of_an_older_format_is_not_read_and_is_taken_again(opened, monkeypatch):
    appliance, site, today, now, rng, visitors = opened
    open_days = appliance.columns.open_days
    monkeypatch.setattr(openday, "CHECKPOINT_FORMAT", 0)
    assert open_days.checkpoint(site.id, today)
    monkeypatch.undo()
    resumed = open_days.resumed
    expected = _answers(appliance, site, today)
    assert open_days.resumed == resumed
    assert open_days.checkpoint(site.id, today)  # replaced in the current format
    assert _answers(appliance, site, today) == expected
    assert open_days.resumed > resumed


def test_compaction_supersedes_the_checkpoint_of_a_closed_day(opened):
    appliance, site, today, now, rng, visitors = opened
    open_days = appliance.columns.open_days
    closed = today - 3
    appliance.record_sync(_events(site.id, rng, visitors, closed * DAY + 10, closed * DAY + 80_000, 300))
    assert open_days.checkpoint(site.id, closed)
    query = Query(site=site, date_from=day_from_number(closed), date_to=day_from_number(closed), filters=parse_filters("country==DE"))
    appliance.stats.scans.forget()
    before = appliance.stats.aggregate(query)
    assert compact_closed_days(appliance)["days"] >= 1
    assert closed not in open_days.days(site.id)
    assert not open_days.checkpoint(site.id, closed)  # a day with a block gets none
    appliance.stats.scans.forget()
    assert appliance.stats.aggregate(query) == before


def test_erasure_purge_and_site_deletion_remove_checkpoints(opened):
    appliance, site, today, now, rng, visitors = opened
    open_days = appliance.columns.open_days
    alice = appliance.personal.visitor_of(site, "alice")
    appliance.record_sync([
        Event(kind=EventKind.PAGEVIEW, site_id=site.id, timestamp=today * DAY + 5, name="pageview", visitor_id=alice, user_hashed=True, path="/alice"),
    ])
    assert open_days.checkpoint(site.id, today)
    assert appliance.personal.erase(site, "alice").events == 1
    assert today not in open_days.days(site.id)
    assert open_days.checkpoint(site.id, today)
    appliance.stats.scans.forget()
    visitors_seen = appliance.columns.block(site.id, today).scalar("visitor")
    assert alice not in visitors_seen.tolist()
    purge_expired(appliance, now + site.retention_days * DAY)  # today is past retention
    assert open_days.days(site.id) == []
    assert open_days.checkpoint(site.id, today) is False
    appliance.record_sync(_events(site.id, rng, visitors, now - 30, now - 1, 50))
    assert open_days.checkpoint(site.id, today)
    appliance.delete_site(site.domain)
    assert open_days.days(site.id) == []


def test_the_job_runners_sweep_takes_the_checkpoint_once_enough_rows_wait(opened):
    appliance, site, today, now, rng, visitors = opened
    open_days = appliance.columns.open_days
    open_days.checkpoint_rows = 2000  # the fixture wrote 1,200 rows today and yesterday
    appliance.jobs.sweep()
    assert open_days.days(site.id) == []
    appliance.record_sync(_events(site.id, rng, visitors, now - 30, now - 1, 2000))
    appliance.jobs.sweep()
    assert open_days.days(site.id) == [today]
    assert open_days.stored_bytes(site.id, today) > 0


def test_a_checkpoint_taken_before_an_erasure_is_not_written_after_it(opened, monkeypatch):
    appliance, site, today, now, rng, visitors = opened
    open_days = appliance.columns.open_days
    alice = appliance.personal.visitor_of(site, "alice")
    appliance.record_sync([
        Event(kind=EventKind.PAGEVIEW, site_id=site.id, timestamp=today * DAY + 5, name="pageview", visitor_id=alice, user_hashed=True, path="/alice"),
    ])
    encode = openday.checkpoint_arrays

    def erase_meanwhile(columns):  # after the checkpoint's snapshot, before its write
        assert alice in columns["visitor"].tolist()
        assert appliance.personal.erase(site, "alice").events == 1
        return encode(columns)

    monkeypatch.setattr(openday, "checkpoint_arrays", erase_meanwhile)
    assert open_days.checkpoint(site.id, today) is False
    monkeypatch.undo()
    with appliance.store.read() as txn:
        assert open_days.checkpoints.days(txn, site.id) == []
    assert open_days.checkpoint(site.id, today)
    with appliance.store.read() as txn:
        pointer = open_days.checkpoints.pointer(txn, site.id, today)
        stored = open_days.checkpoints.get(txn, site.id, today, pointer.generation, "d.visitor")
    assert alice not in stored.tolist() and len(stored)


def test_closing_takes_the_checkpoint_the_next_process_resumes_from(opened, make_appliance):
    appliance, site, today, now, rng, visitors = opened
    open_days = appliance.columns.open_days
    assert open_days.days(site.id) == []
    expected, data_dir = _answers(appliance, site, today), appliance.settings.data_dir
    appliance.close()
    again = make_appliance(data_dir=data_dir)
    again.jobs.stop()
    assert again.columns.open_days.days(site.id) == [today]
    assert _answers(again, site, today) == expected
    assert again.columns.open_days.resumed >= 1
    with again.store.read() as txn:
        generation = again.columns.open_days.checkpoints.pointer(txn, site.id, today).generation
    again.record_sync(_events(site.id, rng, visitors, now - 30, now - 1, 20))
    again.close()  # fewer new rows than a checkpoint needs: it stays as it is
    third = make_appliance(data_dir=data_dir)
    with third.store.read() as txn:
        assert third.columns.open_days.checkpoints.pointer(txn, site.id, today).generation == generation


def test_a_checkpoint_is_extended_once_a_share_of_its_rows_wait(opened):
    appliance, site, today, now, rng, visitors = opened
    open_days = appliance.columns.open_days
    start = today * DAY
    assert open_days.checkpoint(site.id, today)
    with appliance.store.read() as txn:
        held = int(open_days.checkpoints.pointer(txn, site.id, today).info["count"])
    wanted = int(held * openday.EXTEND_SHARE + 0.999)
    later = _events(site.id, rng, visitors, start + (now - start) * 0.5, now - 1, wanted)
    appliance.record_sync(later[:-1])
    assert not open_days.checkpoint(site.id, today)  # fewer than the share: read from the log
    appliance.record_sync(later[-1:])
    assert open_days.checkpoint(site.id, today)
    with appliance.store.read() as txn:
        assert int(open_days.checkpoints.pointer(txn, site.id, today).info["count"]) == held + wanted
