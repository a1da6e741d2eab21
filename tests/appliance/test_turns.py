"""Turns (appliance/turns.py): requests compute one at a time, in order of arrival, and never
wait for ever."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

from appliance import turns as turns_module
from appliance.turns import Turns, computing_request


def _wait_for(condition, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.001)


def _queued(turns: Turns, count: int) -> bool:
    return len(turns._queue) == count


def test_requests_take_turns_in_order_of_arrival():
    turns = Turns(1)
    log: list[str] = []
    release = threading.Event()

    def first() -> None:
        with turns.turn(request=True):
            log.append("first in")
            release.wait(10)
            log.append("first out")

    def later(name: str) -> None:
        with turns.turn(request=True):
            log.append(f"{name} in")
            log.append(f"{name} out")

    threads = [threading.Thread(target=first)]
    threads[0].start()
    _wait_for(lambda: log == ["first in"])
    for count, name in enumerate(("second", "third"), 1):
        threads.append(threading.Thread(target=later, args=(name,)))
        threads[-1].start()
        _wait_for(lambda count=count: _queued(turns, count))
    release.set()
    for thread in threads:
        thread.join(10)
    assert log == ["first in", "first out", "second in", "second out", "third in", "third out"]


def test_only_requests_off_the_event_loop_take_turns():
    turns = Turns(1)
    with computing_request(), turns.turn():
        assert turns._active == 1
        with turns.turn():  # again in the same thread: no second turn, no wait
            assert turns._active == 1
        seen = []
        worker = threading.Thread(target=lambda: seen.append(_free(turns)))  # not a request's thread
        worker.start()
        worker.join(10)
        assert seen == [True]

        async def on_the_loop() -> bool:
            return _free(turns)

        assert asyncio.run(on_the_loop())  # a request's context, but an event loop's thread
    assert turns._active == 0
    assert _free(Turns(0), request=True)  # no limit


def _free(turns: Turns, request: bool = False) -> bool:
    """Whether a turn is had at once (without waiting)."""
    started = time.monotonic()
    with turns.turn(request=request):
        return time.monotonic() - started < 0.2


def test_a_long_turn_goes_to_the_next_request_at_a_budget_check(monkeypatch):
    monkeypatch.setattr(turns_module, "SLICE_SECONDS", 0.02)
    turns = Turns(1)
    log: list[str] = []
    holding = threading.Event()

    def long_report() -> None:
        with turns.turn(request=True):
            holding.set()
            turns.pause()  # nobody waits: keeps it
            log.append("first checked")
            _wait_for(lambda: _queued(turns, 1))
            turns.pause()  # someone waits, but the slice is not over yet (or is: either way correct)
            time.sleep(0.03)
            turns.pause()  # past the slice: the waiting one first
            log.append("first again")

    def short_report() -> None:
        with turns.turn(request=True):
            log.append("second")

    first = threading.Thread(target=long_report)
    first.start()
    assert holding.wait(10)
    second = threading.Thread(target=short_report)
    second.start()
    first.join(10)
    second.join(10)
    assert log == ["first checked", "second", "first again"]


def test_a_request_waiting_for_another_thread_lets_its_turn_go():
    turns = Turns(1)
    done = threading.Event()

    def flight() -> None:  # a report computed in a thread of its own, in the request's context
        with computing_request(), turns.turn():
            done.set()

    with turns.turn(request=True):
        threading.Thread(target=flight).start()
        with turns.waiting():
            assert done.wait(10)
        assert turns._active == 1  # its turn back
    assert turns._active == 0


def test_no_request_waits_for_a_turn_for_ever(monkeypatch):
    monkeypatch.setattr(turns_module, "WAIT_SECONDS", 0.05)
    turns = Turns(1)
    release = threading.Event()
    holder = threading.Thread(target=lambda: _hold(turns, release))
    holder.start()
    _wait_for(lambda: turns._active == 1)
    started = time.monotonic()
    with turns.turn(request=True):  # computes without one after WAIT_SECONDS
        waited = time.monotonic() - started
        assert turns._active == 1 and not turns._queue
    assert 0.04 <= waited < 5 and turns.timeouts == 1
    release.set()
    holder.join(10)
    assert turns._active == 0


@pytest.mark.parametrize("gives_up", ["taking its turn", "taking it back after waiting"])
def test_a_request_that_gave_up_waiting_does_not_wait_again(monkeypatch, gives_up):
    """Its settled reads inside it would each wait again; and its thread (a pool's) takes
    turns again for the next request."""
    monkeypatch.setattr(turns_module, "WAIT_SECONDS", 0.2)
    turns = Turns(1)
    release = threading.Event()
    holder = threading.Thread(target=lambda: _hold(turns, release))
    if gives_up == "taking its turn":
        holder.start()
        _wait_for(lambda: turns._active == 1)
        started = time.monotonic()
        with turns.turn(request=True):  # waits WAIT_SECONDS once
            inner = time.monotonic()
            with turns.turn(request=True), turns.turn(request=True):  # no wait
                pass
            assert time.monotonic() - inner < 0.15
    else:
        started = time.monotonic()
        with turns.turn(request=True):
            with turns.waiting():
                holder.start()
                _wait_for(lambda: turns._active == 1)
            inner = time.monotonic()  # taking it back waited WAIT_SECONDS, in vain
            with turns.turn(request=True):  # no wait
                pass
            assert time.monotonic() - inner < 0.15
    assert time.monotonic() - started >= 0.15 and turns.timeouts == 1
    release.set()
    holder.join(10)
    assert turns._active == 0
    with turns.turn(request=True):  # the thread takes turns again
        assert turns._active == 1
    assert turns._active == 0


def _hold(turns: Turns, release: threading.Event) -> None:
    with turns.turn(request=True):
        release.wait(10)


@pytest.mark.parametrize("slots", [2])
def test_two_slots_let_two_requests_compute_at_once(slots):
    turns = Turns(slots)
    inside = threading.Barrier(2, timeout=10)  # both must be inside together, or it breaks

    def request() -> None:
        with turns.turn(request=True):
            inside.wait()

    threads = [threading.Thread(target=request) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert not inside.broken and turns._active == 0
