"""The serving process releases the store's map once reads stop (appliance/heap.py
``MapReleaser``, polled by the job thread): once per quiet spell, never while reads go on."""

from __future__ import annotations

import time

from appliance.heap import MapReleaser
from storage import Store


def test_the_map_is_released_once_per_quiet_spell_and_never_while_reads_go_on(tmp_path):
    store = Store(tmp_path / "lmdb")
    now = [1000.0]
    releaser = MapReleaser(store, quiet_s=5.0, clock=lambda: now[0])
    try:
        assert not releaser.poll()  # the start's reads: not quiet for 5 s yet
        now[0] += 5.0
        assert releaser.poll() and releaser.releases == 1
        now[0] += 60.0
        assert not releaser.poll()  # nothing read since: nothing mapped to release again

        for _ in range(4):  # reads every 3 s: never 5 s quiet
            with store.read():
                pass
            assert not releaser.poll()
            now[0] += 3.0
        assert not releaser.poll()  # 3 s after the last read
        now[0] += 2.0
        assert releaser.poll() and releaser.releases == 2
    finally:
        store.close()
    now[0] += 60.0
    assert not releaser.poll() and releaser.releases == 2  # a closed store is not released


def test_writes_after_a_release_are_released_once_they_stop_too(tmp_path):
    """Writes map the pages they copy: after a release, writes with no read (the visits a
    load of history left open, closing) are released once neither has come for 5 s; while
    writes go on every second they are kept, and the reads' own rule stays as it was."""
    store = Store(tmp_path / "lmdb")
    now = [1000.0]
    releaser = MapReleaser(store, quiet_s=5.0, clock=lambda: now[0])
    db = store.db(b"visits")
    try:
        now[0] += 5.0
        assert releaser.poll() and releaser.releases == 1
        for second in range(8):  # a write every second, no read: its pages are in use
            store.write(lambda txn, second=second: txn.put(b"k%d" % second, b"v", db=db))
            now[0] += 1.0
            assert not releaser.poll()
        now[0] += 4.0
        assert not releaser.poll()  # 4 s (and a poll's second) since the last write
        now[0] += 1.0
        assert releaser.poll() and releaser.releases == 2
        now[0] += 60.0
        assert not releaser.poll()  # nothing since: nothing to release

        store.write(lambda txn: txn.put(b"late", b"v", db=db))
        with store.read():  # a read and a write: the reads' rule, once, 5 s after the read
            pass
        assert not releaser.poll()
        now[0] += 5.0
        assert releaser.poll() and releaser.releases == 3
        now[0] += 60.0
        assert not releaser.poll()  # that write was released with the reads' pages
    finally:
        store.close()


def test_the_job_thread_releases_the_map_once_reads_stop(make_appliance):
    appliance = make_appliance()
    releaser = appliance.jobs.map_releaser
    releaser.quiet_s = 0.0
    deadline = time.monotonic() + 30
    while releaser.releases == 0 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert releaser.releases >= 1


def test_the_site_registrys_checks_under_tracker_traffic_are_not_reads_that_hold_the_map(make_appliance):
    """The registry looks for other processes' site changes every second while the tracker
    is busy: one record, read light, so a busy tracker does not keep the map from release."""
    appliance = make_appliance()
    appliance.jobs.stop()
    appliance.sites.add("light.example")
    before = appliance.store.reads_begun
    assert appliance.sites.reload_if_changed() is False  # read, nothing changed
    assert appliance.store.reads_begun == before
    with appliance.store.read():
        pass
    assert appliance.store.reads_begun == before + 1
