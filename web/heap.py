"""The serving process's heap and the cyclic garbage collector.

Python's collector pauses the whole process while it walks every tracked object of the
generation it collects, and a full (oldest-generation) collection walks them all: in a
serving process that is ~140,000 objects of imported modules, the Litestar app, templates and
the open appliance, none of which ever becomes garbage. Measured under ingest load on the
2-core machine, those full collections paused the event loop and the ingest writer for
120-180 ms every few seconds, the largest share of the tracker's p99 latency.

:func:`freeze_startup_heap` runs once the appliance is open (the last startup step of
``footfall serve``'s app): it collects what start-up left behind, then moves every surviving
object into the collector's permanent generation (:func:`gc.freeze`, as CPython's docs advise
for long-running servers), so later collections walk only what requests and traffic
created. Frozen objects are still freed by reference counting; only a reference cycle among
them would be kept, and start-up's cycles are collected just before the freeze.
"""

from __future__ import annotations

import gc
import logging

log = logging.getLogger(__name__)


def freeze_startup_heap() -> None:
    """Collect start-up's garbage, then exclude what survives from later collections."""
    gc.collect()
    gc.freeze()
    log.info("garbage collector: %d start-up objects frozen", gc.get_freeze_count())
