"""The serving process releases the store's map (appliance/heap.py ``MapReleaser``, polled by
the job thread): once per quiet spell after reads stop, and while reads go on only once more
than a bound of pages was mapped since the last release, at most once per interval."""

from __future__ import annotations

import random
import time

import pytest

from appliance.heap import MapReleaser, mapped_file_bytes
from storage import Store


def test_the_map_is_released_once_per_quiet_spell_and_never_while_reads_go_on(tmp_path):
    store = Store(tmp_path / "lmdb")
    now = [1000.0]
    releaser = MapReleaser(store, quiet_s=5.0, bound_bytes=0, clock=lambda: now[0])
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


class _Map:
    """A store's read counter and map, and the process's mapped file pages (50 MB besides)."""

    def __init__(self) -> None:
        self.reads_begun, self.mapped = 0, 50 << 20

    def release_map(self) -> bool:
        self.mapped = 50 << 20
        return True


def test_while_reads_go_on_the_map_is_released_once_more_than_the_bound_was_mapped():
    store, now = _Map(), [1000.0]
    releaser = MapReleaser(store, quiet_s=5.0, bound_bytes=100 << 20, bound_interval_s=10.0,
                           clock=lambda: now[0], mapped=lambda: store.mapped)

    def read_and_poll(seconds: float, mapping_mb: int) -> bool:
        store.reads_begun += 1
        now[0] += seconds
        store.mapped += mapping_mb << 20
        return releaser.poll()

    assert not releaser.poll()  # the floor: 50 MB mapped (the libraries, the start's reads)
    assert [read_and_poll(2.0, 40) for _ in range(2)] == [False, False]  # 80 MB over it: within the bound
    assert read_and_poll(2.0, 40)  # 120 MB over it
    assert (releaser.releases, releaser.bound_releases, store.mapped) == (1, 1, 50 << 20)
    assert [read_and_poll(2.0, 60) for _ in range(2)] == [False, False]  # 120 MB over it, but 4 s since
    assert [read_and_poll(2.0, 0) for _ in range(2)] == [False, False]  # 8 s
    assert read_and_poll(2.0, 0)  # 10 s: released again
    assert (releaser.releases, releaser.bound_releases) == (2, 2)
    assert [read_and_poll(2.0, 10) for _ in range(6)] == [False] * 6  # 60 MB over it in 12 s: within the bound
    now[0] += 5.0
    assert releaser.poll() and (releaser.releases, releaser.bound_releases) == (3, 2)  # quiet 5 s: the spell's release


def test_a_bound_release_takes_the_pages_reads_go_on_mapping_out_of_the_resident_set(tmp_path):
    """Against the process's real counters: a store of ~12 MB read again and again, the map
    released whenever more than 4 MB was mapped since the last release."""
    if mapped_file_bytes() is None:
        pytest.skip("no /proc/self/statm here")
    rows = {index.to_bytes(4, "big"): random.Random(index).randbytes(200) for index in range(50_000)}
    store = Store(tmp_path / "lmdb")
    db = store.db(b"events")
    store.write(lambda txn: [txn.put(key, value, db=db) for key, value in rows.items()])
    now = [1000.0]
    releaser = MapReleaser(store, bound_bytes=4 << 20, bound_interval_s=0.0, clock=lambda: now[0])
    try:
        assert not releaser.poll()  # the floor
        store.release_map()
        before = mapped_file_bytes()
        with store.read() as txn:
            assert dict(txn.cursor(db=db)) == rows
        assert mapped_file_bytes() - before > 8 << 20
        assert releaser.poll() and releaser.bound_releases == 1
        assert mapped_file_bytes() - before < 1 << 20
        with store.read() as txn:
            assert dict(txn.cursor(db=db)) == rows  # read again from the page cache
    finally:
        store.close()
