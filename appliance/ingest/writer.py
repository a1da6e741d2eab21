"""Group commit: requests hand events to one writer thread that commits them in batches.

A request appends its events to the open :class:`Batch` and waits on it. The writer thread
closes the batch when it holds ``commit_max_events`` events or ``commit_interval_ms`` has
passed since its first event, hands it to the commit function (:meth:`Recorder.commit
<appliance.ingest.recording.Recorder.commit>`: ONE LMDB transaction writing the batch to the
intake, or to the event log and the ``pending`` list, all or nothing), and only then completes it, so a
request is answered success only for events that are durable on disk. Counters and sketches
follow in the aggregation step. After the commit the live buffer and the
``events_committed`` hook see the batch. On shutdown the open batch is committed once more.

Work ``between`` commits (without the intake, the aggregation step in bounded slices: see
:meth:`Recorder.aggregate_slice <appliance.ingest.recording.Recorder.aggregate_slice>`) runs
after a batch's waiters are woken, one slice at a time: a batch that is ready is committed
before the next slice, so a request waits for at most one slice, never for the whole step —
unless ``hold`` says the backlog of that work is at its bound: then slices run first and the
next batch waits (backpressure: the batch's requests wait longer, nothing is refused).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections import deque
from collections.abc import Callable

from appliance.models import Event

log = logging.getLogger(__name__)


class Batch:
    """Events waiting for one commit, and the waiters to wake when it is done."""

    __slots__ = ("events", "keys", "error", "_done", "_loop_futures")

    def __init__(self) -> None:
        self.events: list[Event] = []
        self.keys: list[bytes] = []
        self.error: BaseException | None = None
        self._done = threading.Event()
        self._loop_futures: dict[asyncio.AbstractEventLoop, asyncio.Future] = {}

    def loop_future(self) -> asyncio.Future:
        """A future on the running loop, shared by every request of the loop in this batch."""
        loop = asyncio.get_running_loop()
        future = self._loop_futures.get(loop)
        if future is None:
            future = self._loop_futures[loop] = loop.create_future()
        return future

    def finish(self) -> None:
        self._done.set()
        for loop, future in list(self._loop_futures.items()):
            with contextlib.suppress(RuntimeError):  # the loop closed while we committed
                loop.call_soon_threadsafe(_resolve, future, self.error)

    def wait(self, timeout: float | None = None) -> None:
        if not self._done.wait(timeout):
            raise TimeoutError("commit did not finish in time")
        if self.error is not None:
            raise self.error


def _resolve(future: asyncio.Future, error: BaseException | None) -> None:
    if future.done():
        return
    if error is None:
        future.set_result(None)
    else:
        future.set_exception(error)


class Writer:
    def __init__(
        self,
        commit: Callable[[list[Event]], list[bytes]],
        after_commit: Callable[[list[Event], list[bytes]], None],
        *,
        interval_ms: int,
        max_events: int,
        on_idle: Callable[[], None] | None = None,
        idle_seconds: float = 1.0,
        between: Callable[[], bool] | None = None,
        hold: Callable[[], bool] | None = None,
    ) -> None:
        self._commit = commit
        self._after_commit = after_commit
        self._interval = interval_ms / 1000
        self._max_events = max_events
        self._on_idle = on_idle
        self._idle_seconds = idle_seconds
        self._between = between  # one slice of work between commits; True while more waits
        self._hold = hold  # True: that work's backlog is at its bound, slices before commits
        self._condition = threading.Condition()
        self._batch: Batch | None = None
        self._full: deque[Batch] = deque()  # closed batches waiting for the writer, in order
        self._opened_at = 0.0
        self._stopping = False
        self._thread = threading.Thread(target=self._run, name="footfall-writer", daemon=True)
        self.batches_committed = 0
        self.events_committed = 0
        self.last_error: str | None = None

    def start(self) -> None:
        self._thread.start()

    def submit(self, events: list[Event], on_loop: bool = False) -> tuple[Batch, int]:
        """Queue events; returns the batch and the index of the first of them in it.

        With ``on_loop`` the batch's future for the running event loop is created while the
        batch is still open, so it cannot complete before the caller starts waiting.
        """
        with self._condition:
            if self._stopping:
                raise RuntimeError("the writer is shutting down")
            batch = self._batch
            if batch is not None and batch.events and len(batch.events) + len(events) > self._max_events:
                # Full: close it now rather than let it grow past the limit before the writer wakes.
                self._full.append(batch)
                batch = self._batch = None
            if batch is None:
                batch = self._batch = Batch()
                self._opened_at = time.monotonic()
                self._condition.notify()
            start = len(batch.events)
            batch.events.extend(events)
            if on_loop:
                batch.loop_future()
            if len(batch.events) >= self._max_events:
                self._condition.notify()
            return batch, start

    async def write(self, events: list[Event]) -> list[bytes]:
        """Submit and wait (async); returns the events' log keys once they are durable."""
        batch, start = self.submit(events, on_loop=True)
        await batch.loop_future()
        return batch.keys[start : start + len(events)]

    def write_sync(self, events: list[Event], timeout: float | None = 60) -> list[bytes]:
        batch, start = self.submit(events)
        batch.wait(timeout)
        return batch.keys[start : start + len(events)]

    def _take_batch(self, busy: bool = False) -> Batch | None | bool:
        """The next batch to commit; None once stopping; with ``busy`` (work between commits
        waits), False instead of waiting for a batch."""
        with self._condition:
            while True:
                if busy and self._hold is not None and self._hold():
                    return False  # the backlog first: the batch waits (it stays open, and grows)
                if self._full:
                    return self._full.popleft()
                if self._batch is not None:
                    due = self._opened_at + self._interval
                    remaining = due - time.monotonic()
                    if self._stopping or remaining <= 0 or len(self._batch.events) >= self._max_events:
                        batch, self._batch = self._batch, None
                        return batch
                    if busy:
                        return False
                    self._condition.wait(remaining)
                elif self._stopping:
                    return None
                elif busy:
                    return False
                elif not self._condition.wait(self._idle_seconds) and self._on_idle is not None:
                    self._condition.release()
                    try:
                        self._on_idle()
                    finally:
                        self._condition.acquire()

    def _run(self) -> None:
        busy = False
        while True:
            batch = self._take_batch(busy)
            if batch is None:
                return
            if batch is False:
                busy = self._run_between()
                continue
            try:
                batch.keys = self._commit(batch.events)
            except BaseException as error:  # noqa: BLE001 - every waiter must be woken
                log.exception("commit of %d events failed", len(batch.events))
                self.last_error = f"{type(error).__name__}: {error}"
                batch.error = error
                batch.finish()
                continue
            self.batches_committed += 1
            self.events_committed += len(batch.events)
            self.last_error = None
            try:  # before the answer: an acknowledged event is already in the live view
                self._after_commit(batch.events, batch.keys)
            except Exception:
                log.exception("after-commit work failed")
            batch.finish()
            busy = self._run_between()

    def _run_between(self) -> bool:
        if self._between is None:
            return False
        try:
            return self._between()
        except Exception:
            log.exception("work between commits failed")
            return False

    def stop(self) -> None:
        with self._condition:
            self._stopping = True
            self._condition.notify_all()
        self._thread.join()
