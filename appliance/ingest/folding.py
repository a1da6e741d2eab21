"""The folding thread: the aggregation step beside the writer, not between its commits.

With the intake (:mod:`storage.intake`) a commit takes no lock of the main store, so the
writer thread need not fold between commits: this thread runs
:meth:`Recorder.aggregate_slice <appliance.ingest.recording.Recorder.aggregate_slice>` when
it is due (a second after the last fold, ``aggregate_max_events`` waiting, or the backlog
at its bound), one slice per hold of the coordinator's mutex, and about once a second
flushes the main store so the intake can drop what it holds durably
(:meth:`Recorder.flush_to_disk`). The writer's only job is then the commit, and a tracker
request waits for no fold, only for the interpreter lock the fold shares.
"""

from __future__ import annotations

import logging
import threading
import time

from appliance.ingest.recording import Recorder

log = logging.getLogger(__name__)

FLUSH_SECONDS = 1.0  # how often the main store is flushed for the intake's sake
_LONGEST_WAIT = 0.25  # at most this long between two looks at whether a fold is due


class FoldingThread:
    def __init__(self, recorder: Recorder) -> None:
        self._recorder = recorder
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name="footfall-folding", daemon=True)

    def start(self) -> None:
        self._recorder.folding_elsewhere = True
        self._thread.start()

    def stop(self) -> None:
        self._stopping.set()
        self._recorder.wake_folding()
        self._thread.join()
        self._recorder.folding_elsewhere = False
        self._recorder.wake_folding()  # a commit waiting for this thread folds itself now

    def _run(self) -> None:
        recorder = self._recorder
        next_flush = time.monotonic() + FLUSH_SECONDS
        while not self._stopping.is_set():
            try:
                more = recorder.aggregate_slice()
                if time.monotonic() >= next_flush:
                    recorder.flush_to_disk()
                    next_flush = time.monotonic() + FLUSH_SECONDS
            except Exception:  # the events stay queued (and staged); the next round retries
                log.exception("folding committed events failed")
                more = False
                self._stopping.wait(1.0)
            if not more:
                recorder.wait_until_due(min(_LONGEST_WAIT, max(0.0, next_flush - time.monotonic())))
