"""Synchronous replication with a stuck standby, in process with a driven clock.

A standby whose apply fails (disk full) keeps asking after the same cursor: it stays
connected but confirms nothing. Once commits have waited longer than ``sync_timeout_ms``
without the standby confirming anything, acknowledgements stop waiting (counted, shown in the
status and /metrics); the first confirmation that moves ends it and acknowledgements wait again.
"""

from __future__ import annotations

import asyncio
import time
from concurrent.futures import ThreadPoolExecutor

from appliance.models import Event, EventKind
from appliance.operations.metrics import replication_gauges

TIMEOUT = 2.0


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _commit(appliance, site, count=2):
    now = time.time() - 60
    events = [
        Event(kind=EventKind.PAGEVIEW, site_id=site.id, timestamp=now + i / 1000, name="pageview",
              visitor_id=11 + i, path=f"/s{i}")
        for i in range(count)
    ]
    appliance.record_sync(events)
    return appliance.recorder.last_sequence


async def _waits_until_confirmed(source, sequence) -> None:
    """acknowledged() does not return until the standby confirms ``sequence``."""
    ack = asyncio.create_task(source.acknowledged())
    for _ in range(5):  # let it reach its wait (yields to the loop, no timed sleep)
        await asyncio.sleep(0)
    assert not ack.done()
    source.confirm(sequence)
    await asyncio.wait_for(ack, 5)  # woken by the confirmation, not by the 2 s timeout


async def _returns_at_once(source) -> None:
    ack = asyncio.create_task(source.acknowledged())
    await asyncio.sleep(0)
    assert ack.done()


def _scenario(make_appliance):
    appliance = make_appliance(replication_sync="true", replication_sync_timeout_ms=int(TIMEOUT * 1000))
    source = appliance.replication
    clock = source.clock = Clock()
    return appliance, source, clock, appliance.sites.add("stuck.test")


def test_stuck_standby_stops_acknowledgements_waiting_until_it_confirms_again(make_appliance):
    appliance, source, clock, site = _scenario(make_appliance)
    assert source.sync
    first = _commit(appliance, site)
    source.pull(first, 100, 0)  # the standby holds everything so far
    assert source.confirmed == first and not source.degraded()

    # a healthy standby: the acknowledgement waits for its confirmation
    second = _commit(appliance, site)
    asyncio.run(_waits_until_confirmed(source, second))
    assert source.sync_timeouts == 0 and source.sync_degraded_acks == 0

    # the standby's disk fills: it keeps asking after `second`, confirming nothing new
    stuck_at = second
    third = _commit(appliance, site)
    clock.now += TIMEOUT - 0.1
    source.pull(stuck_at, 100, 0)
    assert source.standby_connected() and not source.degraded()  # not yet a whole timeout
    clock.now += 0.2
    source.pull(stuck_at, 100, 0)  # still polling: connected, but no progress for > timeout
    assert source.standby_connected() and source.degraded()
    for _ in range(3):
        _commit(appliance, site)
        asyncio.run(_returns_at_once(source))
    assert source.sync_degraded_acks == 3
    status = source.status()
    assert status["sync_degraded"] is True and status["sync_degraded_acks"] == 3, status
    assert status["standby_confirmed"] == stuck_at < third
    gauges = {name: value for name, _, value in replication_gauges(status)}
    assert gauges["footfall_replication_sync_degraded"] == 1
    assert gauges["footfall_replication_sync_degraded_acks"] == 3

    # space freed: its next pull confirms a later batch, and acknowledgements wait again
    clock.now += 0.5
    source.pull(third, 100, 0)
    assert not source.degraded() and source.status()["sync_degraded"] is False
    latest = _commit(appliance, site)
    asyncio.run(_waits_until_confirmed(source, latest))
    assert source.sync_degraded_acks == 3 and not source.degraded()


def test_a_slow_standby_that_confirms_is_not_degraded(make_appliance):
    appliance, source, clock, site = _scenario(make_appliance)
    start = _commit(appliance, site)
    source.pull(start, 100, 0)
    confirmed = start
    for _ in range(6):  # always behind, but each pull confirms more within the timeout
        _commit(appliance, site)
        _commit(appliance, site)
        clock.now += TIMEOUT * 0.75
        confirmed += 2
        source.pull(confirmed, 100, 0)
        assert source.confirmed < appliance.recorder.last_sequence
        assert not source.degraded()
    assert source.status()["sync_degraded"] is False


def test_no_standby_connected_is_not_degraded(make_appliance):
    appliance, source, clock, site = _scenario(make_appliance)
    _commit(appliance, site)
    clock.now += 10 * TIMEOUT
    assert not source.standby_connected() and not source.degraded()
    asyncio.run(_returns_at_once(source))
    assert source.sync_degraded_acks == 0  # nothing to wait for: not counted as degraded


def test_a_thread_waiting_for_a_stuck_standby_does_not_wait_the_timeout(make_appliance):
    """``wait_acknowledged`` (the worker-thread wait) follows the same rules as the async one:
    it had its own loop that checked neither ``degraded()`` nor whether a standby was
    connected, so with a stuck standby every call waited the whole ``sync_timeout_ms``."""
    long_timeout = 60.0  # a wait of that length would fail the bounded result() below
    appliance = make_appliance(replication_sync="true", replication_sync_timeout_ms=int(long_timeout * 1000))
    source = appliance.replication
    clock = source.clock = Clock()
    site = appliance.sites.add("stuck-thread.test")
    with ThreadPoolExecutor(max_workers=1) as pool:
        # healthy: the thread waits until the standby confirms, and says it holds the events
        first = _commit(appliance, site)
        source.pull(first - 2, 100, 0)  # connected, holding less than everything
        waiting = pool.submit(source.wait_acknowledged)
        source.confirm(first)
        assert waiting.result(timeout=30) is True
        assert source.sync_timeouts == 0

        # stuck: polling after `first` for longer than the timeout, confirming nothing
        _commit(appliance, site)
        clock.now += long_timeout + 1
        source.pull(first, 100, 0)
        assert source.standby_connected() and source.degraded()
        for count in (1, 2):
            _commit(appliance, site)
            # answered at once (False: the standby does not hold them), not after 60 s
            assert pool.submit(source.wait_acknowledged).result(timeout=30) is False
            assert source.sync_degraded_acks == count
        assert source.sync_timeouts == 0

        # nobody polling any more: no wait either, and not counted as degraded
        clock.now += 10 * long_timeout
        assert not source.standby_connected()
        assert pool.submit(source.wait_acknowledged).result(timeout=30) is False
        assert source.sync_degraded_acks == 2
