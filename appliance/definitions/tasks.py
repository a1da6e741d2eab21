"""Background tasks with progress: the back-fills that follow a new or changed definition.

A goal's back-fill counts its history from the column blocks; a materialised segment's
back-fill writes its per-day figures. Both run in a daemon thread, report progress as a
small dict (``status``: queued, running, complete, superseded or failed; ``days_done``,
``days_total``), and can be waited for (tests, the CLI). One :class:`BackgroundTasks` per
owner keeps the threads and the progress by the definition's id.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

log = logging.getLogger(__name__)

Progress = dict[str, object]


class BackgroundTasks:
    def __init__(self, kind: str) -> None:
        self._kind = kind
        self.progress: dict[int, Progress] = {}
        self._threads: list[threading.Thread] = []
        self._lock = threading.Lock()

    def start(self, identifier: int, work: Callable[[Progress], None]) -> None:
        """Run ``work(progress)`` in a thread; an exception marks the task failed."""
        progress: Progress = {"status": "queued", "days_done": 0, "days_total": 0}
        self.progress[identifier] = progress

        def run() -> None:
            try:
                work(progress)
            except Exception as error:  # noqa: BLE001 - reported in the progress
                log.exception("%s %s: background task failed", self._kind, identifier)
                self.progress[identifier] = {"status": "failed", "error": str(error)}

        thread = threading.Thread(target=run, name=f"{self._kind}-{identifier}", daemon=True)
        with self._lock:
            self._threads = [t for t in self._threads if t.is_alive()] + [thread]
        thread.start()

    def status(self, identifier: int, default: Progress) -> Progress:
        return dict(self.progress.get(identifier, default))

    def forget(self, identifier: int) -> None:
        self.progress.pop(identifier, None)

    def wait(self, timeout: float = 60) -> None:
        """Wait for running tasks (tests, the CLI)."""
        deadline = time.monotonic() + timeout
        with self._lock:
            threads = list(self._threads)
        for thread in threads:
            thread.join(max(0.0, deadline - time.monotonic()))
