"""The tracker first: a fold steps aside while a tracker request is on its way.

Every thread that runs Python shares one interpreter lock. A tracker request takes it several
times on its way (granian hands the request to the event loop, the loop hands its events to
the writer, the writer takes the lock back after its commit's fsync, the loop answers), and
each time a thread that runs Python without a pause holds it, the request waits up to the
switch interval (:mod:`web.interpreter`): a write transaction that commits in 0.2 ms alone
took 1.3 ms beside one busy thread. The folds (the folding thread's slices, a settled read's
fold of what arrived since the last) are such a thread, and with the intake
(:mod:`storage.intake`) no commit waits for them, so they can wait for the tracker instead.

The ingest routes count their requests in flight on the event loop (:meth:`TrackerFirst.enter`,
:meth:`TrackerFirst.leave`, in ``footfall serve``'s front door, :mod:`web.ingest_dispatch`);
between its stages a fold calls :meth:`TrackerFirst.step_aside`, which returns at once when
none is in flight and otherwise waits, without the lock, until none is or
:data:`LONGEST_SECONDS` pass. A thread waits at most half as long as it runs (:data:`SHARE`:
a budget refilled as it runs), so a fold under a flood of requests (always one in flight)
still runs two thirds of the time; and the recorder steps aside only while commits go to the
intake and the backlog is under its bound (:meth:`appliance.ingest.recording.Recorder.folds_may_step_aside`),
never where a commit waits for the fold. Queries do not step aside: measured, the tracker
gained nothing from it that the folds' stepping aside had not given (docs/performance.md).
"""

from __future__ import annotations

import threading
import time

#: the longest one step aside waits for the tracker requests in flight to be answered
LONGEST_SECONDS = 0.003
#: how long a thread may wait, at most, for each second it runs (over any stretch longer than a few steps)
SHARE = 0.5


class TrackerFirst:
    """Tracker requests in flight, and background steps that wait for them to be answered."""

    def __init__(self, longest: float = LONGEST_SECONDS, share: float = SHARE) -> None:
        self.longest = longest
        self.share = share
        self._burst = 2 * longest  # the budget a thread starts with and saves up to
        self.in_flight = 0  # changed on the event loop's thread only
        self.steps = 0  # steps aside taken (for tests and the bench)
        self._waiting = 0
        self._answered = threading.Condition(threading.Lock())
        self._local = threading.local()

    def enter(self) -> None:
        """A tracker request arrived (on the event loop)."""
        self.in_flight += 1

    def leave(self) -> None:
        """A tracker request was answered (on the event loop): wake whoever stepped aside."""
        self.in_flight -= 1
        if not self.in_flight and self._waiting:
            with self._answered:
                self._answered.notify_all()

    def step_aside(self) -> None:
        """Wait while a tracker request is in flight, within this thread's share."""
        if not self.in_flight:
            return
        local = self._local
        now = time.monotonic()
        budget = min(self._burst, getattr(local, "budget", self._burst) + (now - getattr(local, "at", now)) * self.share)
        if budget > 0:
            self.steps += 1
            with self._answered:
                self._waiting += 1
                try:
                    self._answered.wait_for(lambda: not self.in_flight, min(self.longest, budget))
                finally:
                    self._waiting -= 1
            end = time.monotonic()
            budget -= end - now
            now = end
        local.budget, local.at = budget, now


TRACKER_FIRST = TrackerFirst()


def never() -> None:
    """A step aside that never waits (for a fold a commit may be waiting for)."""
