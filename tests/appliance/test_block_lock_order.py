"""A day's block is read without holding the day's lock while waiting for the write mutex.

The writer holds the coordinator's mutex while it re-derives a day (reading the day's block),
and a reader (a goal's backfill, a query) reads the same day's block through a settled read,
which takes the mutex. Were the reader to hold the day's lock while it waited for the mutex,
the two would wait for each other for ever (the suite once hung so: a goal backfill against
the idle writer's re-derivation).
"""

from __future__ import annotations

import threading
import time

import pytest

from appliance.models import Event, EventKind
from appliance.periods import day_bucket


@pytest.mark.timeout(60)  # the old lock order hangs: this turns it into a failure
def test_a_mutex_holder_reads_a_block_a_waiting_reader_asked_for(make_appliance):
    appliance = make_appliance(ingest_intake="false")
    site = appliance.sites.add("locks.test")
    now = time.time()
    appliance.writer.write_sync([Event(kind=EventKind.PAGEVIEW, site_id=site.id, timestamp=now, name="pageview",
                                       visitor_id=1, path="/")])
    day = day_bucket(now)
    mutex, columns = appliance.coordinator.mutex, appliance.columns
    held, reader_waits, writer_read = threading.Event(), threading.Event(), []

    def writer() -> None:  # as the writer re-deriving a day under the mutex
        with mutex:
            held.set()
            reader_waits.wait(10)
            writer_read.append(columns.block(site.id, day).count)

    holder = threading.Thread(target=writer, daemon=True)
    holder.start()
    assert held.wait(10)
    reader_read = []
    reader = threading.Thread(target=lambda: reader_read.append(columns.block(site.id, day).count), daemon=True)
    reader.start()
    deadline = time.monotonic() + 10
    while mutex._waiting == 0 and time.monotonic() < deadline:  # the reader waits for the mutex
        time.sleep(0.001)
    assert mutex._waiting == 1
    reader_waits.set()
    holder.join(10)
    reader.join(10)
    assert writer_read == [1] and reader_read == [1]  # both read the day: neither waits on the other
