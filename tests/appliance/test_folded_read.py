"""The folded read (WriteCoordinator.folded): background work that needs the events committed
before it folded in waits, without the write mutex, for the thread that folds on its own, and
reads without settling; with no such thread, or once it waited too long, it settles as ever.

During a bulk load compaction's settled reads had the job runner waiting for the mutex 67 % of
the time, behind the load's commits, and folding the load's backlog itself."""

from __future__ import annotations

import threading
import time

from appliance.events import coordinator as coordinator_module
from appliance.events.coordinator import WriteCoordinator
from appliance.models import Event, EventKind
from appliance.runtime.jobs import compact_closed_days


class _Backlog:
    """What the recorder tells the coordinator: events folds took and committed, how many
    wait, whether a thread folds on its own; ``flushes`` counts the settled reads' folds."""

    def __init__(self, waiting: int, elsewhere: bool = True) -> None:
        self.changed = threading.Condition()
        self.taken = self.done = 0
        self.waiting, self.elsewhere = waiting, elsewhere
        self.flushes = self.asked = 0

    def state(self) -> tuple[int, int, int, bool]:
        self.asked += 1
        return self.taken, self.done, self.waiting, self.elsewhere

    def flush(self) -> int:
        self.flushes += 1
        return 0

    def fold(self, count: int) -> None:
        with self.changed:
            self.taken += count
            self.waiting -= count
        with self.changed:
            self.done += count
            self.changed.notify_all()


def _bound(store, backlog: _Backlog) -> WriteCoordinator:
    coordinator = WriteCoordinator(store)
    coordinator.bind(backlog.flush, folds=backlog.changed, backlog=backlog.state)
    return coordinator


def _reader(coordinator: WriteCoordinator) -> tuple[threading.Thread, threading.Event]:
    """A thread (not started) that opens a folded read and sets the event once inside it."""
    entered = threading.Event()

    def read() -> None:
        with coordinator.folded():
            entered.set()

    return threading.Thread(target=read, daemon=True), entered


def test_nothing_waiting_reads_at_once_without_settling(store):
    backlog = _Backlog(waiting=0)
    with _bound(store, backlog).folded() as txn:
        assert txn is not None
    assert backlog.flushes == 0


def test_it_waits_for_the_folding_thread_not_for_the_mutex(store):
    backlog = _Backlog(waiting=10)
    coordinator = _bound(store, backlog)
    reader, entered = _reader(coordinator)
    with coordinator.mutex:  # the load's commits hold it: the folded read never asks for it
        reader.start()
        backlog.fold(4)
        assert not entered.wait(0.2)  # six of the ten still wait
        backlog.fold(6)
        assert entered.wait(10)
    reader.join(10)
    assert backlog.flushes == 0


def test_events_committed_while_it_waits_are_not_waited_for(store):
    backlog = _Backlog(waiting=3)
    coordinator = _bound(store, backlog)
    reader, entered = _reader(coordinator)
    reader.start()
    deadline = time.monotonic() + 10
    while not backlog.asked:  # the reader has taken its measure (holding the condition)
        assert time.monotonic() < deadline
        time.sleep(0.001)
    with backlog.changed:
        backlog.waiting += 50  # a later commit
    backlog.fold(3)
    assert entered.wait(10)
    reader.join(10)
    assert backlog.flushes == 0


def test_without_a_folding_thread_or_past_the_wait_it_settles(store, monkeypatch):
    backlog = _Backlog(waiting=5, elsewhere=False)
    with _bound(store, backlog).folded():
        pass
    assert backlog.flushes == 1  # the writer folds between commits: settle as before

    backlog = _Backlog(waiting=5)
    monkeypatch.setattr(coordinator_module, "FOLDED_WAIT_SECONDS", 0.05)
    with _bound(store, backlog).folded():
        pass
    assert backlog.flushes == 1

    backlog = _Backlog(waiting=5)
    coordinator = _bound(store, backlog)
    with coordinator.mutex, coordinator.folded():  # holding the mutex: no thread can fold meanwhile
        pass
    assert backlog.flushes == 1


def test_the_recorder_counts_what_its_folds_take_and_commit(make_appliance):
    appliance = make_appliance()
    site = appliance.sites.add("folded.test")
    recorder = appliance.recorder
    now = time.time()
    events = [Event(kind=EventKind.PAGEVIEW, site_id=site.id, timestamp=now - 86400 - i, name="pageview",
                    visitor_id=i + 1, path="/") for i in range(50)]
    appliance.record_sync(events)
    appliance.coordinator.flush()
    assert recorder.folds_taken == recorder.folds_done >= 50
    with appliance.coordinator.folded() as txn:  # nothing waits: a plain read sees the rows
        assert appliance.columns.day_count(txn, site.id, int((now - 86400) // 86400)) >= 1


def test_compaction_goes_on_while_a_commit_holds_the_mutex(make_appliance):
    """What the load saw: its commits hold the write mutex; compaction of a closed day whose
    events are folded no longer waits for it (a settled read did, for the whole backlog)."""
    appliance = make_appliance()
    site = appliance.sites.add("compact.test")
    day_start = (int(time.time() // 86400) - 3) * 86400
    appliance.record_sync([Event(kind=EventKind.PAGEVIEW, site_id=site.id, timestamp=day_start + 60 + i, name="pageview",
                                 visitor_id=i + 1, path="/") for i in range(200)])
    appliance.coordinator.flush()
    done = threading.Event()
    result: list[dict] = []

    def compact() -> None:
        result.append(compact_closed_days(appliance))
        done.set()

    with appliance.coordinator.mutex:  # held by this thread: the compacting thread never asks for it
        worker = threading.Thread(target=compact, daemon=True)
        worker.start()
        assert done.wait(30), "compaction waited for the write mutex"
    worker.join(10)
    assert result[0]["days"] >= 1
