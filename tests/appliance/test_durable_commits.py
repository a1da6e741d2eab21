"""A commit is flushed before its batch is answered; the aggregation step's writes are not
(their events stay in ``pending`` until they commit, and a durable write's flush carries them).
See :meth:`storage.Store.write`."""

from __future__ import annotations

import time

from appliance.models import Event, EventKind


class _Flushes:
    def __init__(self, env) -> None:
        self._env = env
        self.forced: list[bool] = []

    def sync(self, force: bool = False) -> None:
        self._env.sync(force)
        self.forced.append(force)

    def __getattr__(self, name):
        return getattr(self._env, name)


def test_commits_are_durable_and_the_aggregation_step_is_not(make_appliance):
    appliance = make_appliance(ingest_aggregate_interval_ms=3_600_000, ingest_aggregate_max_events=1_000, ingest_intake="false")
    site = appliance.sites.add("durable.test")
    store = appliance.store
    real = store.env
    store.env = counted = _Flushes(real)
    try:
        now = time.time()
        events = [Event(kind=EventKind.PAGEVIEW, site_id=site.id, timestamp=now - 60 + step, name="pageview",
                        visitor_id=step % 2 + 1, path="/") for step in range(4)]
        appliance.recorder.commit(events)
        assert counted.forced == [True]
        assert appliance.recorder.waiting == 4
        appliance.coordinator.flush()  # a settled read folds what waits: a derived write
        assert appliance.recorder.waiting == 0
        assert counted.forced == [True]
        table = appliance.visits  # the idle tick closing idle visits: derived too
        table.idle.listed_at = 0.0
        assert table.close_idle(now + 3 * 3600) == 2 and len(table) == 0
        assert counted.forced == [True]
    finally:
        store.env = real
