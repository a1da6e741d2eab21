"""The intake (storage/intake.py): commits in an LMDB environment of their own, folded into the
store by a thread of their own. A commit never waits for a fold; every staged event reaches
the store exactly once, whatever stops the process and wherever."""

from __future__ import annotations

import shutil
import threading
import time
from datetime import timedelta

import msgspec

from appliance.config import load_settings
from appliance.models import Event, EventKind
from appliance.periods import day_bucket, day_from_number
from appliance.query.spec import Query
from appliance.runtime.appliance import Appliance

DEFERRED = {"FOOTFALL_INGEST_AGGREGATE_INTERVAL_MS": "3600000", "FOOTFALL_INGEST_AGGREGATE_MAX_EVENTS": "1000000"}


def _views(site, count: int, first: int = 0) -> list[Event]:
    now = time.time()
    return [Event(kind=EventKind.PAGEVIEW, site_id=site.id, timestamp=now, name="pageview", visitor_id=first + i + 1,
                  path=f"/p{i % 3}") for i in range(count)]


def _staged(appliance) -> int:
    """How many events the intake holds."""
    return sum(len(msgspec.msgpack.decode(encoded)) for _, encoded in appliance.intake.rows_from(0))


def _pageviews(appliance, domain: str) -> int:
    """The site's page views: all stamped during the test, so from yesterday (UTC) on, which
    counts them on either side of a midnight the test crosses."""
    today = day_from_number(day_bucket(time.time()))
    query = Query(site=appliance.sites.get(domain), date_from=today - timedelta(days=1), date_to=today)
    return appliance.stats.aggregate(query)["pageviews"]


def _crash(appliance) -> None:
    """The process ends: no fold, no flush, no close; every thread stops with it."""
    appliance.minute_jobs.stop()
    appliance.scheduler.stop()
    appliance.jobs.stop()
    appliance.writer.stop()
    appliance.folding.stop()
    appliance.store.env.close()  # no sync: what the process wrote is the page cache's
    appliance.intake.store.env.close()
    appliance._ownership.release()  # as the kernel does when the process dies


def test_a_commit_does_not_wait_for_a_fold_in_progress(make_appliance):
    appliance = make_appliance(**{name.removeprefix("FOOTFALL_").lower(): value for name, value in DEFERRED.items()})
    site = appliance.sites.add("ahead.test")
    appliance.writer.write_sync(_views(site, 3))
    folding, release = threading.Event(), threading.Event()

    def fold_slowly(txn):
        folding.set()
        release.wait(30)

    def fold() -> None:  # as a settled read's fold: the coordinator's mutex and the store's write transaction
        with appliance.coordinator.mutex:
            appliance.store.write(fold_slowly, durable=False)

    holder = threading.Thread(target=fold, daemon=True)
    holder.start()
    assert folding.wait(30)
    try:
        appliance.writer.write_sync(_views(site, 5, first=3), timeout=20)  # answered while the fold goes on
        assert holder.is_alive() and appliance.recorder.waiting == 8
    finally:
        release.set()
        holder.join(30)
    assert _pageviews(appliance, "ahead.test") == 8 and appliance.recorder.waiting == 0


def test_staged_events_are_folded_after_a_crash_once(tmp_path):
    settings = load_settings(environ=DEFERRED, data_dir=str(tmp_path / "data"))
    appliance = Appliance(settings).open()
    site = appliance.sites.add("crash.test")
    appliance.writer.write_sync(_views(site, 30))
    appliance.coordinator.flush()  # folded: in the store's log, still staged (the store not flushed since)
    appliance.writer.write_sync(_views(site, 20, first=30))  # staged only
    assert _staged(appliance) == 50
    _crash(appliance)

    with Appliance(settings) as reopened:
        assert _pageviews(reopened, "crash.test") == 50  # the 30 folded ones not folded again
        assert reopened.eventlog.next_sequence == 51
        # the first 30 went at once (the store held them); the 20 folded at the start wait for a flush
        assert _staged(reopened) == 20


def test_a_fold_the_disk_never_saw_is_folded_again(tmp_path):
    """A system crash can undo the store's folds since its last flush; the intake keeps their
    events until a flush has carried them, so they are folded again."""
    settings = load_settings(environ=DEFERRED, data_dir=str(tmp_path / "data"))
    appliance = Appliance(settings).open()
    site = appliance.sites.add("lost.test")
    appliance.writer.write_sync(_views(site, 10))
    appliance.store.sync()
    before_fold = tmp_path / "store-before-the-fold"
    shutil.copytree(tmp_path / "data" / "footfall.lmdb", before_fold)  # what the disk holds
    appliance.coordinator.flush()
    appliance.writer.write_sync(_views(site, 4, first=10))  # a commit after the fold: no trim yet
    assert _staged(appliance) == 14
    _crash(appliance)
    shutil.rmtree(tmp_path / "data" / "footfall.lmdb")
    shutil.copytree(before_fold, tmp_path / "data" / "footfall.lmdb")

    with Appliance(settings) as reopened:
        assert _pageviews(reopened, "lost.test") == 14
        assert reopened.eventlog.next_sequence == 15


def test_the_intake_drops_what_the_store_holds_durably(make_appliance):
    appliance = make_appliance(ingest_aggregate_interval_ms=3_600_000)
    site = appliance.sites.add("trim.test")
    appliance.writer.write_sync(_views(site, 6))
    appliance.coordinator.flush()
    appliance.writer.write_sync(_views(site, 2, first=6))
    assert _staged(appliance) == 8  # folded, but the store was not flushed
    appliance.recorder.flush_to_disk()  # as the folding thread does every second
    assert appliance.recorder.durable_through == 6
    appliance.writer.write_sync(_views(site, 1, first=8))  # the next commit trims
    assert _staged(appliance) == 3
    assert _pageviews(appliance, "trim.test") == 9


def test_a_commit_over_the_backlog_bound_waits_for_the_folding_thread(make_appliance):
    appliance = make_appliance(ingest_aggregate_slice_events=10)
    site = appliance.sites.add("backlog.test")
    appliance.recorder.max_waiting = 40
    seen: list[int] = []
    stage = appliance.intake.stage

    def watched(*args, **kwargs):
        seen.append(appliance.recorder.waiting)  # the backlog as a batch is staged
        return stage(*args, **kwargs)

    appliance.intake.stage = watched
    for n in range(6):  # each over the bound by itself
        appliance.writer.write_sync(_views(site, 50, first=50 * n))
    assert len(seen) == 6 and max(seen) < 40  # each batch waited until the backlog was below its bound
    assert _pageviews(appliance, "backlog.test") == 300


def test_a_deleted_sites_staged_events_are_not_folded_again(tmp_path):
    settings = load_settings(environ=DEFERRED, data_dir=str(tmp_path / "data"))
    appliance = Appliance(settings).open()
    kept, gone = appliance.sites.add("kept.test"), appliance.sites.add("gone.test")
    appliance.writer.write_sync(_views(kept, 3) + _views(gone, 4, first=3))
    appliance.delete_site("gone.test")
    assert _staged(appliance) == 7 and appliance.recorder.waiting == 3
    _crash(appliance)

    with Appliance(settings) as reopened:
        assert _pageviews(reopened, "kept.test") == 3
        assert reopened.sites.get("gone.test") is None
        with reopened.store.read() as txn:
            assert sum(1 for _ in txn.cursor(db=reopened.store.db(b"events"))) == 3


def test_switching_the_intake_off_and_on_keeps_one_sequence(tmp_path):
    counts = 0
    for round_, intake in enumerate(["true", "false", "true"]):
        settings = load_settings(environ={"FOOTFALL_INGEST_INTAKE": intake}, data_dir=str(tmp_path / "data"))
        with Appliance(settings) as appliance:
            site = appliance.sites.get("switch.test") or appliance.sites.add("switch.test")
            appliance.writer.write_sync(_views(site, 5 + round_, first=counts))
            counts += 5 + round_
            assert _pageviews(appliance, "switch.test") == counts
            assert appliance.eventlog.next_sequence == counts + 1
            assert len(appliance.read_events(site, 0, time.time() + 10)) == counts


def test_commits_go_to_the_store_while_it_lacks_room_for_what_the_intake_may_hold(make_appliance, tmp_path):
    """An event in the intake is acknowledged, so the store must be able to take it: on a disk
    too full for a fold and the backlog's bound, commits go to the store's own log, and what
    was staged before is folded first (a full disk then refuses new events, never loses one)."""
    deferred = {name.removeprefix("FOOTFALL_").lower(): value for name, value in DEFERRED.items()}
    roomy = make_appliance(**deferred)
    site = roomy.sites.add("roomy.test")
    roomy.writer.write_sync(_views(site, 3))
    assert _staged(roomy) == 3 and roomy.recorder.waiting == 3

    spare_mb = shutil.disk_usage(tmp_path).free >> 20
    cramped = make_appliance(storage_min_free_disk_mb=str(spare_mb + 1024), **deferred)
    site = cramped.sites.add("cramped.test")
    cramped.writer.write_sync(_views(site, 3))
    assert _staged(cramped) == 0  # in the store's event log and `pending`
    assert cramped.recorder.waiting == 3
    assert _pageviews(cramped, "cramped.test") == 3


def test_a_site_has_events_while_its_first_staged_events_are_folded(make_appliance, monkeypatch):
    """A staged event reaches the event log only when its fold commits: between the fold
    taking it off the queue and that commit the site still has events (the dashboard's
    onboarding check asks in that window)."""
    appliance = make_appliance(**{name.removeprefix("FOOTFALL_").lower(): value for name, value in DEFERRED.items()})
    site = appliance.sites.add("folding.test")
    appliance.writer.write_sync(_views(site, 2))
    assert appliance.has_events(site)
    seen: list[bool] = []
    fold = appliance.recorder._aggregate_in

    def asking_mid_fold(txn, batch, *args, **kwargs):
        asker = threading.Thread(target=lambda: seen.append(appliance.has_events(site)))  # a request's thread
        asker.start()
        asker.join(30)
        fold(txn, batch, *args, **kwargs)

    monkeypatch.setattr(appliance.recorder, "_aggregate_in", asking_mid_fold)
    appliance.coordinator.flush()
    assert seen == [True] and appliance.recorder.waiting == 0 and appliance.has_events(site)
