"""The write coordinator's mutex lets waiting threads in between the steps of a loop.

A loop that takes the mutex once per step (a settled read folding a backlog slice by slice,
a re-derivation run day by day) promises that commits go on between its steps. Releasing a
``threading.RLock`` does not keep that promise: the releasing thread, still running, takes
it straight back. :meth:`WriteMutex.let_waiters_in` does, and costs nothing when no one waits.
"""

from __future__ import annotations

import threading
import time

from appliance.events.coordinator import WriteMutex


def _until(condition) -> None:
    deadline = time.monotonic() + 30
    while not condition():
        assert time.monotonic() < deadline, "timed out waiting for a condition"
        time.sleep(0.001)


def _contender(mutex: WriteMutex, order: list[str]) -> threading.Thread:
    def take() -> None:
        with mutex:
            order.append("waiter")

    thread = threading.Thread(target=take, daemon=True)
    thread.start()
    _until(lambda: mutex.waiting == 1)
    return thread


def test_a_loop_lets_a_waiting_thread_have_the_mutex_before_its_next_step():
    mutex, order = WriteMutex(), []
    mutex.acquire()
    order.append("step")
    waiter = _contender(mutex, order)
    mutex.release()
    mutex.let_waiters_in(timeout=30)  # the default second could pass unscheduled on a busy machine
    with mutex:
        order.append("step")
    waiter.join(30)
    assert order == ["step", "waiter", "step"]
    assert mutex.waiting == 0


def test_with_no_waiter_or_an_outer_hold_it_returns_at_once():
    mutex, order = WriteMutex(), []
    mutex.let_waiters_in(timeout=30)  # no one waits
    with mutex:
        with mutex:
            order.append("inner")
        waiter = _contender(mutex, order)
        mutex.let_waiters_in(timeout=30)  # still held here: the waiter cannot have it yet
        assert order == ["inner"] and mutex.waiting == 1
    waiter.join(30)
    assert order == ["inner", "waiter"]
    assert mutex.acquire(blocking=False)
    mutex.release()


def test_only_the_owner_releases_it():
    mutex, failures = WriteMutex(), []

    def stranger() -> None:
        try:
            mutex.release()
        except RuntimeError as error:
            failures.append(error)

    with mutex:
        thread = threading.Thread(target=stranger)
        thread.start()
        thread.join(30)
        assert len(failures) == 1
    assert mutex.acquire(blocking=False)  # the owner's release freed it
    mutex.release()


def test_an_acquisition_ahead_goes_before_plain_ones_arriving_after_it():
    """A commit takes the mutex ``ahead`` of the plain acquisitions arriving while it waits, the
    releasing thread's own next one included (which a plain lock grants at once); a plain one
    queued before it keeps its turn."""
    mutex, order = WriteMutex(), []

    def take(name: str, ahead: bool) -> threading.Thread:
        def run() -> None:
            mutex.acquire(ahead=ahead)
            order.append(name)
            mutex.release()

        thread = threading.Thread(target=run, daemon=True)
        thread.start()
        return thread

    mutex.acquire()
    plain = take("plain waiter", ahead=False)
    _until(lambda: mutex.waiting == 1)
    commit = take("commit", ahead=True)
    _until(lambda: mutex.waiting == 2)
    mutex.release()
    with mutex:  # straight back, as a folding loop's next step
        order.append("next step")
    commit.join(30)
    plain.join(30)
    assert sorted(order) == ["commit", "next step", "plain waiter"], order
    assert order.index("commit") < order.index("next step"), order
    assert mutex.waiting == 0
