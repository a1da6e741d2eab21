"""The write coordinator: one data dir's discipline between commits, aggregation and reads.

Three things share it. The ingest writer commits batches and the aggregation step folds them
into counters, sketches, visits and goals, both under :attr:`WriteCoordinator.mutex`. A goal's
activation holds the mutex too, so no batch falls between reading the next sequence number
and counting the goal at ingest. And every read that must include each acknowledged event
asks for a *settled* snapshot: the mutex is taken (so an aggregation another thread started is
finished first), what is still pending is folded in, and the read transaction opens before
the mutex is released, so no commit falls in between. When more than a slice waits (a
second's events before the first query after a pause), all but the last slice is folded in
first, a slice per hold of the mutex, so commits (and the tracker requests waiting for them)
go on in between instead of waiting for the whole backlog.

"In between" needs more than releasing the mutex: a ``threading.RLock`` released while
the writer waits is taken straight back by the releasing thread, which is still running while
the woken writer is not, so right after a bulk load the first tracker request behind a query
waited for all its slices (0.3-0.6 s for 2-4 slices on two busy cores). So the mutex
(:class:`WriteMutex`) counts its waiters, and between two slices the read lets one of them
have it first (:meth:`WriteMutex.let_waiters_in`); a re-derivation run does the same between
its days. Every other acquisition stays a plain one: handing the mutex over on every release
(a fair lock) cost the paced tracker and its dashboard readers throughput, as each hand-over
waits for the next thread to be scheduled.

The aggregation step itself is bound later (:meth:`bind`) by the part that owns it, so the
readers below it in the import order need only this object.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator

from storage import StorageFullError
from storage.environment import Store

LET_IN_SECONDS = 1.0  # at most this long a loop waits for a waiting thread to have the mutex


class WriteMutex:
    """The coordinator's reentrant mutex. It knows whether threads are waiting for it, so a
    loop that takes it once per step can let them in between two steps
    (:meth:`let_waiters_in`); every other acquisition is a plain ``threading.RLock`` one."""

    def __init__(self) -> None:
        self._lock = threading.RLock()
        self._state = threading.Condition(threading.Lock())
        self._waiting = 0
        self._granted = 0  # acquisitions that had to wait, so far
        self._owner: int | None = None
        self._depth = 0

    @property
    def waiting(self) -> int:
        """How many threads wait for the mutex."""
        return self._waiting

    def acquire(self, blocking: bool = True) -> bool:
        if not self._lock.acquire(blocking=False):
            if not blocking:
                return False
            with self._state:
                self._waiting += 1
            try:
                self._lock.acquire()
            finally:
                with self._state:
                    self._waiting -= 1
                    self._granted += 1
                    self._state.notify_all()
        self._owner = threading.get_ident()
        self._depth += 1
        return True

    def release(self) -> None:
        if self._owner != threading.get_ident():
            raise RuntimeError("release of a mutex this thread does not hold")
        self._depth -= 1
        if not self._depth:
            self._owner = None
        self._lock.release()

    def __enter__(self) -> bool:
        return self.acquire()

    def __exit__(self, *exc_info) -> None:
        self.release()

    def let_waiters_in(self, timeout: float | None = None) -> None:
        """Between two steps of a loop, the mutex released: if a thread waits for it, return
        once one has had it (at most ``timeout`` seconds), so the loop's next step queues
        behind it. Nothing to do in a thread that still holds it (an outer hold)."""
        if self._owner == threading.get_ident():
            return
        with self._state:
            if self._waiting:
                granted = self._granted
                self._state.wait_for(lambda: self._granted != granted, LET_IN_SECONDS if timeout is None else timeout)


class WriteCoordinator:
    def __init__(self, store: Store) -> None:
        self._store = store
        self.mutex = WriteMutex()
        self._flush: Callable[[], int] = lambda: 0
        self._slices_waiting: Callable[[], int] = lambda: 0
        self._fold_slice: Callable[[], object] = lambda: None

    def bind(
        self, flush: Callable[[], int], slices_waiting: Callable[[], int] | None = None,
        fold_slice: Callable[[], object] | None = None,
    ) -> None:
        """Set the aggregation step: ``flush()`` folds pending events in, returns how many;
        ``slices_waiting()`` says how many slices wait, ``fold_slice()`` folds in the oldest."""
        self._flush = flush
        if slices_waiting is not None and fold_slice is not None:
            self._slices_waiting, self._fold_slice = slices_waiting, fold_slice

    def flush(self) -> int:
        """Fold every committed event into the aggregates, waiting for a fold in progress."""
        with self.mutex:
            return self._flush()

    @contextlib.contextmanager
    def settled(self) -> Iterator:
        """A read transaction that sees every acknowledged event aggregated. On a full disk
        the read still answers, from what is aggregated; the rest stays pending."""
        reader = self._store.read()
        with contextlib.suppress(StorageFullError):
            for _ in range(self._slices_waiting() - 1):  # the backlog, commits in between
                with self.mutex:
                    self._fold_slice()
                self.mutex.let_waiters_in()
        with self.mutex:
            with contextlib.suppress(StorageFullError):
                self._flush()
            txn = reader.__enter__()
        try:
            yield txn
        finally:
            reader.__exit__(None, None, None)
