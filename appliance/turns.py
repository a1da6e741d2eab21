"""Turns: requests compute their answers one at a time (``[query] computing_requests``).

Every thread that runs Python shares one interpreter lock. A tracker request needs it a few
times on its way (read, hand to the writer, answer), and each time waits for the thread that
holds it to give it up, at the switch interval; with two dashboard requests computing beside
it, the lock often goes to the other one first and the tracker waits again. Computing the two
one after the other costs them nothing the lock did not already cost (they never ran Python
at the same time), but leaves the tracker one thread to wait for. Measured
(``scripts/bench_paced``, two closed-loop dashboard readers, three rounds alternately against
the code before): the tracker's p99 while read 0.61-0.68x, p50 3.8-4.9 against 5.9-7.4 ms,
and 1.06-1.11x the queries answered.

Who takes a turn: a request handler running in a worker thread, for its whole run
(:class:`web.interpreter.TurnTaking`, the executor Litestar runs them in), and a thread that
computes for a request in its context (a report's flight, a walk: the web room's request
middleware marks the context, :func:`computing_request`) at its settled reads
(:meth:`~appliance.events.coordinator.WriteCoordinator.settled`). Never an event loop's
thread, the job runner, compaction, the writer, or a thread that holds the write mutex. Turns
go in order of arrival. A request that holds its turn long lets the next one have it at its
next budget check (:func:`appliance.budget.check_budget`) once it has held it
:data:`SLICE_SECONDS`, and lets it go while it waits for another thread's work
(:meth:`Turns.waiting`), so no request waits on one that waits on it. And none waits longer
than :data:`WAIT_SECONDS` for a turn: past it, it computes beside the others, as without turns
(a queue that long is an overload the order no longer helps, and a lock taken in another
order elsewhere can never hold two requests waiting for each other).
"""
from __future__ import annotations

import contextlib
import threading
import time
from asyncio.events import _get_running_loop
from collections import deque
from collections.abc import Iterator
from contextvars import ContextVar

SLICE_SECONDS = 0.01  # a turn held this long goes to the next request at a budget check
WAIT_SECONDS = 0.5  # the longest a request waits for a turn before it computes without one

_request: ContextVar[bool] = ContextVar("footfall_computing_request", default=False)


@contextlib.contextmanager
def computing_request() -> Iterator[None]:
    """Mark the block as a request's (the web room's request middleware): its settled reads
    take turns."""
    token = _request.set(True)
    try:
        yield
    finally:
        _request.reset(token)


class Turns:
    """At most ``slots`` requests compute at once (0: no limit), served in order of arrival."""

    def __init__(self, slots: int = 1) -> None:
        self.slots = slots
        self._state = threading.Condition(threading.Lock())
        self._active = 0
        self._queue: deque[object] = deque()
        self._local = threading.local()
        self.timeouts = 0  # turns given up waiting for (WAIT_SECONDS)

    @property
    def waiting_now(self) -> int:
        """How many requests wait for a turn."""
        return len(self._queue)

    def _depth(self) -> int:
        return getattr(self._local, "depth", 0)

    def _without(self) -> int:
        """Whether this thread's request computes without a turn (it waited too long for one)."""
        return getattr(self._local, "without", 0)

    def _acquire(self) -> bool:
        """Take a turn in order of arrival; False (and none taken) after :data:`WAIT_SECONDS`."""
        me = object()
        with self._state:
            if self._active < self.slots and not self._queue:
                self._active += 1
            else:
                self._queue.append(me)
                deadline = time.monotonic() + WAIT_SECONDS
                while self._queue[0] is not me or self._active >= self.slots:
                    left = deadline - time.monotonic()
                    if left <= 0:
                        self._queue.remove(me)
                        self.timeouts += 1
                        self._state.notify_all()  # the one behind may be first now
                        return False
                    self._state.wait(left)
                self._queue.popleft()
                self._active += 1
                self._state.notify_all()  # the next in line may have a free slot too
        self._local.since = time.monotonic()
        return True

    def _release(self) -> None:
        with self._state:
            self._active -= 1
            self._state.notify_all()

    @contextlib.contextmanager
    def turn(self, request: bool = False) -> Iterator[None]:
        """Hold a turn for the block (again, in a thread that holds one); ``request``: the
        block is a request's (else the context says whether it is). Nothing to take outside a
        request, on an event loop's thread (never made to wait) or without a limit."""
        if (
            not self.slots or not (request or _request.get()) or self._without()
            or _get_running_loop() is not None
        ):
            yield  # nothing to take (or the request gave up waiting for one: no second wait)
            return
        depth = self._depth()
        if not depth and not self._acquire():
            self._local.without = 1  # waited too long: the block computes without a turn
            try:
                yield
            finally:
                self._local.without = 0
            return
        self._local.depth = depth + 1
        try:
            yield
        finally:
            if self._local.depth:
                self._local.depth -= 1
                if not self._local.depth:
                    self._release()
            elif not depth:  # the outermost block, whose turn was let go and not taken back
                self._local.without = 0

    def pause(self) -> None:
        """At a budget check: after :data:`SLICE_SECONDS`, let a waiting request have the turn
        first, then take it again."""
        if self._depth() and self._queue and time.monotonic() - self._local.since >= SLICE_SECONDS:
            with self.waiting():
                pass

    @contextlib.contextmanager
    def waiting(self) -> Iterator[None]:
        """Let the turn go while the block waits for another thread (taken again after)."""
        depth = self._depth()
        if not depth:
            yield
            return
        self._local.depth = 0
        self._release()
        try:
            yield
        finally:
            if self._acquire():
                self._local.depth = depth
            else:  # the blocks around go on without a turn (they release none at their ends)
                self._local.depth = 0
                self._local.without = 1


#: the process's turns; the appliance sets ``slots`` from its settings as it opens
TURNS = Turns()
