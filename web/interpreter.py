"""The serving process's GIL hand-over interval (``[server] switch_interval_ms``).

Python threads share one interpreter lock. A thread that wants it while another runs Python
asks for it and waits up to :func:`sys.getswitchinterval` (5 ms by default) before the
running thread is made to let go. In ``footfall serve`` the event loop (every tracker
request) shares the lock with the ingest writer (commits and the aggregation step), query
worker threads and report rendering: each hand-over a request needs (reading it,
answering it once its batch is durable) could wait up to 5 ms behind them. A shorter
interval bounds that wait, at the cost of more frequent hand-overs between busy threads.

The requests that run in worker threads (Litestar's ``sync_to_thread`` handlers: every
report, page and API answer) run in turns (:class:`TurnTaking`, :mod:`appliance.turns`), so
a tracker request shares the lock with one of them at a time, not with all.
"""

from __future__ import annotations

import logging
import sys
from concurrent.futures import Future, ThreadPoolExecutor

from appliance.turns import TURNS

#: threads for requests that run off the event loop (most wait for their turn; a long poll
#: waits without one)
REQUEST_THREADS = 8

log = logging.getLogger(__name__)


def set_switch_interval(milliseconds: float) -> None:
    """Set the interpreter's thread switch interval; 0 or less keeps Python's default."""
    if milliseconds > 0:
        sys.setswitchinterval(milliseconds / 1000)
    log.info("GIL switch interval: %.2f ms", sys.getswitchinterval() * 1000)


class TurnTaking(ThreadPoolExecutor):
    """The executor Litestar runs its worker-thread handlers in: each runs in its turn."""

    def __init__(self) -> None:
        super().__init__(max_workers=REQUEST_THREADS, thread_name_prefix="footfall-request")

    def submit(self, fn, /, *args, **kwargs) -> Future:
        return super().submit(_in_turn, fn, *args, **kwargs)


def _in_turn(fn, *args, **kwargs):
    with TURNS.turn(request=True):
        return fn(*args, **kwargs)
