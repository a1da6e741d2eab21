"""Background report work, one per appliance: the day-set walks (:mod:`appliance.query.daysets`)
run on its workers, and the refused reports finishing in the background
(:mod:`appliance.query.flights`) are counted and stopped with them.

Work a request started but no request waits for is bounded three ways:

- at most ``workers`` walks at a time (``[query] background_workers``, 1 by default); the
  next waits its turn in a queue, first come first served, and a set pushed out of
  :class:`~appliance.query.daysets.DaySets` before its turn is never walked. With 2, a
  second filter's walk runs beside the first's instead of behind it; on a busy 2-core box
  that made both pages slower and the heap's peak higher (a walk already decodes its next
  day on the loader pool, so it uses more than one core; ``scripts/bench_walks``,
  docs/architecture.md), hence 1. Refused
  reports finishing in the background (:mod:`appliance.query.flights`) keep their own bound,
  ``[query] background_finishers``, and register here (:meth:`BackgroundWork.claim`) to be
  counted and stopped with the walks. A walk holds about a day's columns and its sums, a
  finisher a scan's arrays;
- each job runs under a deadline of its own, ``ceiling_seconds`` (``[query]
  background_seconds``, at least the request's time budget) from the moment it starts, which
  a walk checks at each day (:mod:`appliance.budget`): past it the job is *abandoned*, and
  whoever waits for it computes for itself within its own budget;
- :meth:`BackgroundWork.stop` (``Appliance.close``) drops the queued jobs and pulls in the
  running ones' deadlines, so they stop at their next check; :meth:`join` waits for them a
  bounded time. Workers are daemon threads: a job still running never holds up the
  interpreter's exit (a ``ThreadPoolExecutor``'s threads would).

A flight whose request still waits for it is not background work: it is that request's own,
bounded by the server's request threads, and runs in a thread of its own at once.
"""

from __future__ import annotations

import math
import threading
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any

from appliance.budget import Deadline, under
from appliance.errors import QueryTimeout

WORKERS = 1  # two walks at once were slower on a busy 2-core box (see the module docstring)


class _Job:
    __slots__ = ("future", "call", "args", "deadline")

    def __init__(self, future: Future, call: Callable[..., Any], args: tuple) -> None:
        self.future = future
        self.call = call
        self.args = args
        self.deadline: Deadline | None = None  # set when it starts: the ceiling counts from then


class BackgroundWork:
    """The pool (see the module docstring). Counters for ``/metrics``: jobs ``started``,
    ``completed``, ``abandoned`` (past their ceiling, or stopped at close), ``failed``, and
    ``dropped`` before their turn (their future cancelled: a newer set pushed them out, or
    close); ``busy``: jobs running and finishers now, ``finishing`` of them finishers."""

    def __init__(self, *, workers: int = WORKERS, ceiling_seconds: float = math.inf) -> None:
        if workers < 1:
            raise ValueError("background work needs at least one worker")
        self.workers = workers
        self.ceiling_seconds = ceiling_seconds if ceiling_seconds > 0 else math.inf
        self._queue: deque[_Job] = deque()
        self._running: set[_Job] = set()
        self._threads = 0  # started: each lives until stop(), as an executor's would
        self._lock = threading.Lock()
        self._ended = threading.Condition(self._lock)  # a job ended
        self._queued = threading.Condition(self._lock)  # a job was queued, or stop()
        self._stopped = False
        self.finishing = 0
        self.started = self.completed = self.abandoned = self.failed = self.dropped = 0

    @property
    def busy(self) -> int:
        return len(self._running) + self.finishing

    @property
    def queued(self) -> int:
        """Jobs waiting for a worker (one cancelled meanwhile is counted dropped when its
        turn comes)."""
        return sum(not job.future.cancelled() for job in list(self._queue))

    def submit(self, call: Callable[..., Any], *args: Any) -> Future:
        """``call(*args)`` on a worker when one is free, under its own deadline; its future
        (cancel it to drop the job before its turn; cancelled already once stopped)."""
        future: Future = Future()
        with self._lock:
            if self._stopped:
                future.cancel()
                self.dropped += 1
                return future
            self._queue.append(_Job(future, call, args))
            if self._threads < self.workers:
                self._threads += 1
                threading.Thread(target=self._serve, name="footfall-background", daemon=True).start()
            else:
                self._queued.notify()
        return future

    def claim(self) -> bool:
        """Count a refused report finishing in the background (its own thread, its own
        deadline and bound: :mod:`appliance.query.flights`); False once the pool is stopped.
        :meth:`release` when it ends."""
        with self._lock:
            if self._stopped:
                return False
            self.finishing += 1
            return True

    def release(self) -> None:
        """A finisher ended."""
        with self._lock:
            self.finishing -= 1
            self._ended.notify_all()

    def _serve(self) -> None:
        """A worker: the queued jobs in turn, until stop(). One long-lived thread per worker,
        not one per job: it keeps its malloc arena, as the executor's thread did."""
        while True:
            with self._lock:
                while not self._queue and not self._stopped:
                    self._queued.wait()
                if self._stopped:
                    self._threads -= 1
                    return
                job = self._queue.popleft()
                if not job.future.set_running_or_notify_cancel():
                    self.dropped += 1  # cancelled while it waited
                    continue
                job.deadline = Deadline(self.ceiling_seconds)
                self._running.add(job)
                self.started += 1
            self._run(job)
            del job  # its arguments (a frame: its blocks) are not kept while this worker waits

    def _run(self, job: _Job) -> None:
        result: Any = None
        error: BaseException | None = None
        try:
            with under(job.deadline):  # a worker's thread: no request's context, only this deadline
                result = job.call(*job.args)
        except BaseException as raised:  # handed to the future's waiters
            error = raised
        job.call, job.args = None, ()  # what the job read goes with it, not with its record
        with self._lock:
            self._running.discard(job)
            if error is None:
                self.completed += 1
            elif isinstance(error, QueryTimeout):
                self.abandoned += 1
            else:
                self.failed += 1
            self._ended.notify_all()
        if error is None:
            job.future.set_result(result)
        else:
            job.future.set_exception(error)

    def stop(self) -> None:
        """Drop the queued jobs and stop the running ones at their next check; no new job or
        finisher is started from now on."""
        with self._lock:
            self._stopped = True
            queued, self._queue = list(self._queue), deque()
            for job in self._running:
                job.deadline.cancel()
            for job in queued:  # their waiters compute for themselves
                self.dropped += job.future.cancel()
            self._queued.notify_all()  # idle workers end

    def join(self, timeout: float) -> bool:
        """Wait until nothing runs (jobs and finishers); False if something still does at
        ``timeout``."""
        with self._ended:
            return self._ended.wait_for(lambda: self.busy == 0, timeout)
