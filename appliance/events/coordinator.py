"""The write coordinator: one data dir's discipline between commits, aggregation and reads.

Three things share it. The aggregation step folds committed batches into counters, sketches,
visits and goals under :attr:`WriteCoordinator.mutex`; so does the ingest writer's commit when
it writes to the store itself (with the intake, :mod:`storage.intake`, a commit takes no lock
of the store and none of what follows holds it back: the rule for commits below is then for
the journal's, a standby's and a tight disk's). A goal's
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
its days. Handing the mutex over on every release (a fair lock) cost the paced tracker and its
dashboard readers throughput, as each hand-over waits for the next thread to be scheduled.

One acquisition has a rule of its own: a commit takes the mutex :meth:`~WriteMutex.ahead` of
every plain acquisition that arrives while it waits (tracker requests wait for the commit; a
fold or a read can wait one commit). With plain acquisitions only, paced at 1,000 events/s with
two dashboard readers, the writer waited for the mutex half of the time, 39 % of that behind
folds that had begun after it queued (a reader's next query, or the folding thread taking it
straight back). Plain acquisitions already queued keep their turn.

Background work that needs the events committed before it folded in, not every one
committed while it reads (compaction: the rows a closed day has), asks for a *folded* read
(:meth:`WriteCoordinator.folded`): it waits, without the mutex, for the thread that folds on
its own to have taken them, then reads without settling. Two minutes into a bulk load of the
seed's month, compaction's settled reads had the job runner waiting for the mutex 67 % of the
time (the load's commits take it first, the backlog refills as it goes) and folding the load's
backlog 11 %, so the days the load passed were compacted 8-9 s each and the load ended with a
third of them still in the event log.

The aggregation step itself is bound later (:meth:`bind`) by the part that owns it, so the
readers below it in the import order need only this object.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Callable, Iterator

from appliance.turns import TURNS
from storage import StorageFullError
from storage.environment import Store

log = logging.getLogger(__name__)

LET_IN_SECONDS = 1.0  # at most this long a loop waits for a waiting thread to have the mutex
FOLDED_WAIT_SECONDS = 30.0  # at most this long a folded read waits for the folding thread


class WriteMutex:
    """The coordinator's reentrant mutex. It knows whether threads are waiting for it, so a
    loop that takes it once per step can let them in between two steps
    (:meth:`let_waiters_in`), and a commit can take it :meth:`ahead` of the folds and reads
    arriving while it waits; every other acquisition is a plain one."""

    def __init__(self) -> None:
        self._state = threading.Condition(threading.Lock())
        self._waiting = 0
        self._waiting_ahead = 0  # of them, acquisitions that go ahead (commits)
        self._arrivals = 0  # plain acquisitions numbered as they queue
        self._ahead_of = 0  # while one waits ahead: the first arrival number it goes before
        self._granted = 0  # acquisitions that had to wait, so far
        self._owner: int | None = None
        self._depth = 0

    @property
    def waiting(self) -> int:
        """How many threads wait for the mutex."""
        return self._waiting

    def _free_for(self, arrival: int | None) -> bool:
        """Whether an acquisition may take the mutex now: ``arrival`` None goes ahead, a
        plain one only if it queued before every acquisition waiting ahead."""
        if self._owner is not None:
            return False
        return arrival is None or not self._waiting_ahead or arrival < self._ahead_of

    def acquire(self, blocking: bool = True, ahead: bool = False) -> bool:
        """Take the mutex (again, in the thread that holds it). With ``ahead``, before every
        plain acquisition that arrives while it waits (the releasing thread's own next one
        included); plain ones already waiting keep their turn."""
        me = threading.get_ident()
        if self._owner == me:  # only this thread sets the owner to itself
            self._depth += 1
            return True
        with self._state:
            arrival = None if ahead else self._arrivals
            if not self._free_for(arrival):
                if not blocking:
                    return False
                self._waiting += 1
                if ahead:
                    if not self._waiting_ahead:
                        self._ahead_of = self._arrivals
                    self._waiting_ahead += 1
                else:
                    self._arrivals += 1
                try:
                    while not self._free_for(arrival):
                        self._state.wait()
                finally:
                    self._waiting -= 1
                    self._waiting_ahead -= ahead
                self._granted += 1
                self._state.notify_all()  # let_waiters_in, and plain waiters behind an ahead one
            self._owner = me
            self._depth = 1
        return True

    def release(self) -> None:
        if self._owner != threading.get_ident():
            raise RuntimeError("release of a mutex this thread does not hold")
        self._depth -= 1
        if self._depth:
            return
        with self._state:
            self._owner = None
            if self._waiting:
                self._state.notify_all()

    def __enter__(self) -> bool:
        return self.acquire()

    def __exit__(self, *exc_info) -> None:
        self.release()

    @contextlib.contextmanager
    def ahead(self) -> Iterator[None]:
        """Hold the mutex, taken before the plain acquisitions arriving while it waits (a
        commit: the tracker requests of its batch wait for it, a fold or a read can wait one
        commit)."""
        self.acquire(ahead=True)
        try:
            yield
        finally:
            self.release()

    def held(self) -> bool:
        """Whether the calling thread holds the mutex."""
        return self._owner == threading.get_ident()

    def let_waiters_in(self, timeout: float | None = None) -> None:
        """Between two steps of a loop, the mutex released: if a thread waits for it, return
        once one has had it (at most ``timeout`` seconds), so the loop's next step queues
        behind it. Nothing to do in a thread that still holds it (an outer hold)."""
        if self.held():
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
        self._folds: threading.Condition | None = None  # notified as folds commit
        self._backlog: Callable[[], tuple[int, int, int, bool]] = lambda: (0, 0, 0, False)

    def bind(
        self, flush: Callable[[], int], slices_waiting: Callable[[], int] | None = None,
        fold_slice: Callable[[], object] | None = None, folds: threading.Condition | None = None,
        backlog: Callable[[], tuple[int, int, int, bool]] | None = None,
    ) -> None:
        """Set the aggregation step: ``flush()`` folds pending events in, returns how many;
        ``slices_waiting()`` says how many slices wait, ``fold_slice()`` folds in the oldest;
        ``folds`` is notified as folds commit, and ``backlog()`` (called holding it) says how
        many events folds have taken and committed ever, how many wait, and whether a thread
        folds on its own."""
        self._flush = flush
        if slices_waiting is not None and fold_slice is not None:
            self._slices_waiting, self._fold_slice = slices_waiting, fold_slice
        if folds is not None and backlog is not None:
            self._folds, self._backlog = folds, backlog

    def flush(self) -> int:
        """Fold every committed event into the aggregates, waiting for a fold in progress."""
        with self.mutex:
            return self._flush()

    @contextlib.contextmanager
    def settled(self) -> Iterator:
        """A read transaction that sees every acknowledged event aggregated. On a full disk
        the read still answers, from what is aggregated; the rest stays pending. A request
        reads (and computes from the read) in its turn (:mod:`appliance.turns`), unless it
        holds the mutex already."""
        with contextlib.nullcontext() if self.mutex.held() else TURNS.turn(), self._settled() as txn:
            yield txn

    @contextlib.contextmanager
    def folded(self) -> Iterator:
        """A read transaction in which the events committed before the call are folded in (not
        necessarily those committed since: a closed day's compaction, whose rows came before).
        Waits, without the mutex, for the thread folding on its own to take them (at most
        :data:`FOLDED_WAIT_SECONDS`), then reads without settling; else (no such thread, or it
        did not) it is :meth:`settled`. Pending rows committed since stay in the log for
        compaction as ever."""
        if self._wait_folded():
            with self._store.read() as txn:
                yield txn
        else:
            with self.settled() as txn:
                yield txn

    def _wait_folded(self) -> bool:
        if self._folds is None or self.mutex.held():
            return False
        with self._folds:
            taken, _, waiting, elsewhere = self._backlog()
            target = taken + waiting  # every event taken so far, or waiting now, once committed

            def folded() -> bool:
                taken_now, done_now, left, _ = self._backlog()
                return done_now >= target or (not left and done_now == taken_now)

            if folded() or not elsewhere:
                return folded()
            done = self._folds.wait_for(folded, FOLDED_WAIT_SECONDS)
        if not done:
            log.info("a folded read waited %.0f s for %d events to be folded: it settles", FOLDED_WAIT_SECONDS, waiting)
        return done

    @contextlib.contextmanager
    def _settled(self) -> Iterator:
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
