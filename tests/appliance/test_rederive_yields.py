"""A long re-derivation run lets ingest commit between its days and while it reads a day.

The hourly job re-derives every dirty day (after an import, dozens), each taking up to
seconds. It reads and sessionises a day before it takes the write coordinator's mutex, and
takes the mutex one day at a time: another thread waiting for it (the writer with a batch to
commit) gets it meanwhile, and the figures come out the same as with in-order arrival.
"""

from __future__ import annotations

import gc
import threading
import time
import weakref

from appliance.events import rederive_window
from appliance.ingest import rederive
from appliance.models import EventKind
from tests.appliance.test_arrival_order import _days, _event, report, script, send

DAY = 86_400


def shuffled_history(make_appliance, monkeypatch):
    """An appliance with two sites of the same three days of history: one fed in time order,
    one shuffled (its days dirty, every one left for a forced run); and the events sent."""
    monkeypatch.setattr(rederive, "IMMEDIATE_EVENTS", -1)  # every dirty day waits for the job
    appliance = make_appliance()
    ordered, shuffled = appliance.sites.add("ordered.test"), appliance.sites.add("shuffled.test")
    midnight = time.time() // DAY * DAY
    specs = [spec for back in (4, 3, 2) for spec in script(back, midnight - back * DAY + 9 * 3600, visitors=12)]
    appliance.visits.horizon = 0.0  # in-order history is exact incrementally
    send(appliance, ordered, specs, shuffled=False)
    appliance.visits.horizon = time.time()
    send(appliance, shuffled, specs, shuffled=True)
    assert len(appliance.rederiver.dirty) >= 3
    return appliance, ordered, shuffled, specs


def test_a_forced_run_releases_the_mutex_between_days(make_appliance, monkeypatch):
    appliance, ordered, shuffled, specs = shuffled_history(make_appliance, monkeypatch)
    rederiver = appliance.rederiver

    mutex = appliance.coordinator.mutex
    contender_had_it = threading.Event()

    def contend():
        with mutex:
            contender_had_it.set()

    one_day = rederiver._rederive_one
    calls = []

    def watched(key, *rest):
        calls.append(key)
        if len(calls) == 1:
            threading.Thread(target=contend, daemon=True).start()
        elif len(calls) == 2:
            # between two days the run holds no mutex: the waiting thread gets it now
            assert contender_had_it.wait(30), "the run kept the mutex between days"
        return one_day(key, *rest)

    monkeypatch.setattr(rederiver, "_rederive_one", watched)
    assert rederiver.run(force=True) >= 3
    assert not rederiver.dirty
    first, last = _days([spec["ts"] for spec in specs])
    assert report(appliance, shuffled, first, last) == report(appliance, ordered, first, last)


def _pausing_sessions(monkeypatch, meanwhile):
    """Make the first sessionising of a run call ``meanwhile`` first (in the re-deriving thread)."""
    real = rederive_window.Sessions
    calls = []

    def sessions(frame, timeout):
        calls.append(1)
        if len(calls) == 1:
            meanwhile()
        return real(frame, timeout)

    monkeypatch.setattr(rederive_window, "Sessions", sessions)


def test_ingest_commits_while_a_big_day_is_read_and_sessionised(make_appliance, monkeypatch):
    """Reading and sessionising a day (seconds for a big one) happens before the mutex is
    taken: a commit that comes meanwhile is durable and aggregated without waiting for it."""
    appliance, ordered, shuffled, specs = shuffled_history(make_appliance, monkeypatch)
    live = appliance.sites.add("live.test")
    committed = threading.Event()

    def commit_elsewhere():
        appliance.record_sync([_event(live, {"visitor": 1, "ts": time.time(), "kind": EventKind.PAGEVIEW,
                                             "path": "/", "source": "", "channel": "Direct"})])
        committed.set()

    def meanwhile():
        threading.Thread(target=commit_elsewhere, daemon=True).start()
        assert committed.wait(30), "the commit waited for the day being read"

    _pausing_sessions(monkeypatch, meanwhile)
    assert appliance.rederiver.run(force=True) >= 3
    assert committed.is_set() and not appliance.rederiver.dirty
    first, last = _days([spec["ts"] for spec in specs])
    assert report(appliance, shuffled, first, last) == report(appliance, ordered, first, last)


def test_an_event_landing_in_the_window_while_it_is_read_is_counted(make_appliance, monkeypatch):
    """A late event for the day committed while the day is read changes what the window
    holds: the day is derived again under the mutex, so its figures include the event."""
    appliance, ordered, shuffled, specs = shuffled_history(make_appliance, monkeypatch)
    first_day = min(spec["ts"] for spec in specs) // DAY * DAY
    late = {"visitor": 99, "ts": first_day + 10 * 3600, "kind": EventKind.PAGEVIEW, "path": "/late",
            "source": "", "channel": "Direct"}
    landed = threading.Event()

    def land_late_event():
        appliance.record_sync([_event(shuffled, late)])
        landed.set()

    def meanwhile():
        threading.Thread(target=land_late_event, daemon=True).start()
        assert landed.wait(30)

    appliance.visits.horizon = 0.0
    send(appliance, ordered, [late], shuffled=False)
    appliance.visits.horizon = time.time()
    _pausing_sessions(monkeypatch, meanwhile)
    appliance.rederiver.run(force=True)
    appliance.rederiver.run(force=True)  # whatever the late event marked meanwhile
    assert landed.is_set() and not appliance.rederiver.dirty
    first, last = _days([spec["ts"] for spec in specs])
    assert report(appliance, shuffled, first, last) == report(appliance, ordered, first, last)


def test_a_window_read_again_under_the_mutex_is_not_held_twice(make_appliance, monkeypatch):
    """When an event lands in the window while it is read, the day is derived again under the
    mutex; the stale window (its frame, visits and figures: a big day's are tens of megabytes)
    is let go first, so the heap never holds two windows of one day."""
    appliance, ordered, shuffled, specs = shuffled_history(make_appliance, monkeypatch)
    first_day = min(spec["ts"] for spec in specs) // DAY * DAY
    late = {"visitor": 99, "ts": first_day + 10 * 3600, "kind": EventKind.PAGEVIEW, "path": "/late",
            "source": "", "channel": "Direct"}
    windows = []
    real = rederive_window.Sessions

    def sessions(frame, timeout):
        made = real(frame, timeout)
        windows.append(weakref.ref(made))
        if len(windows) == 1:  # the first day's early read: a late event lands in its window
            appliance.record_sync([_event(shuffled, late)])
        return made

    rederiver = appliance.rederiver
    again = rederiver.rederive_day
    stale_alive = []

    def rederive_day(*args, **kwargs):
        gc.collect()
        stale_alive.append(windows[0]() is not None)
        return again(*args, **kwargs)

    monkeypatch.setattr(rederive_window, "Sessions", sessions)
    monkeypatch.setattr(rederiver, "rederive_day", rederive_day)
    rederiver.run(force=True)
    assert stale_alive and stale_alive[0] is False
