"""One-shot walks over every day read their column blocks for themselves.

A raw export, a goal's back-fill, a person's export or erasure and ``Appliance.events`` read
each day's block once. Through the shared block cache they pushed out what queries read and
kept days nobody asked about, up to the cache's bound; like a re-derivation run, each keeps
what it reads in its own :class:`~appliance.events.block_cache.ScanBlocks` now, and the
answers are those read through the cache.
"""

from __future__ import annotations

import time

from appliance.definitions.goals import GoalInput
from appliance.exports.raw_events import RawEvents
from appliance.models import Event, EventKind
from appliance.periods import day_bucket, day_from_number

DAY = 86_400


def _history(make_appliance):
    appliance = make_appliance()
    site = appliance.sites.add("walks.test", timezone="UTC")
    midnight = time.time() // DAY * DAY
    alice = appliance.personal.visitor_of(site, "alice")
    events = [
        Event(kind=EventKind.CUSTOM if n % 5 == 0 else EventKind.PAGEVIEW, site_id=site.id,
              timestamp=midnight - back * DAY + 3600 + n * 60, name="Signup" if n % 5 == 0 else "pageview",
              visitor_id=alice if n % 7 == 0 else n % 7, user_hashed=n % 7 == 0, path=f"/p/{n % 3}")
        for back in (3, 2, 1) for n in range(40)
    ]
    appliance.record_sync(events)
    appliance.flush_aggregates()
    return appliance, site, midnight


def _walks(appliance, site, midnight):
    first, last = day_from_number(day_bucket(midnight - 3 * DAY)), day_from_number(day_bucket(midnight))
    exported = b"".join(RawEvents(appliance.stats.scans, appliance.strings).stream(site, first, last))
    read = appliance.read_events(site, midnight - 3 * DAY, midnight)
    personal = appliance.personal.export(site, "alice")
    return exported, read, personal


def test_walks_leave_the_shared_block_cache_as_it_was(make_appliance):
    appliance, site, midnight = _history(make_appliance)
    through_cache = _walks(appliance, site, midnight)  # the cache may serve these: a baseline
    assert through_cache[0].count(b"\n") == 120 and len(through_cache[1]) == 120
    assert len(through_cache[2]) == 18  # the visitor of n % 7 == 0 with user_id alice

    appliance.columns.forget()
    assert len(appliance.columns.cache) == 0
    assert _walks(appliance, site, midnight) == through_cache
    appliance.goals.create(site.id, GoalInput(name="Signed up", kind="event", event="Signup"))
    appliance.goals.wait()
    assert len(appliance.columns.cache) == 0  # every walk read every day's block, and kept none
