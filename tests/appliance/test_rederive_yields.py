"""A long re-derivation run lets ingest commit between its days.

The hourly job re-derives every dirty day (after an import, dozens), each taking up to
seconds under the write coordinator's mutex. It takes the mutex one day at a time: another
thread waiting for it (the writer with a batch to commit) gets it between two days, and the
figures come out the same as with in-order arrival.
"""

from __future__ import annotations

import threading
import time

from appliance.ingest import rederive
from tests.appliance.test_arrival_order import _days, report, script, send

DAY = 86_400


def test_a_forced_run_releases_the_mutex_between_days(make_appliance, monkeypatch):
    monkeypatch.setattr(rederive, "IMMEDIATE_EVENTS", -1)  # every dirty day waits for the job
    appliance = make_appliance()
    ordered, shuffled = appliance.sites.add("ordered.test"), appliance.sites.add("shuffled.test")
    midnight = time.time() // DAY * DAY
    specs = [spec for back in (4, 3, 2) for spec in script(back, midnight - back * DAY + 9 * 3600, visitors=12)]
    appliance.visits.horizon = 0.0  # in-order history is exact incrementally
    send(appliance, ordered, specs, shuffled=False)
    appliance.visits.horizon = time.time()
    send(appliance, shuffled, specs, shuffled=True)
    rederiver = appliance.rederiver
    assert len(rederiver.dirty) >= 3

    mutex = appliance.coordinator.mutex
    contender_had_it = threading.Event()

    def contend():
        with mutex:
            contender_had_it.set()

    one_day = rederiver._rederive_one
    calls = []

    def watched(key, *rest):
        calls.append(key)
        if len(calls) == 1:
            threading.Thread(target=contend, daemon=True).start()
        elif len(calls) == 2:
            # between two days the run holds no mutex: the waiting thread gets it now
            assert contender_had_it.wait(30), "the run kept the mutex between days"
        return one_day(key, *rest)

    monkeypatch.setattr(rederiver, "_rederive_one", watched)
    assert rederiver.run(force=True) >= 3
    assert not rederiver.dirty
    first, last = _days([spec["ts"] for spec in specs])
    assert report(appliance, shuffled, first, last) == report(appliance, ordered, first, last)
