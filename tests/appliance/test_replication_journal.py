"""The primary's replication journal, in process: rows in commit order with their sequences,
a cursor past the trimmed front refused with 410, and no journal at all when switched off."""

from __future__ import annotations

import time

import pytest

from appliance.errors import DomainError
from appliance.models import Event, EventKind
from appliance.operations.replication import JournalGap


def _events(site, count, start=0):
    now = time.time() - 60
    return [
        Event(kind=EventKind.PAGEVIEW, site_id=site.id, timestamp=now + i / 1000, name="pageview",
              visitor_id=7 + i, path=f"/j{start + i}")
        for i in range(count)
    ]


def test_pulls_follow_commit_order_and_confirm(make_appliance):
    appliance = make_appliance()
    site = appliance.sites.add("journal.test")
    ids = appliance.record_sync(_events(site, 5)) + appliance.record_sync(_events(site, 3, start=5))
    pulled = appliance.replication.pull(0, 4, 0)
    assert [sequence for sequence, _ in pulled.events] == [1, 2, 3, 4]
    assert [event.path for _, event in pulled.events] == ["/j0", "/j1", "/j2", "/j3"]
    assert pulled.last_sequence == 8 == int(ids[-1][-8:], 16)  # the event id ends with the sequence
    rest = appliance.replication.pull(4, 100, 0)
    assert [sequence for sequence, _ in rest.events] == [5, 6, 7, 8]
    assert appliance.replication.confirmed == 4  # asking after 4 confirmed it
    assert appliance.replication.pull(8, 100, 0).events == []  # nothing newer, no wait asked

    # trimmed: a cursor before the front is told to seed from a backup
    assert appliance.trim_journal(now=time.time() + 73 * 3600) == 8
    with pytest.raises(JournalGap) as gap:
        appliance.replication.pull(3, 100, 0)
    assert gap.value.status == 410
    assert appliance.replication.pull(8, 100, 0).events == []  # a standby that had everything goes on


def test_no_journal_when_switched_off(make_appliance):
    appliance = make_appliance(replication_journal_hours=0)
    site = appliance.sites.add("nojournal.test")
    appliance.record_sync(_events(site, 3))
    with appliance.store.read() as txn:
        assert appliance.journal.bounds(txn) == (0, 0)
    with pytest.raises(DomainError) as refused:
        appliance.replication.pull(0, 10, 0)
    assert refused.value.status == 409
