"""Bulk write transactions take the interpreter lock back quickly (``storage/handover.py``)."""

from __future__ import annotations

import sys
import threading
import time

import pytest

from storage.environment import Store
from storage.handover import BULK_SWITCH_SECONDS, bulk_handover


@pytest.fixture
def served_interval():
    before = sys.getswitchinterval()
    sys.setswitchinterval(0.001)  # as footfall serve sets it
    yield
    sys.setswitchinterval(before)


def test_a_bulk_write_runs_at_the_short_interval_and_restores_it(served_interval, tmp_path):
    store = Store(tmp_path / "db")
    seen = []
    store.write(lambda txn: seen.append(sys.getswitchinterval()), bulk=True)
    store.write(lambda txn: seen.append(sys.getswitchinterval()))
    assert seen == [pytest.approx(BULK_SWITCH_SECONDS), pytest.approx(0.001)]
    assert sys.getswitchinterval() == pytest.approx(0.001)


def test_a_failed_bulk_write_restores_the_interval(served_interval, tmp_path):
    store = Store(tmp_path / "db")

    def fail(txn):
        raise ValueError("no")

    with pytest.raises(ValueError):
        store.write(fail, bulk=True)
    assert sys.getswitchinterval() == pytest.approx(0.001)


def test_overlapping_uses_restore_the_interval_once_the_last_ends(served_interval):
    inside, release = threading.Event(), threading.Event()

    def other():
        with bulk_handover():
            inside.set()
            release.wait(10)

    thread = threading.Thread(target=other)
    with bulk_handover():
        thread.start()
        assert inside.wait(10)
    assert sys.getswitchinterval() == pytest.approx(BULK_SWITCH_SECONDS)  # the other still writes
    release.set()
    thread.join(10)
    assert sys.getswitchinterval() == pytest.approx(0.001)


def test_a_shorter_interval_is_kept_and_one_set_meanwhile_is_not_undone(served_interval):
    sys.setswitchinterval(BULK_SWITCH_SECONDS / 2)
    shorter = sys.getswitchinterval()
    with bulk_handover():
        assert sys.getswitchinterval() == shorter < BULK_SWITCH_SECONDS
    sys.setswitchinterval(0.001)
    with bulk_handover():
        sys.setswitchinterval(0.002)  # the server's setting changed while it ran
    assert sys.getswitchinterval() == pytest.approx(0.002)


def test_compaction_deletes_its_log_rows_in_a_bulk_write_and_logs_it(tmp_path, monkeypatch, caplog):
    from appliance.config import load_settings
    from appliance.models import Event, EventKind
    from appliance.runtime.appliance import Appliance

    with Appliance(load_settings(environ={}, data_dir=str(tmp_path / "data"))) as opened:
        opened.jobs.stop()
        site = opened.sites.add("bulk.test")
        day = int(time.time() // 86400) - 3
        opened.record_sync(
            [
                Event(
                    kind=EventKind.PAGEVIEW,
                    site_id=site.id,
                    timestamp=day * 86400 + n,
                    name="pageview",
                    visitor_id=n + 1,
                    path="/",
                )
                for n in range(50)
            ]
        )
        intervals = []
        plain = opened.store.write

        def write(fn, **options):
            return plain(
                lambda txn: (
                    intervals.append((options.get("bulk"), sys.getswitchinterval())) or fn(txn)
                ),
                **options,
            )

        monkeypatch.setattr(opened.store, "write", write)
        with caplog.at_level("INFO", logger="appliance.events.columns"):
            assert opened.columns.compact_day(site.id, day)
        assert f"compacted day {day} of site {site.id}: 50 rows in" in caplog.text
        bulk, interval = intervals[-1]  # the transaction that stores the block and deletes the rows
        assert bulk is True and interval <= BULK_SWITCH_SECONDS * 1.01
