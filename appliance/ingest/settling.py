"""Settled reads folded on the writer thread, between its commits.

A settled read (:meth:`WriteCoordinator.settled <appliance.events.coordinator.WriteCoordinator.settled>`)
must see every acknowledged event aggregated, and its snapshot must hold no committed event
that is not (the column store keys its blocks on the day's counted events). A query thread
used to fold the waiting events in itself, holding the coordinator's mutex: every commit, and
every tracker request waiting for one, queued behind the query's fold (the writer spent half
of a paced run at 1,000 events/s waiting for that mutex while two clients read the
dashboard). Here the query thread asks the writer instead and waits: the writer, between two
commits, folds what waits (a backlog slice by slice, committing any batch that is ready in
between), then, holding the mutex so that nothing commits meanwhile, lets every waiting
reader open its read transaction and waits for them to say so (at most
:data:`OPEN_SECONDS`). Commits no longer wait for query threads; one fold serves every reader
that asked meanwhile. A reader the writer cannot serve (no writer running, the writer thread
itself, a thread holding the mutex, nothing waiting to fold, or one too slow to open in
time) falls back to folding under the
mutex itself, as before.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections import deque
from collections.abc import Callable

from storage import StorageFullError

log = logging.getLogger(__name__)

#: How long the writer holds commits back for a released reader to open its transaction; a
#: reader later than that folds in under the mutex itself.
OPEN_SECONDS = 0.01
#: How often a waiting reader checks that the writer still runs.
CHECK_SECONDS = 0.5

WAITING, OPEN, OPENED, EXPIRED = range(4)


class _Request:
    __slots__ = ("lock", "go", "done", "state")

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.go = threading.Event()
        self.done = threading.Event()
        self.state = WAITING


class SettledReads:
    """Readers' requests for a settled snapshot, served by the writer thread."""

    def __init__(
        self,
        mutex,
        waiting: Callable[[], int],
        slices_waiting: Callable[[], int],
        fold_slice: Callable[[], object],
        fold_all: Callable[[], object],
    ) -> None:
        self._mutex = mutex
        self._waiting = waiting
        self._slices_waiting = slices_waiting
        self._fold_slice = fold_slice
        self._fold_all = fold_all
        self._requests: deque[_Request] = deque()
        self._lock = threading.Lock()
        self._wake: Callable[[], bool] | None = None
        self._thread: threading.Thread | None = None
        self.served = 0  # readers the writer served (for tests and the bench)
        self.fell_back = 0  # readers that folded in themselves after asking

    def attach(self, wake: Callable[[], bool], thread: threading.Thread) -> None:
        """Serve readers on ``thread`` (the writer's), woken by ``wake()`` (False once it stops)."""
        self._wake, self._thread = wake, thread

    @property
    def asked(self) -> bool:
        """Whether a reader waits for the writer."""
        return bool(self._requests)

    # -- the reader's side ------------------------------------------------------------------
    def open(self, enter: Callable[[], object]) -> object | None:
        """Have the writer settle, then ``enter()`` the read transaction while it holds
        commits back; returns the transaction, or None when the caller must settle itself."""
        wake, thread = self._wake, self._thread
        if wake is None or threading.current_thread() is thread or not self._waiting():
            return None
        if self._mutex._is_owned():  # the writer would wait for this thread's mutex: settle here
            return None
        request = _Request()
        with self._lock:
            self._requests.append(request)
        if not wake():
            return self._expire(request)
        while not request.go.wait(CHECK_SECONDS):
            if thread is None or not thread.is_alive():
                return self._expire(request)
        with request.lock:
            if request.state == OPEN:  # the writer holds commits back until done (or its deadline)
                try:
                    return enter()
                finally:
                    request.state = OPENED
                    request.done.set()
                    with self._lock:
                        self.served += 1
        return self._expire(request)  # too late: the writer went on committing

    def _expire(self, request: _Request) -> object | None:
        with request.lock:
            request.state = EXPIRED
        with self._lock:
            self.fell_back += 1
        return None

    # -- the writer's side, between commits -------------------------------------------------
    def between(self) -> bool:
        """Serve waiting readers: fold one slice of a backlog (True: call again after any
        ready commit), or fold the rest and let the readers open. Returns whether more work
        waits."""
        if self._slices_waiting() > 1:
            with self._mutex, contextlib.suppress(StorageFullError):
                self._fold_slice()
            return True
        with self._lock:
            requests = list(self._requests)
            self._requests.clear()
        released: list[_Request] = []
        try:
            with self._mutex:
                with contextlib.suppress(StorageFullError):  # the read answers from what is aggregated
                    self._fold_all()
                for request in requests:
                    with request.lock:
                        if request.state == WAITING:
                            request.state = OPEN
                            released.append(request)
                    request.go.set()
                deadline = time.monotonic() + OPEN_SECONDS
                for request in released:
                    request.done.wait(max(0.0, deadline - time.monotonic()))
        finally:
            for request in requests:  # on an error too: nobody waits for a writer that gave up
                with request.lock:
                    if request.state in (WAITING, OPEN):
                        request.state = EXPIRED
                request.go.set()
        return self.asked
