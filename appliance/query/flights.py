"""Reports in flight: one computation per kept-answer key, finished in the background when
the request that asked for it runs out of time.

A filtered report that misses the kept answers (:mod:`appliance.query.memo`) is computed in
a thread of its own, its *flight*, while the request's worker thread waits for it within the
request's time budget (:mod:`appliance.budget`). The flight is keyed by the kept-answer key,
so identical requests share it (single flight): a second request, or a retry, waits for the
running computation instead of starting another. When every request waiting for a flight
has run out of time, each is answered 503 as before, and the flight, instead of being
abandoned with the blocks and visits it has built so far, becomes a *finisher*: it goes on
into the kept answers, so the retry answers from them (Plausible and Matomo users expect a
slow report to keep computing). Bounds:

- at most ``max_finishers`` (1 by default, ``[query] background_finishers``) finish at a
  time — a scan's arrays are the heap's peak, so one extra at most — counted and stopped
  with the day-set walks by the appliance's background work
  (:mod:`appliance.query.background`); a flight left alone while they are busy is stopped
  at its next budget check, as a refused query was before;
- each flight runs under a deadline of its own, ``finish_seconds`` (``[query]
  background_seconds``, at least the request's budget) from its start, past which it stops;
- :meth:`Flights.close` (``Appliance.close``) stops every flight at its next check and waits
  a bounded time for them.

Flights hold no lock the writer needs (only this registry's, for a few instructions), run in
threads like the request handlers (never on the event loop), and copy the request's context
(its request id for the log). Code without a deadline (jobs, the CLI, exports in their own
threads) computes in its own thread as before; so does a report a flight asks for (a report
made of others).
"""

from __future__ import annotations

import contextvars
import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any

from appliance.budget import Deadline, current_deadline, under
from appliance.errors import QueryTimeout
from appliance.query.background import BackgroundWork
from appliance.turns import TURNS

log = logging.getLogger(__name__)

FINISH_SECONDS = 30.0  # 3 x the default time budget: the first try and two retries
CLOSE_WAIT_SECONDS = 5.0  # each step between two budget checks is small (one day's block)
_current: contextvars.ContextVar[Flight | None] = contextvars.ContextVar("footfall_flight", default=None)


def waits_on(work: Future) -> None:
    """Record that the running flight (if any) waits on background ``work`` (a day-set walk,
    :mod:`appliance.query.daysets`): a flight stopped at its requests' deadline, with no
    finisher free, still answers them "computing" (503 with Retry-After) while the walk it
    waited on goes on into the kept answers, so a retry is answered from them."""
    flight = _current.get()
    if flight is not None:
        flight.walks.append(work)


class Flight:
    """One computation and the requests waiting for it."""

    __slots__ = ("key", "deadline", "done", "result", "error", "waiters", "finishing", "thread", "walks")

    def __init__(self, key: tuple, deadline: Deadline) -> None:
        self.key = key
        self.deadline = deadline
        self.done = threading.Event()
        self.result: Any = None
        self.error: BaseException | None = None
        self.waiters = 0
        self.finishing = False  # no request waits: it goes on into the kept answers
        self.thread: threading.Thread | None = None
        self.walks: list[Future] = []  # background work it waits on (:func:`waits_on`)


class Flights:
    """The registry of running flights (see the module docstring)."""

    def __init__(
        self, *, finish_seconds: float = FINISH_SECONDS, max_finishers: int = 1, background: BackgroundWork | None = None
    ) -> None:
        self.finish_seconds = finish_seconds
        self.max_finishers = max_finishers
        self.background = background if background is not None else BackgroundWork()
        self._flights: dict[tuple, Flight] = {}
        self._lock = threading.Lock()
        self._ended = threading.Condition(self._lock)  # a flight ended
        self._closed = False
        self.finishers = 0  # finishing now
        self.started = 0  # flights started (computations: identical requests share one)
        self.finished = 0  # finishers that completed into the kept answers
        self.dropped = 0  # flights stopped: no finisher free, over their ceiling, or at close

    def run(self, key: tuple, compute: Callable[[], Any]) -> Any:
        """``compute()``, shared by identical callers, waited for within the caller's deadline.

        Raises QueryTimeout when the deadline passes first: ``computing`` says whether the
        computation goes on in the background (a retry then waits for it or finds its answer
        kept) or was stopped."""
        deadline = current_deadline()
        if deadline is None or _current.get() is not None or self._closed:
            return compute()  # nothing will refuse this caller: compute in its own thread
        with self._lock:
            flight = self._flights.get(key)
            if flight is None:
                flight = self._start(key, compute, deadline.seconds)
            flight.waiters += 1
        remaining = deadline.remaining()
        if remaining > 0:  # a caller already past its deadline is refused outright
            with TURNS.waiting():  # the flight's thread computes in this request's turn
                flight.done.wait(remaining)
        with self._lock:
            flight.waiters -= 1
            if remaining <= 0 or not flight.done.is_set():
                raise QueryTimeout(deadline.seconds, computing=flight.done.is_set() or self._left(flight))
        if flight.error is not None:
            raise flight.error
        return flight.result

    def _start(self, key: tuple, compute: Callable[[], Any], budget_seconds: float) -> Flight:
        """A new flight (under the lock): its own deadline, at least the request's budget."""
        flight = Flight(key, Deadline(max(self.finish_seconds, budget_seconds)))
        context = contextvars.copy_context()  # the request id for the log
        flight.thread = threading.Thread(
            target=context.run, args=(self._fly, flight, compute), name="footfall-report", daemon=True
        )
        self._flights[key] = flight
        self.started += 1
        flight.thread.start()
        return flight

    def _fly(self, flight: Flight, compute: Callable[[], Any]) -> None:
        _current.set(flight)  # this thread's own copy of the context
        try:
            with under(flight.deadline):
                flight.result = compute()
        except BaseException as error:  # handed to every waiter; a finisher's is logged below
            flight.error = error
        finally:
            with self._lock:
                if self._flights.get(flight.key) is flight:
                    del self._flights[flight.key]
                if flight.finishing:
                    self.finishers -= 1
                    self.background.release()
                    if flight.error is None:
                        self.finished += 1
                    else:
                        self.dropped += 1  # over its ceiling, stopped at close, or failed
                flight.done.set()
                self._ended.notify_all()
        if flight.finishing and flight.error is not None and not isinstance(flight.error, QueryTimeout):
            log.warning("a report finished in the background failed: %r", flight.error)

    def _left(self, flight: Flight) -> bool:
        """A waiter ran out of time (under the lock): does the flight go on?"""
        if flight.waiters > 0 or flight.finishing:
            return True  # others still wait, or it finishes already
        if self.finishers < self.max_finishers and not self._closed and self.background.claim():
            flight.finishing = True
            self.finishers += 1
            return True
        flight.deadline.cancel()  # no one wants it now and no finisher is free: stop it
        if self._flights.get(flight.key) is flight:
            del self._flights[flight.key]  # the next request starts afresh, not on a stopping flight
        self.dropped += 1
        return any(not work.done() for work in flight.walks)  # its walk goes on into the kept answers

    def running(self) -> int:
        with self._lock:
            return len(self._flights)

    def waiting(self, key: tuple) -> int:
        """Requests waiting for the computation of ``key`` now."""
        with self._lock:
            flight = self._flights.get(key)
            return flight.waiters if flight is not None else 0

    def wait_idle(self, timeout: float) -> bool:
        """Wait until no flight runs (tests, benchmarks); False if one still runs at ``timeout``."""
        with self._ended:
            return self._ended.wait_for(lambda: not self._flights, timeout)

    def close(self, wait_seconds: float = CLOSE_WAIT_SECONDS) -> None:
        """Stop every flight at its next budget check and wait for them, a bounded time."""
        with self._lock:
            self._closed = True
            flights = list(self._flights.values())
            for flight in flights:
                flight.deadline.cancel()
        until = time.monotonic() + wait_seconds
        for flight in flights:
            if flight.thread is not None:
                flight.thread.join(max(0.0, until - time.monotonic()))
        if any(flight.thread is not None and flight.thread.is_alive() for flight in flights):
            log.warning("a report still running at close (in a step between two budget checks)")
