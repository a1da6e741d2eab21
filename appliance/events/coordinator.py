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

The aggregation step itself is bound later (:meth:`bind`) by the part that owns it, so the
readers below it in the import order need only this object.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator

from storage import StorageFullError
from storage.environment import Store


class WriteCoordinator:
    def __init__(self, store: Store) -> None:
        self._store = store
        self.mutex = threading.RLock()
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
        with self.mutex:
            with contextlib.suppress(StorageFullError):
                self._flush()
            txn = reader.__enter__()
        try:
            yield txn
        finally:
            reader.__exit__(None, None, None)
